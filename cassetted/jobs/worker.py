"""Song production in child processes, one per concurrent job.

Why processes: an engine and a lyric writer are CPU-bound Python. In a thread they hold the
GIL, and the event loop, which needs it for every socket call, would answer MQTT commands
in seconds instead of milliseconds while a song renders. A child process also keeps a
crashing or leaking engine (or a model that is not thread-safe) away from the daemon, and
loads its models once for all the songs it makes.

Protocol over a duplex Pipe (pickled tuples):
  parent -> child: ("job", song_id, spec_json, request_json, TaskOrder) | ("cancel",) | ("stop",)
  child -> parent: ("progress", state, fraction) | ("done", Produced)
                   | ("cancelled",) | ("error", code, message)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import JobState, SongRequest, SongSpec
from cassetted.jobs import diskfaults
from cassetted.jobs.pipeline import Produced, TaskOrder
from cassetted.lyrics.base import LyricsError
from cassetted.music.base import Cancelled

log = logging.getLogger(__name__)

_CONTEXT = multiprocessing.get_context("spawn")  # fork is unsafe with threads and asyncio
_ERRORS: dict[str, type[errors.CassettedError]] = {
    cls.code: cls for cls in errors.CassettedError.__subclasses__()
}  # the child's ("error", code, message) back into its class (system_fault and all)


# ------------------------------------------------------------------------------- the child


def die_with_parent() -> None:
    """Linux: have the kernel kill this child when the daemon dies, even by SIGKILL.

    A child outliving a killed daemon would finish its song after the next start already
    settled the library, leaving a file no row knows (and would hold a GPU meanwhile)."""
    import ctypes
    import os
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before prctl took effect
        os._exit(1)


def _child_main(conn: Connection, settings: Settings) -> None:
    """Serve jobs until told to stop or the parent goes away."""
    die_with_parent()
    logging.basicConfig(level=settings.log.level,
                        format="%(levelname)s %(name)s[worker]: %(message)s")
    from cassetted import redaction

    redaction.install(redaction.configured_secrets(settings))
    from cassetted.jobs.pipeline import Pipeline
    from cassetted.lyrics.service import LyricsService
    from cassetted.music.registry import EngineRegistry
    from cassetted.store.credentials import CredentialStore
    from cassetted.store.database import open_database

    url = settings.storage.database_url
    open_database(url.get_secret_value() if url else None, settings.state_dir)
    credentials = CredentialStore.open(settings.state_dir)
    lyrics = LyricsService(settings, credentials)
    engines = EngineRegistry(settings, credentials)
    pipeline = Pipeline(settings.library_dir, settings.generation.format)
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if message[0] == "stop":
            return
        if message[0] != "job":
            continue  # a late "cancel" for a job that already ended
        _, song_id, spec_json, request_json, order = message
        cancel = threading.Event()

        def report(state: JobState, fraction: float) -> None:
            while conn.poll():
                if conn.recv()[0] in ("cancel", "stop"):
                    cancel.set()  # noqa: B023 - report is called only during this job's run
            conn.send(("progress", state.value, fraction))

        try:
            request = SongRequest.model_validate_json(request_json)
            produced = pipeline.run(song_id, SongSpec.model_validate_json(spec_json),
                                    lyrics.writer_for(request), engines.get(request.engine),
                                    report, cancel, order)
            conn.send(("done", produced))
        except Cancelled:
            conn.send(("cancelled",))
        # Job errors go out on MQTT: a remote service's words pass the same redaction.
        except errors.CassettedError as error:
            conn.send(("error", error.code, redaction.redact(error.message)))
        except LyricsError as error:  # every provider of the chain failed; each said why
            log.warning("no lyrics for song %s: %s", song_id, error)
            conn.send(("error", errors.LyricsFailed.code, redaction.redact(str(error)[:300])))
        except Exception as error:
            fault = diskfaults.write_failure(error, settings.library_dir)
            if fault is not None:  # the disk's fault, said plainly; the job is retried
                log.error("song %s could not be written: %s", song_id, fault.message)
                conn.send(("error", fault.code, fault.message))
                continue
            log.exception("production of song %s failed", song_id)
            conn.send(("error", errors.GenerationFailed.code,
                       redaction.redact(f"{type(error).__name__}: {error}"[:300])))


# ------------------------------------------------------------------------------ the parent


class WorkerProcess:
    """The parent's handle on one child: start, produce, cancel, stop, restart if it died."""

    def __init__(self, settings: Settings, index: int, name: str | None = None) -> None:
        self._settings = settings
        self._index = index
        self.name = name or f"local-{index}"  # the `worker` of the songs it makes
        self._process: Any = None
        self._conn: Connection | None = None
        self._inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._producing = False        # inside produce(): a cancel is for this job
        self._cancel_asked = False     # ... and was asked before the child had the job

    @property
    def index(self) -> int:
        return self._index

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    async def start(self) -> None:
        parent, child = _CONTEXT.Pipe(duplex=True)
        self._process = _CONTEXT.Process(target=_child_main, args=(child, self._settings),
                                         name=f"cassetted-worker-{self._index}", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        self._inbox = asyncio.Queue()
        asyncio.get_running_loop().add_reader(parent.fileno(), self._readable)
        first = await self._inbox.get()
        if first[0] != "ready":
            raise RuntimeError(f"worker {self._index} failed to start")

    def _readable(self) -> None:
        assert self._conn is not None
        try:
            while self._conn.poll():
                self._inbox.put_nowait(self._conn.recv())
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self._conn.fileno())
            self._inbox.put_nowait(("died",))

    async def produce(self, job_id: str, song_id: str, spec: SongSpec, request: SongRequest,
                      order: TaskOrder | None,
                      report: Callable[[JobState, float], None]) -> Produced:
        """Run one job in the child; raises Cancelled or a CassettedError."""
        self._producing, self._cancel_asked = True, False
        try:
            return await self._produce(song_id, spec, request, order, report)
        finally:
            self._producing = False

    async def _produce(self, song_id: str, spec: SongSpec, request: SongRequest,
                       order: TaskOrder | None,
                       report: Callable[[JobState, float], None]) -> Produced:
        if self._process is None or not self._process.is_alive():
            try:  # started for the first song, and again after an idle retirement
                await self.restart()
            except (RuntimeError, OSError) as error:  # the system's fault: retried
                raise errors.Interrupted(f"the render process could not start: {error}") from None
        assert self._conn is not None
        self._conn.send(("job", song_id, spec.model_dump_json(), request.model_dump_json(),
                         order))
        if self._cancel_asked:  # while the child was starting: it reads this with the job
            self._conn.send(("cancel",))
        stall_s = self._settings.generation.stall_s
        while True:
            try:
                message = await asyncio.wait_for(self._inbox.get(), stall_s)
            except TimeoutError:
                # A hung engine (a wedged driver, a deadlock) would hold the job, and in a
                # cluster its lease, forever: the child is killed and the job retried.
                log.error("worker %s: song %s made no progress for %.0f s; restarting its "
                          "process", self.name, song_id, stall_s)
                await self.restart()
                raise errors.Interrupted(f"the engine made no progress for {stall_s:.0f} s; "
                                         "its process was restarted") from None
            kind = message[0]
            if kind == "progress":
                report(JobState(message[1]), message[2])
            elif kind == "done":
                produced: Produced = message[1]
                return dataclasses.replace(produced, worker=self.name)
            elif kind == "cancelled":
                raise Cancelled()
            elif kind == "error":
                raise _ERRORS.get(message[1], errors.GenerationFailed)(message[2])
            elif kind == "died":
                code = self._process.exitcode if self._process else None
                await self.restart()
                # Killed (out of memory, a crashing engine): the system's fault, retried.
                raise errors.Interrupted(f"the worker process died (exit code {code})")

    async def committed(self, job_id: str) -> None:
        """Nothing to release: the files are already in the library's .incoming/."""

    def cancel(self) -> None:
        if self._producing:
            self._cancel_asked = True
        if self._conn is not None:
            with contextlib.suppress(OSError):  # the child is gone; produce() reports that
                self._conn.send(("cancel",))

    async def restart(self) -> None:
        await self.stop(grace_s=0)
        await self.start()

    async def stop(self, grace_s: float = 5.0) -> None:
        if self._conn is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._conn.fileno())
                self._conn.send(("stop",))
            except (OSError, ValueError):
                pass
        process, self._process = self._process, None
        if process is not None:
            await asyncio.to_thread(process.join, grace_s)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
