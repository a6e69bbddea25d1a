"""The daemon's side of the cluster: jobs out to JetStream, results back into the library.

The daemon stays the owner of truth: the job runner claims a row as always and hands the
job to one of the scheduler's slots (a `Producer`, like a local worker process). The slot
publishes the job to its engine's subject, follows the worker's progress, and when the
result comes it downloads and verifies the files into the library's `.incoming/`; the
runner commits the song row, and only then is the result acknowledged and its files'
objects deleted. So:

- a daemon killed at any point loses nothing: the result stays in its stream until acked,
  and the dispatch bucket remembers each job in flight, so the restarted daemon re-attaches
  to it (same song id) instead of publishing the job again;
- a job is never made twice into the library: a result for a job that already ended, or
  for another attempt's song id, is acknowledged and its objects deleted;
- a job no live worker can render fails with `no_worker` after `no_worker_s`, and one that
  `max_deliver` workers took and none finished fails with `worker_lost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cassetted.cluster import protocol
from cassetted.cluster.protocol import FileRef, JobMessage, Names, ResultMessage, WorkerAdvert
from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import JobState, SongRequest, SongSpec
from cassetted.jobs import diskfaults
from cassetted.jobs.pipeline import Produced, TaskOrder
from cassetted.library.incoming import incoming_dir
from cassetted.music.base import Cancelled
from cassetted.music.registry import ENGINE_PLUGINS
from cassetted.tasks import BackgroundTasks

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue
    from nats.js.object_store import ObjectStore

log = logging.getLogger(__name__)

# The state of a job in the database, None if there is no such job (for stale results).
JobStateLookup = Callable[[str], Awaitable[str | None]]

_RECONNECT_MAX_S = 30.0
_CANCEL_GRACE_S = 5.0     # a cancelled job whose worker does not answer ends anyway
_ERRORS: dict[str, type[errors.CassettedError]] = {
    cls.code: cls for cls in errors.CassettedError.__subclasses__()}
_RUNNING = {JobState.writing_lyrics, JobState.composing, JobState.encoding}
# Past production: a result for such a job is late and dropped.
_FINAL = {JobState.done.value, JobState.failed.value, JobState.cancelled.value,
          JobState.ready.value, JobState.playing.value}


@dataclass
class _Flight:
    """A job handed to the cluster, as this daemon follows it."""

    job_id: str
    song_id: str
    engine: str
    duration_s: float
    report: Callable[[JobState, float], None]
    outcome: asyncio.Future[tuple[ResultMessage, Msg | None]]
    seq: int | None = None
    worker: str | None = None          # the worker that last reported progress
    source_object: str | None = None
    cancelled_at: float | None = None
    reattached: bool = False           # followed from a dispatch record after a restart
    result_seq: int | None = None      # the result being taken (its redelivery is no second)
    result_msg: Msg | None = field(default=None, repr=False)


class ClusterScheduler:
    """One NATS connection for the daemon: dispatch, progress, results, advisories."""

    def __init__(self, settings: Settings, job_state: JobStateLookup) -> None:
        self.settings = settings
        self.cluster = settings.cluster
        self.names = Names(self.cluster.prefix)
        self._job_state = job_state
        self._tasks = BackgroundTasks("cluster")
        self._ready = asyncio.Event()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._dispatch: KeyValue | None = None
        self._workers: KeyValue | None = None
        self._files: ObjectStore | None = None
        self._flights: dict[str, _Flight] = {}
        self._orphans: dict[str, tuple[ResultMessage, Msg | None]] = {}
        self._committing: dict[str, tuple[_Flight, ResultMessage]] = {}  # until the row is in
        self._cancelled_early: set[str] = set()  # cancelled before NATS had the job
        self._adverts: list[WorkerAdvert] = []
        self._adverts_at = 0.0

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect in the background (retrying forever): jobs wait for NATS, never fail on it."""
        self._tasks.spawn(self._connection(), "connection", replace=True)

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        self._ready.clear()
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        async with asyncio.timeout(timeout_s):
            await self._ready.wait()

    async def _connection(self) -> None:
        delay = 1.0
        while True:
            try:
                self._nc = await protocol.connect(self.cluster, "cassetted daemon")
                self._js = self._nc.jetstream(domain=self.cluster.domain)
                await protocol.ensure_layout(self._js, self.names, self.cluster,
                                             list(ENGINE_PLUGINS.names()))
                self._dispatch = await self._js.key_value(self.names.dispatch_bucket)
                self._workers = await self._js.key_value(self.names.workers_bucket)
                self._files = await self._js.object_store(self.names.files_bucket)
                await self._nc.subscribe(self.names.progress("*"), cb=self._on_progress)
                self._tasks.spawn(self._consume(self.names.results_stream,
                                                self.names.results_consumer, self._result,
                                                "results"), "results", replace=True)
                self._tasks.spawn(self._consume(self.names.advisories_stream, "daemon",
                                                self._max_deliveries, "advisories"),
                                  "advisories", replace=True)
                self._tasks.spawn(self._sweep_dispatch(), "sweep", replace=True)
                self._ready.set()
                log.info("cluster: connected to NATS %s", protocol.where(self.cluster))
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - unreachable or refused: retried
                log.warning("cluster: NATS %s: %s; trying again in %.0f s",
                            protocol.where(self.cluster), protocol.explain(error, self.cluster),
                            delay)
                if self._nc is not None:
                    with contextlib.suppress(Exception):
                        await self._nc.close()
                    self._nc = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)

    async def _sweep_dispatch(self) -> None:
        """Dispatch records of jobs that ended while this daemon was away (failed at the
        restart, cancelled while queued): nothing will re-attach to them, so they go."""
        assert self._dispatch is not None
        from nats.js.errors import NoKeysError

        try:
            keys = await self._dispatch.keys()
        except NoKeysError:
            return
        for job_id in keys:
            state = await self._job_state(job_id)
            if (state is None or state in _FINAL) and job_id not in self._flights:
                record = await protocol.kv_value(self._dispatch, job_id)
                source = json.loads(record).get("source") if record else None
                await self._dispatch.delete(job_id)
                await self._delete_objects([source] if source else [])
                log.info("cluster: job %s is %s; its dispatch record removed", job_id,
                         state or "unknown")

    # ------------------------------------------------------------------ workers

    async def workers(self, fresh: bool = False) -> list[WorkerAdvert]:
        """The live workers' adverts (cached for a heartbeat's half)."""
        if not fresh and time.monotonic() - self._adverts_at < self.cluster.heartbeat_s / 2:
            return self._adverts
        assert self._workers is not None
        adverts = await protocol.adverts(self._workers)
        self._adverts, self._adverts_at = adverts, time.monotonic()
        return adverts

    def rendering(self, job_id: str) -> str | None:
        """The worker that last reported progress on a job in flight (None: not started)."""
        flight = self._flights.get(job_id)
        return flight.worker if flight is not None else None

    async def can_render(self, engine: str, duration_s: float) -> bool:
        return any(engine in w.engines and (w.max_duration_s is None
                                            or duration_s <= w.max_duration_s)
                   for w in await self.workers())

    # ------------------------------------------------------------------ one job

    async def produce(self, job_id: str, song_id: str, spec: SongSpec, request: SongRequest,
                      order: TaskOrder | None,
                      report: Callable[[JobState, float], None]) -> Produced:
        self._committing.pop(job_id, None)  # an earlier attempt whose row was not stored
        engine = request.engine or self.settings.generation.engine
        loop = asyncio.get_running_loop()
        flight = _Flight(job_id, song_id, engine, spec.duration_s, report, loop.create_future())
        self._flights[job_id] = flight  # from here on a cancel finds it
        try:
            await self._ready.wait()
            assert self._js is not None and self._dispatch is not None
            if job_id in self._cancelled_early:
                raise Cancelled()
            record = await protocol.kv_value(self._dispatch, job_id)
            if record is not None:  # dispatched before this daemon restarted: follow it
                earlier = json.loads(record)
                flight.song_id, flight.seq = earlier["song_id"], earlier.get("seq")
                flight.source_object = earlier.get("source")
                flight.reattached = True
                log.info("cluster: job %s re-attached to its dispatch (song %s)", job_id,
                         flight.song_id)
            orphan = self._orphans.pop(job_id, None)
            if orphan is not None:
                self._settle(flight, *orphan)
            if record is None and not flight.outcome.done():
                await self._dispatch_job(flight, spec, request, order)
            result, message = await self._await_outcome(flight)
            return await self._take(flight, result, message)
        except (Cancelled, errors.CassettedError, asyncio.CancelledError):
            raise
        except Exception as error:  # noqa: BLE001 - NATS away or refusing: the system's fault
            # Retried with the runner's backoff, but only once NATS is back: an outage of
            # any length costs the job no attempts beyond this one.
            while self._nc is not None and not self._nc.is_connected and not self._nc.is_closed:  # noqa: ASYNC110 - nats-py has no reconnected event to await
                await asyncio.sleep(1)
            raise errors.Interrupted(f"the cluster's queue could not be used ("
                                     f"{type(error).__name__}); the job is tried again") from None
        finally:
            self._flights.pop(job_id, None)
            self._cancelled_early.discard(job_id)

    async def _dispatch_job(self, flight: _Flight, spec: SongSpec, request: SongRequest,
                            order: TaskOrder | None) -> None:
        assert self._js is not None and self._dispatch is not None
        source = None
        if order is not None and order.source_path is not None:
            source = await self._upload_source(flight, Path(order.source_path))
        message = JobMessage(job_id=flight.job_id, song_id=flight.song_id, engine=flight.engine,
                             spec=spec, request=request, order=protocol.order_to_wire(order),
                             source=source)
        ack = await self._js.publish(self.names.jobs(flight.engine),
                                     message.model_dump_json().encode(),
                                     headers={"Nats-Msg-Id": f"{flight.job_id}.{flight.song_id}"})
        flight.seq = ack.seq
        await self._dispatch.put(flight.job_id, json.dumps({
            "song_id": flight.song_id, "seq": ack.seq, "engine": flight.engine,
            "source": flight.source_object, "at": time.time()}).encode())
        log.info("cluster: job %s published to %s (seq %d)", flight.job_id,
                 self.names.jobs(flight.engine), ack.seq)
        if flight.cancelled_at is not None:  # cancelled while it was being published
            self._tasks.spawn(self._cancel(flight), self._tasks.unique(f"cancel-{flight.job_id}"))

    async def _upload_source(self, flight: _Flight, path: Path) -> FileRef:
        assert self._files is not None
        name = f"source/{flight.job_id}/{path.name}"
        size = (await asyncio.to_thread(path.stat)).st_size
        digest = await asyncio.to_thread(protocol.sha256_of, path)
        handle = await asyncio.to_thread(path.open, "rb")
        with handle:
            await self._files.put(name, handle)
        flight.source_object = name
        return FileRef(name=path.name, object=name, size=size, sha256=digest)

    async def _await_outcome(self, flight: _Flight) -> tuple[ResultMessage, Msg | None]:
        """Wait for the worker's result, watching that some worker can still render it."""
        since_none: float | None = None
        lost_by: float | None = None
        if flight.reattached and not await self._still_queued(flight):
            # Taken and acknowledged by a worker, so its result is in the results stream,
            # handed out to the daemon that died: it comes again within the ack window.
            lost_by = time.monotonic() + protocol.RESULT_ACK_WAIT_S + 15
        while True:
            done, _ = await asyncio.wait({flight.outcome}, timeout=self.cluster.heartbeat_s)
            if done:
                return flight.outcome.result()
            now = time.monotonic()
            if lost_by is not None and now > lost_by:
                await self._forget(flight)
                raise errors.Interrupted("the job's dispatch was lost (neither queued nor "
                                         "answered); it is dispatched again")
            if flight.cancelled_at is not None and now - flight.cancelled_at > _CANCEL_GRACE_S:
                await self._forget(flight)
                raise Cancelled()
            try:
                able = await self.can_render(flight.engine, flight.duration_s)
            except Exception as error:  # noqa: BLE001 - NATS away: the job waits for it
                log.warning("cluster: cannot read the workers: %s", type(error).__name__)
                continue
            if able:
                since_none = None
                continue
            since_none = since_none or now
            if now - since_none >= self.cluster.no_worker_s:
                await self._withdraw(flight)
                raise errors.NoWorker(
                    f"no live worker renders with the {flight.engine} engine"
                    + (f" songs of {flight.duration_s:.0f} s" if flight.duration_s else "")
                    + f" (waited {self.cluster.no_worker_s:.0f} s)", "engine")

    async def _still_queued(self, flight: _Flight) -> bool:
        """Whether the job message is still in the queue (waiting or being rendered)."""
        assert self._js is not None
        from nats.js.errors import NotFoundError

        if flight.seq is None:
            return False
        try:
            await self._js.get_msg(self.names.jobs_stream, flight.seq)
        except NotFoundError:
            return False
        return True

    async def _take(self, flight: _Flight, result: ResultMessage, message: Msg | None) -> Produced:
        """A result into what the runner stores: the files verified into .incoming/."""
        if result.status != "done":
            await self._ack(message)
            await self._forget(flight)
            if result.status == "cancelled":
                raise Cancelled()
            raise _ERRORS.get(result.error_code or "", errors.GenerationFailed)(
                result.error_message or "the worker gave no reason")
        assert self._files is not None
        incoming = incoming_dir(self.settings.library_dir)
        flight.result_seq = message.metadata.sequence.stream if message is not None else None
        try:
            produced = self._checked(result)
            for ref in result.files:
                if message is not None:
                    await message.in_progress()  # a long download keeps the result ours
                await protocol.download(self._files, ref, incoming / ref.name)
        except OSError as error:  # our disk: the result stays for the retry
            fault = diskfaults.write_failure(error, self.settings.library_dir)
            raise fault or errors.Interrupted(f"the song could not be stored: {error}") from None
        except errors.CassettedError:
            await self._ack(message)  # a damaged result: this attempt fails (and is retried)
            await self._forget(flight, result)
            raise
        flight.result_msg = message
        self._committing[flight.job_id] = (flight, result)
        log.info("cluster: job %s made by %s (%s)", flight.job_id, result.worker,
                 ", ".join(ref.name for ref in result.files))
        return dataclasses.replace(produced, worker=result.worker, song_id=flight.song_id)

    def _checked(self, result: ResultMessage) -> Produced:
        """A worker's result as far as the daemon trusts it: the files it names are the
        files it sent, each a plain name, their objects under this job."""
        bad = errors.GenerationFailed(f"worker {result.worker} sent a malformed result")
        if result.produced is None:
            raise bad
        try:
            produced = protocol.produced_from_wire(result.produced)
        except (ValueError, TypeError, KeyError):
            raise bad from None
        sent = {ref.name for ref in result.files}
        if not {produced.relative_file, *produced.variant_files} <= sent or any(
                not ref.object.startswith(f"{result.job_id}/") for ref in result.files):
            raise bad
        return produced

    async def committed(self, job_id: str) -> None:
        """The runner stored the song: acknowledge the result, drop the objects and record."""
        entry = self._committing.pop(job_id, None)
        if entry is None:
            return
        flight, result = entry
        await self._ack(flight.result_msg)
        await self._forget(flight, result)

    def cancel(self, job_id: str) -> None:
        """Tell the worker (it stops within a second); withdraw the job if none has it yet."""
        flight = self._flights.get(job_id)
        if flight is None:
            return
        flight.cancelled_at = time.monotonic()
        if self._nc is None or flight.seq is None:
            self._cancelled_early.add(job_id)  # before NATS had it: never dispatched
            if flight.seq is None:
                return
        self._tasks.spawn(self._cancel(flight), self._tasks.unique(f"cancel-{job_id}"))

    async def _cancel(self, flight: _Flight) -> None:
        assert self._nc is not None
        await self._nc.publish(self.names.cancel(flight.job_id), b"")
        if flight.worker is None and await self._withdraw(flight) and not flight.outcome.done():
            # Nobody had taken it: it is simply gone from the queue.
            flight.outcome.set_result((ResultMessage(
                job_id=flight.job_id, song_id=flight.song_id, worker="", status="cancelled"), None))

    async def _withdraw(self, flight: _Flight) -> bool:
        """Take the job message out of the queue (True if it was still there)."""
        assert self._js is not None
        removed = False
        if flight.seq is not None:
            try:
                removed = bool(await self._js.delete_msg(self.names.jobs_stream, flight.seq))
            except Exception:  # noqa: BLE001 - already taken and acked, or never stored
                removed = False
        await self._forget(flight)
        return removed

    async def _forget(self, flight: _Flight, result: ResultMessage | None = None) -> None:
        """The job is settled: its dispatch record and its objects go."""
        if self._dispatch is not None:
            with contextlib.suppress(Exception):
                await self._dispatch.delete(flight.job_id)
        objects = [ref.object for ref in result.files] if result is not None else []
        if flight.source_object:
            objects.append(flight.source_object)
        await self._delete_objects(objects)

    async def _delete_objects(self, objects: list[str]) -> None:
        if self._files is None:
            return
        for name in objects:
            with contextlib.suppress(Exception):  # already gone
                await self._files.delete(name)

    async def _ack(self, message: Msg | None) -> None:
        if message is not None:
            with contextlib.suppress(Exception):  # redelivered later, then recognised as stale
                await message.ack_sync()

    # ------------------------------------------------------------------ incoming

    async def _on_progress(self, message: Msg) -> None:
        job_id = message.subject.rsplit(".", 1)[-1]
        flight = self._flights.get(job_id)
        if flight is None:
            return
        try:
            progress = protocol.ProgressMessage.model_validate_json(message.data)
        except ValueError:
            return
        if progress.state not in _RUNNING:
            return  # a worker reports production, never a job's other states
        if flight.worker != progress.worker:
            log.info("cluster: job %s is being rendered by %s", job_id, progress.worker)
        flight.worker = progress.worker
        flight.report(progress.state, progress.fraction)

    def _settle(self, flight: _Flight, result: ResultMessage, message: Msg | None) -> bool:
        if flight.outcome.done():
            return False
        if result.song_id != flight.song_id:
            return False
        flight.outcome.set_result((result, message))
        return True

    async def _consume(self, stream: str, durable: str, handle: Callable[[Msg], Awaitable[None]],
                       what: str) -> None:
        """Hand each message of a durable pull consumer to `handle`, forever; one it cannot
        handle stays unacked and comes again, and the loop goes on."""
        assert self._js is not None
        sub = await self._js.pull_subscribe_bind(durable=durable, stream=stream)
        while True:
            try:
                messages = await sub.fetch(16, timeout=5)
            except TimeoutError:
                continue
            except Exception as error:  # noqa: BLE001 - a reconnect in progress
                log.warning("cluster: reading %s: %s", what, type(error).__name__)
                await asyncio.sleep(1)
                continue
            for message in messages:
                try:
                    await handle(message)
                except Exception:
                    log.exception("cluster: could not handle %s", message.subject)

    async def _result(self, message: Msg) -> None:
        try:
            result = ResultMessage.model_validate_json(message.data)
        except ValueError:
            log.error("cluster: a result that is not one; dropped")
            await self._ack(message)
            return
        seq = message.metadata.sequence.stream
        committing = self._committing.get(result.job_id)
        if committing is not None and committing[0].result_seq == seq:
            return  # the result being stored, delivered again: it is acked once stored
        flight = self._flights.get(result.job_id)
        if flight is not None:
            if flight.result_seq == seq:
                return  # being downloaded: the same result, not a second one
            if self._settle(flight, result, message):
                return
            log.warning("cluster: job %s: a second result (from %s) dropped", result.job_id,
                        result.worker)
            await self._drop(result, message)
            return
        state = await self._job_state(result.job_id)
        if state is None or state in _FINAL:
            log.info("cluster: job %s is %s; its late result from %s dropped", result.job_id,
                     state or "unknown", result.worker)
            await self._drop(result, message)
            return
        # A job this daemon will pick up again (it was restarted): keep it for the slot.
        self._orphans[result.job_id] = (result, message)

    async def _drop(self, result: ResultMessage, message: Msg | None) -> None:
        await self._ack(message)
        await self._delete_objects([ref.object for ref in result.files])

    async def _max_deliveries(self, message: Msg) -> None:
        """A job `max_deliver` workers took and none finished: it fails (`worker_lost`)."""
        assert self._js is not None
        from nats.js.errors import NotFoundError

        try:
            advisory: dict[str, Any] = json.loads(message.data)
            seq = int(advisory["stream_seq"])
            job = JobMessage.model_validate_json(
                (await self._js.get_msg(self.names.jobs_stream, seq)).data or b"")
        except (NotFoundError, ValueError, KeyError, TypeError):  # gone already, or garbage
            await self._ack(message)
            return
        with contextlib.suppress(Exception):
            await self._js.delete_msg(self.names.jobs_stream, seq)
        lost = ResultMessage(
            job_id=job.job_id, song_id=job.song_id, worker="", status="error",
            error_code=errors.WorkerLost.code,
            error_message=f"handed to workers {advisory.get('deliveries', '?')} times; none "
                          "finished it")
        log.error("cluster: job %s: %s", job.job_id, lost.error_message)
        flight = self._flights.get(job.job_id)
        if flight is None or not self._settle(flight, lost, None):
            self._orphans[job.job_id] = (lost, None)
        await self._ack(message)


class ClusterSlot:
    """One job at a time through the scheduler: what the job runner holds per job it may
    run at once (the Producer protocol, like a local worker process)."""

    def __init__(self, scheduler: ClusterScheduler, index: int) -> None:
        self._scheduler = scheduler
        self._index = index
        self._job_id: str | None = None

    @property
    def index(self) -> int:
        return self._index

    @property
    def alive(self) -> bool:
        return True

    async def restart(self) -> None:
        """Nothing to restart: the scheduler reconnects by itself."""

    async def stop(self) -> None:
        """The scheduler is stopped by the daemon, after the runner."""

    async def produce(self, job_id: str, song_id: str, spec: SongSpec, request: SongRequest,
                      order: TaskOrder | None,
                      report: Callable[[JobState, float], None]) -> Produced:
        self._job_id = job_id
        try:
            return await self._scheduler.produce(job_id, song_id, spec, request, order, report)
        finally:
            self._job_id = None

    def cancel(self) -> None:
        if self._job_id is not None:
            self._scheduler.cancel(self._job_id)

    async def committed(self, job_id: str) -> None:
        await self._scheduler.committed(job_id)
