"""`cassetted worker`: renders jobs from the cluster's queue, on any machine.

It needs only `[cluster]` (the NATS address and credentials) and its own engine settings
(`[acestep]` on a GPU box). It never sees the household's library or database: a job
message carries the spec and the request, a cover's source audio comes from the files
bucket, and the finished files go back there. See cassetted.cluster.protocol for the wire.

One job at a time per worker (an engine fills its machine); run more workers for more.
The song is rendered in a child process (cassetted.jobs.worker), so this process keeps
answering: it extends the job's lease while the child renders, hears a cancel within a
second, and says it is alive every `heartbeat_s`.

Order of a finished job, chosen so that a kill -9 at any point loses nothing and makes
nothing twice: upload the files -> publish the result (deduplicated by the server) ->
record the job in the done bucket -> ack. A job delivered again after a crash is looked up
in the done bucket first; a result the daemon receives twice is recognised by the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from cassetted import redaction
from cassetted.cluster import protocol
from cassetted.cluster.protocol import FileRef, JobMessage, Names, ResultMessage, WorkerAdvert
from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import JobState
from cassetted.jobs.pipeline import Produced
from cassetted.jobs.worker import WorkerProcess
from cassetted.music.base import Cancelled
from cassetted.music.registry import engine_plugin
from cassetted.tasks import BackgroundTasks

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue
    from nats.js.object_store import ObjectStore

log = logging.getLogger(__name__)

T = TypeVar("T")

_PROGRESS_EVERY_S = 0.25   # progress messages at most this often
HAND_BACK_S = 300.0        # how long a finished render waits for NATS to come back
_RECONNECT_MAX_S = 30.0


def default_name() -> str:
    return socket.gethostname().split(".")[0][:48] or "worker"


class ClusterWorker:
    """Pulls jobs for its engines, renders each in a child process, hands back the files."""

    def __init__(self, settings: Settings, name: str | None = None) -> None:
        self.settings = settings
        self.cluster = settings.cluster
        self.name = (name or default_name())[:64]
        self.names = Names(self.cluster.prefix)
        self.engines = list(self.cluster.engines or [settings.generation.engine])
        for engine in self.engines:
            engine_plugin(engine, None)  # an unknown engine stops the worker at once
        self.scratch = settings.state_dir / "worker" / self.name
        # The pipeline writes into <library>/.incoming/: here, a scratch folder of our own.
        storage = settings.storage.model_copy(update={"library_dir": self.scratch / "files"})
        self._render = WorkerProcess(settings.model_copy(update={"storage": storage}), 0,
                                     name=self.name)
        self._tasks = BackgroundTasks(f"worker-{self.name}")
        self._current: str | None = None
        self._done = 0
        self._started_at = time.time()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._workers_kv: KeyValue | None = None
        self._done_kv: KeyValue | None = None
        self._files: ObjectStore | None = None
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Serve until stop(); reconnects to NATS as often as it takes."""
        shutil.rmtree(self.scratch, ignore_errors=True)  # a previous run's leftovers
        self.scratch.mkdir(parents=True, exist_ok=True)
        await self._render.start()
        delay = 1.0
        try:
            while not self._stopping.is_set():
                try:
                    await self._connect()
                    delay = 1.0
                    await self._serve()
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - the worker outlives any one outage
                    if self._stopping.is_set():
                        break
                    log.warning("worker %s: %s; trying again in %.0f s", self.name,
                                protocol.explain(error, self.cluster), delay)
                    await self._close()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
                    delay = min(delay * 2, _RECONNECT_MAX_S)
        finally:
            await self._tasks.cancel_all()
            await self._goodbye()
            await self._close()
            await self._render.stop()
            shutil.rmtree(self.scratch, ignore_errors=True)

    def stop(self) -> None:
        """Take no new job; a job being rendered is handed back at once (see _handle)."""
        self._stopping.set()
        if self._current is not None:
            self._render.cancel()

    async def _connect(self) -> None:
        self._nc = await protocol.connect(self.cluster, f"cassetted-worker {self.name}")
        self._js = self._nc.jetstream(domain=self.cluster.domain)
        self._workers_kv = await self._js.key_value(self.names.workers_bucket)
        self._done_kv = await self._js.key_value(self.names.done_bucket)
        self._files = await self._js.object_store(self.names.files_bucket)
        log.info("worker %s: connected to %s%s; rendering %s%s", self.name,
                 protocol.where(self.cluster),
                 f" (JetStream domain {self.cluster.domain})" if self.cluster.domain else "",
                 ", ".join(self.engines),
                 f", jobs waiting {self.cluster.overflow_after_s:g} s or more"
                 if self.cluster.overflow_after_s is not None else "")

    async def _close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _goodbye(self) -> None:
        """Leave the workers bucket at once, rather than three heartbeats later."""
        if self._workers_kv is not None and self._nc is not None and self._nc.is_connected:
            with contextlib.suppress(Exception):
                await self._kv_put(self.names.workers_bucket, self.name, b"", delete=True)

    # ------------------------------------------------------------------ serving

    async def _serve(self) -> None:
        assert self._nc is not None and self._js is not None
        for engine in self.engines:
            await protocol.ensure_consumer(self._js, self.names, engine, self.cluster)
        subs = [await self._js.pull_subscribe_bind(durable=self.names.consumer(engine),
                                                   stream=self.names.jobs_stream)
                for engine in self.engines]
        cancels = await self._nc.subscribe(self.names.cancel("*"), cb=self._on_cancel)
        await self._advertise()
        self._tasks.spawn(self._heartbeat(), "heartbeat", replace=True)
        # Long polls: a fetch returns as soon as a job arrives. With several engines the
        # polls are shorter, so no engine waits long behind another's empty queue.
        wait_s = 5.0 if len(subs) == 1 else 0.5
        try:
            while not self._stopping.is_set():
                for engine, sub in zip(self.engines, subs, strict=True):
                    if self._stopping.is_set():
                        break
                    if not await self._overdue(engine):
                        await asyncio.sleep(min(1.0, self.cluster.heartbeat_s))
                        continue
                    try:
                        messages = await sub.fetch(1, timeout=wait_s)
                    except TimeoutError:
                        continue
                    for message in messages:
                        await self._handle(message)
                if self._nc.is_closed:
                    raise ConnectionError("the NATS connection closed")
        finally:
            with contextlib.suppress(Exception):
                await cancels.unsubscribe()
            await self._tasks.cancel("heartbeat")

    async def _kv_put(self, bucket: str, key: str, value: bytes, delete: bool = False) -> None:
        """A key-value write, also from outside the home: a hub relays a leaf node's
        `$KV.>` only under the domain's API prefix (nats-server adds that mapping; nats-py's
        KeyValue does not use it), so with `domain` the write goes there."""
        assert self._js is not None
        prefix = f"$JS.{self.cluster.domain}.API." if self.cluster.domain else ""
        headers = {"KV-Operation": "DEL"} if delete else None
        await self._js.publish(f"{prefix}$KV.{bucket}.{key}", value, headers=headers)

    async def _overdue(self, engine: str) -> bool:
        """Whether to ask for a job now. Always, except for a pool worker
        (`overflow_after_s`): it asks only when the oldest job nobody took yet has waited
        that long, so the home's own workers, asking at once, get the jobs first."""
        overflow = self.cluster.overflow_after_s
        if overflow is None:
            return True
        assert self._js is not None
        info = await self._js.consumer_info(self.names.jobs_stream, self.names.consumer(engine))
        if not info.num_pending:
            return False
        delivered = info.delivered.stream_seq if info.delivered is not None else 0
        oldest = await self._js.get_msg(self.names.jobs_stream, seq=(delivered or 0) + 1,
                                        subject=self.names.jobs(engine), next=True)
        if oldest.time is None:
            return True
        return time.time() - oldest.time.timestamp() >= overflow

    async def _on_cancel(self, message: Msg) -> None:
        job_id = message.subject.rsplit(".", 1)[-1]
        if job_id == self._current:
            log.info("worker %s: job %s cancelled", self.name, job_id)
            self._render.cancel()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.cluster.heartbeat_s)
            try:
                await self._advertise()
            except Exception as error:  # noqa: BLE001 - a missed beat is only a warning
                log.warning("worker %s: heartbeat failed: %s", self.name, type(error).__name__)

    async def _advertise(self) -> None:
        assert self._workers_kv is not None
        advert = WorkerAdvert(
            name=self.name, host=socket.gethostname(), engines=self.engines,
            loras={"acestep": sorted(self.settings.acestep.loras)} if "acestep" in self.engines
            else {},
            variants={"acestep": self.settings.acestep.dit} if "acestep" in self.engines else {},
            vram_free_mb=await asyncio.to_thread(_free_vram_mb) if "acestep" in self.engines
            else None,
            max_duration_s=self.cluster.max_duration_s, busy=self._current, done=self._done,
            started_at=self._started_at, ts=time.time())
        await self._kv_put(self.names.workers_bucket, self.name,
                           advert.model_dump_json().encode())

    # ------------------------------------------------------------------ one job

    async def _handle(self, message: Msg) -> None:
        assert self._js is not None and self._done_kv is not None and self._files is not None
        try:
            job = JobMessage.model_validate_json(message.data)
        except ValueError as error:
            log.error("worker %s: not a job message (%s); dropped", self.name,
                      str(error).splitlines()[0])
            await message.term()
            return
        if await protocol.kv_value(self._done_kv, _done_key(job)) is not None:
            log.info("worker %s: job %s was finished before; acknowledged", self.name, job.job_id)
            await message.ack()
            return
        self._current = job.job_id
        log.info("worker %s: job %s (%s, %.0f s, delivery %d)", self.name, job.job_id,
                 job.engine, job.spec.duration_s, message.metadata.num_delivered)
        lease = self._tasks.spawn(self._extend_lease(message), f"lease-{job.job_id}")
        progress = _ProgressPump(self, job.job_id)
        pump = self._tasks.spawn(progress.run(), f"progress-{job.job_id}")
        job_dir = self.scratch / job.job_id
        try:
            await self._advertise()
            source = await self._fetch_source(job, job_dir) if job.source else None
            produced = await self._render.produce(job.job_id, job.song_id, job.spec, job.request,
                                                  job.task_order(source), progress.report)
            await self._hand_back(job, produced, message)
            self._done += 1
            log.info("worker %s: job %s done", self.name, job.job_id)
        except Cancelled:
            if self._stopping.is_set():  # not the daemon's cancel: ours, while stopping
                await message.nak()
                log.info("worker %s: stopping; job %s handed back", self.name, job.job_id)
            else:
                await self._publish(ResultMessage(job_id=job.job_id, song_id=job.song_id,
                                                  worker=self.name, status="cancelled"))
                await message.ack()
        except errors.CassettedError as error:
            log.warning("worker %s: job %s failed: %s %s", self.name, job.job_id, error.code,
                        error.message)
            await self._publish(ResultMessage(
                job_id=job.job_id, song_id=job.song_id, worker=self.name, status="error",
                error_code=error.code, error_message=redaction.redact(error.message)))
            await message.ack()
        finally:
            self._current = None
            lease.cancel()
            pump.cancel()
            shutil.rmtree(job_dir, ignore_errors=True)
            for leftover in (self.scratch / "files" / ".incoming").glob(f"*{job.song_id}*"):
                leftover.unlink(missing_ok=True)
            with contextlib.suppress(Exception):
                await self._advertise()

    async def _hand_back(self, job: JobMessage, produced: Produced, message: Msg) -> None:
        """Upload the files, store the result, mark the job done, ack. A NATS blip here
        would otherwise throw a finished render away (the job redelivered and made again):
        each step is retried while the client reconnects (see _retrying), with the lease
        still extended. Repeating a step is harmless: objects are per delivery, the results
        stream deduplicates by id, and the done record and the ack are idempotent."""

        async def store() -> tuple[list[FileRef], bool]:
            files = await self._upload(job, produced, message.metadata.num_delivered)
            return files, await self._publish(ResultMessage(
                job_id=job.job_id, song_id=job.song_id, worker=self.name, status="done",
                produced=protocol.produced_to_wire(dataclasses.replace(produced,
                                                                       worker=self.name)),
                files=files))

        files, fresh = await self._retrying(job, "storing its result", store)
        assert self._files is not None
        if not fresh:  # another delivery's result was stored first: ours is not needed
            for ref in files:
                with contextlib.suppress(Exception):
                    await self._files.delete(ref.object)
        await self._retrying(job, "recording it done", lambda: self._kv_put(
            self.names.done_bucket, _done_key(job), self.name.encode()))
        await self._retrying(job, "acknowledging it", message.ack_sync)

    async def _retrying(self, job: JobMessage, what: str,
                        step: Callable[[], Awaitable[T]]) -> T:
        """`step()`, again after a failure while NATS reconnects, for up to HAND_BACK_S;
        then (or when stopping, or the connection is closed for good) the error."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HAND_BACK_S
        delay = 0.5
        while True:
            try:
                return await step()
            except Exception as error:
                if (self._stopping.is_set() or loop.time() + delay > deadline
                        or self._nc is None or self._nc.is_closed):
                    raise
                log.warning("worker %s: job %s rendered; %s failed (%s), trying again in "
                            "%.1f s", self.name, job.job_id, what, type(error).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _extend_lease(self, message: Msg) -> None:
        """Tell the server the job is still being worked on, well within `lease_s`."""
        while True:
            await asyncio.sleep(max(0.2, self.cluster.lease_s / 3))
            with contextlib.suppress(Exception):  # a missed extension: the next one may land
                await message.in_progress()

    async def _fetch_source(self, job: JobMessage, job_dir: Path) -> Path:
        assert self._files is not None and job.source is not None
        await asyncio.to_thread(job_dir.mkdir, parents=True, exist_ok=True)
        path = job_dir / Path(job.source.name).name
        await protocol.download(self._files, job.source, path)
        return path

    async def _upload(self, job: JobMessage, produced: Produced,
                      delivery: int) -> list[FileRef]:
        assert self._files is not None
        incoming = self.scratch / "files" / ".incoming"
        refs = []
        for relative in (produced.relative_file, *produced.variant_files):
            for path in (incoming / relative, (incoming / relative).with_suffix(".lrc")):
                if not path.is_file():
                    continue  # an engine that writes no timed lyrics
                name = path.relative_to(incoming).as_posix()
                # Each delivery its own objects: two workers that both rendered the job
                # (a lease lost in a network blip) never overwrite each other's files.
                ref = FileRef(name=name, object=f"{job.job_id}/{job.song_id}/{self.name}-"
                                               f"{delivery}/{name}",
                              size=path.stat().st_size,
                              sha256=await asyncio.to_thread(protocol.sha256_of, path))
                with path.open("rb") as handle:
                    await self._files.put(ref.object, handle)
                refs.append(ref)
        return refs

    async def _publish(self, result: ResultMessage) -> bool:
        """Store the result; False when the server already had one for this job and song
        (the results stream deduplicates by id)."""
        assert self._js is not None
        ack = await self._js.publish(
            self.names.results(result.job_id), result.model_dump_json().encode(),
            headers={"Nats-Msg-Id": f"{result.job_id}.{result.song_id}.{result.status}"})
        return not ack.duplicate

    async def publish_progress(self, job_id: str, state: JobState, fraction: float) -> None:
        if self._nc is None:
            return
        body = protocol.ProgressMessage(worker=self.name, state=state,
                                        fraction=max(0.0, min(1.0, fraction)))
        with contextlib.suppress(Exception):  # progress is best effort
            await self._nc.publish(self.names.progress(job_id), body.model_dump_json().encode())


def _done_key(job: JobMessage) -> str:
    """Per dispatch (job and song id): a job dispatched anew after a lost dispatch is made."""
    return f"{job.job_id}_{job.song_id}"


class _ProgressPump:
    """The render child reports often; NATS hears the latest at most every 0.25 s."""

    def __init__(self, worker: ClusterWorker, job_id: str) -> None:
        self._worker = worker
        self._job_id = job_id
        self._latest: tuple[JobState, float] | None = None
        self._changed = asyncio.Event()

    def report(self, state: JobState, fraction: float) -> None:
        self._latest = (state, fraction)
        self._changed.set()

    async def run(self) -> None:
        await self._worker.publish_progress(self._job_id, JobState.writing_lyrics, 0.0)
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._latest is not None:
                await self._worker.publish_progress(self._job_id, *self._latest)
            await asyncio.sleep(_PROGRESS_EVERY_S)


def _free_vram_mb() -> float | None:
    """Free memory of the first GPU, from nvidia-smi (this process never loads torch: the
    render child does); None where there is no NVIDIA GPU or it cannot say."""
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
        return float(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
