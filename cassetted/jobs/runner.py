"""The persistent job queue and its workers.

The queue is the `job` table: a request becomes a row before it is acknowledged, workers
claim rows in arrival order, and every state change is written before it is announced. A
process that dies mid-job leaves the row in a running state; `recover()` on the next start
puts it back in the queue (or fails it explicitly after too many attempts). Nothing is
ever silently dropped.

A failure that is the system's fault (a full or read-only disk, the database, a killed
worker: `CassettedError.system_fault`) puts the job back in the queue with a growing delay,
up to `[generation] retries` times; after that, or for a request's own fault, the job
fails, and a resent request_id of a job that failed for the system starts a new attempt.
A worker whose database writes fail keeps the job it holds, logs at ERROR, waits and carries
on: no fault stops production.

Data flows one way: MQTT intake -> `submit` -> rows -> workers -> pipeline -> the event bus
(JobChanged, QueueChanged, SongReady) -> playback (`deliver`). Whoever follows the bus (the
MQTT publisher, Home Assistant, the party) only hears about changes; nothing calls back in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cassetted.config import RoomSettings, Settings
from cassetted.contract import errors
from cassetted.contract.schemas import (
    ENVELOPE_FIELDS,
    ErrorInfo,
    JobEvent,
    JobState,
    QueueState,
    SongInfo,
    SongRequest,
    SongSpec,
)
from cassetted.events import EventBus, JobChanged, QueueChanged, SongReady
from cassetted.jobs import diskfaults
from cassetted.jobs import spec as spec_module
from cassetted.jobs.pipeline import Produced, TaskOrder
from cassetted.jobs.worker import WorkerProcess
from cassetted.library import incoming
from cassetted.library.access import song_info
from cassetted.music.base import Cancelled
from cassetted.music.registry import engine_plugin
from cassetted.store.database import Job, Song, Store, new_id
from cassetted.tasks import BackgroundTasks

log = logging.getLogger(__name__)

RUNNING_STATES = (JobState.writing_lyrics, JobState.composing, JobState.encoding)
MAX_ATTEMPTS = 3          # interrupted by a crash this often: given up (a song that kills us)
RETRY_MIN_S = 2.0         # a supervised worker's first pause, each next one twice as long ...
RETRY_MAX_S = 60.0        # ... up to this (and so for job retries, see [generation] retries)
_PROGRESS_STEP = 0.05     # publish progress at least every 5 % ...
_PROGRESS_INTERVAL_S = 2  # ... or every 2 s, whichever comes first
_INTAKE_BATCH = 200       # requests written per transaction at most
_DELIVER_TIMEOUT_S = 60   # a song is ready even if its room's player never answers


# The stage after the library: play a finished song in its room; True if it started.
Deliver = Callable[[SongInfo], Awaitable[bool]]


class Producer(Protocol):
    """Where a job's song is made: a local worker process (cassetted.jobs.worker) or a slot
    of the cluster's queue (cassetted.cluster.scheduler). The runner holds one per job it
    may run at once."""

    @property
    def index(self) -> int: ...

    @property
    def alive(self) -> bool: ...

    async def restart(self) -> None: ...

    async def produce(self, job_id: str, song_id: str, spec: SongSpec, request: SongRequest,
                      order: TaskOrder | None,
                      report: Callable[[JobState, float], None]) -> Produced:
        """The finished files in the library's .incoming/; raises Cancelled or a
        CassettedError."""
        ...

    def cancel(self) -> None: ...

    async def committed(self, job_id: str) -> None:
        """The song row is stored: whatever held the result for a retry may let it go."""
        ...

    async def stop(self) -> None: ...


def _event(job: Job, **extra: object) -> JobEvent:
    error = (ErrorInfo(code=job.error_code, message=job.error_message or "")
             if job.error_code else None)
    values: dict[str, Any] = dict(
        job_id=job.id, request_id=job.request_id, state=JobState(job.state),
        progress=job.progress, song_id=job.song_id, error=error, ts=time.time(),
    )
    values.update(extra)
    return JobEvent(**values)


@dataclass
class _Running:
    """In-memory view of a job being produced (the row holds the durable part)."""

    job: Job
    worker: Producer
    started: float = field(default_factory=time.monotonic)
    expected_s: float = 60.0
    last_published: float = 0.0
    last_progress: float = 0.0
    unrecorded: bool = False  # a progress write failed (logged once)


# ----------------------------------------------------------------- store-thread operations
# Plain functions run on the store's single thread; they hold the queue's invariants.


def _find_by_request_id(request_id: str) -> Job | None:
    job: Job | None = Job.get_or_none(Job.request_id == request_id)
    return job


def _insert(request: SongRequest, max_pending: int, queued: int | None = None,
            charge: Callable[[], None] | None = None) -> tuple[Job, bool]:
    """Queue one request, `queued` jobs waiting already (counted if not known). (job, True)
    for a request_id seen before: the job it made. `charge` (the household's quota) runs
    just before the job is written, in the same transaction, and may refuse it."""
    existing = _find_by_request_id(request.request_id) if request.request_id else None
    if existing is not None and not retryable(existing):
        return existing, True
    if (_queue_counts() if queued is None else queued) >= max_pending:
        raise errors.QueueFull(f"{max_pending} requests are already waiting; try again later")
    if charge is not None:
        charge()
    if existing is not None:  # failed for the system's fault: a new attempt
        return _retry_failed(existing), False
    job = Job.create(
        id=new_id(), request_id=request.request_id,
        request=request.model_dump_json(exclude=set(ENVELOPE_FIELDS)), user=request.user,
        state=JobState.queued.value, progress=0.0,
    )
    return job, False


def retryable(job: Job) -> bool:
    """A job that failed for the system's fault: resending its request_id tries again."""
    return job.state == JobState.failed.value and job.error_code in errors.system_fault_codes()


def is_retry(job: Job) -> bool:
    """A queued job carrying the error of its last attempt: a retry, not a first try."""
    return job.state == JobState.queued.value and job.error_code is not None


def _retry_failed(job: Job) -> Job:
    """A new attempt of a job failed by the system; its last error stays on the row until
    the attempt starts, so the reply and the event can say why it is tried again."""
    now = time.time()
    Job.update(state=JobState.queued.value, progress=0.0, attempts=0, finished_at=None,
               updated_at=now).where(Job.id == job.id).execute()
    requeued: Job = Job.get_by_id(job.id)
    return requeued


def _insert_batch(requests: list[SongRequest], max_pending: int,
                  charges: list[Callable[[], None] | None] | None = None,
                  ) -> list[tuple[Job, bool] | errors.CassettedError]:
    """Several requests in one transaction: one commit instead of one per request, and
    the queue counted once (an index count), not once per request."""
    results: list[tuple[Job, bool] | errors.CassettedError] = []
    with Job._meta.database.atomic():
        queued = _queue_counts()
        for request, charge in zip(requests, charges or [None] * len(requests), strict=True):
            try:
                result = _insert(request, max_pending, queued, charge)
            except errors.CassettedError as error:
                results.append(error)
                continue
            queued += not result[1]
            results.append(result)
    return results


def _claim_next(waiting: tuple[str, ...] = ()) -> Job | None:
    """Take the oldest queued job, except those `waiting` for their retry; the conditional
    update keeps two workers off one row."""
    query = Job.select().where(Job.state == JobState.queued.value)
    if waiting:
        query = query.where(Job.id.not_in(list(waiting)))
    candidates = query.order_by(Job.created_at, Job.id).limit(5)
    for job in candidates:
        now = time.time()
        claimed = (Job.update(state=JobState.writing_lyrics.value, started_at=now, updated_at=now,
                              progress=0.0, attempts=Job.attempts + 1, error_code=None,
                              error_message=None)
                   .where((Job.id == job.id) & (Job.state == JobState.queued.value)).execute())
        if claimed:
            mine: Job = Job.get_by_id(job.id)
            return mine
    return None


def _set(job_id: str, **fields: object) -> Job:
    fields["updated_at"] = time.time()
    Job.update(**fields).where(Job.id == job_id).execute()
    job: Job = Job.get_by_id(job_id)
    return job


def _cancel_if_queued(job_id: str) -> Job | None:
    now = time.time()
    changed = (Job.update(state=JobState.cancelled.value, finished_at=now, updated_at=now)
               .where((Job.id == job_id) & (Job.state == JobState.queued.value)).execute())
    job: Job | None = Job.get_by_id(job_id) if changed else None
    return job


def _queue_counts() -> int:
    queued: int = Job.select().where(Job.state == JobState.queued.value).count()
    return queued


def _recover(job_ids: list[str] | None = None) -> list[Job]:
    """Put interrupted jobs back in the queue; fail those interrupted too often. At start
    every job; for a worker that could not record a job's end, the jobs it held."""
    touched = []
    now = time.time()
    scope = Job.select() if job_ids is None else Job.select().where(Job.id.in_(job_ids))
    for job in scope.where(Job.state.in_([s.value for s in RUNNING_STATES])):
        if job.attempts >= MAX_ATTEMPTS:
            job.state, job.error_code = JobState.failed.value, errors.Interrupted.code
            job.error_message = f"interrupted {job.attempts} times; giving up"
            job.finished_at = now
        else:
            job.state, job.progress = JobState.queued.value, 0.0
        job.updated_at = now
        job.save()
        touched.append(job)
    # A song that was ready has its file and row: the job only owes its final state.
    for job in scope.where(Job.state.in_([JobState.ready.value, JobState.playing.value])):
        job.state, job.finished_at, job.updated_at = JobState.done.value, now, now
        job.save()
        touched.append(job)
    return touched


def _committed_files(names: list[str]) -> set[str]:
    """Which of these library files a song row names."""
    found: set[str] = set()
    for start in range(0, len(names), 500):
        chunk = names[start:start + 500]
        found.update(song.file for song in Song.select(Song.file).where(Song.file.in_(chunk)))
    return found


def _store_song(job_id: str, song_id: str, produced: Produced,
                request: SongRequest) -> tuple[Job, Song, list[str]]:
    """The song row (and one per further take, `variant_of` the first); the job is ready."""
    spec = produced.spec
    fields = dict(
        title=spec.title, prompt=spec.prompt, lyrics=spec.lyrics, style=spec.style,
        genre=spec.genre, mood=spec.mood, bpm=spec.bpm, key=spec.key,
        time_signature=spec.time_signature, duration_s=spec.duration_s, language=spec.language,
        instrumental=spec.instrumental, child_safe=spec.child_safe,
        room=request.room, user=request.user, shared=not request.private, engine=produced.engine,
        lyrics_provider=produced.lyrics_provider, format=produced.format, worker=produced.worker,
    )
    with Song._meta.database.atomic():
        song = Song.create(id=song_id, seed=spec.seed, file=produced.relative_file, **fields)
        variants = [Song.create(id=new_id(), seed=produced.seed_of(i), file=file,
                                variant_of=song_id, **fields).id
                    for i, file in enumerate(produced.variant_files, start=1)]
        job = _set(job_id, state=JobState.ready.value, progress=1.0, song=song.id)
    return job, song, variants


# ----------------------------------------------------------------------------- the runner

# A request waiting to be written: the request, its quota charge, who waits for the job.
_Intake = tuple[SongRequest, Callable[[], None] | None, "asyncio.Future[tuple[Job, bool]]"]


class JobRunner:
    """Owns the queue: intake, workers, cancellation, recovery and progress reporting."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        bus: EventBus,
        read_prompt: spec_module.PromptReader = spec_module._no_reading,
        deliver: Deliver | None = None,
        producers: list[Producer] | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._bus = bus
        self._tasks = BackgroundTasks("jobs")
        self._read_prompt = read_prompt
        self._deliver = deliver
        # Local worker processes unless the daemon hands in others (the cluster's slots).
        self._processes: list[Producer] = producers if producers is not None else [
            WorkerProcess(settings, i) for i in range(settings.generation.max_concurrent)]
        self._concurrency = len(self._processes)
        self._wakeup = asyncio.Event()
        self._running: dict[str, _Running] = {}
        self._pending = 0
        self._intake: list[_Intake] = []
        self._retry_at: dict[str, float] = {}  # job id -> loop time its retry may start
        self._stranded: set[str] = set()  # jobs whose end a failed database write lost
        self._where = store.where  # for storage errors, without credentials
        # Seconds of production per second of audio, learned per engine (EWMA).
        self._rtf: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        for job in await self._store.call(_recover):
            log.warning("job %s was interrupted; now %s", job.id, job.state)
            self._job_changed(_event(job))
        await self._settle_incoming()
        await self._refresh_queue()
        for i, process in enumerate(self._processes):
            self._tasks.spawn(self._worker(process), f"worker-{i}")

    async def stop(self) -> None:
        """Stop workers; a job in production is put back in the queue for the next start."""
        interrupted = list(self._running)
        await asyncio.gather(*(self._tasks.cancel(f"worker-{i}") for i in range(len(self._processes))))
        for job_id in interrupted:
            # Not an interruption by a crash: give the attempt back.
            await self._store.call(_set, job_id, state=JobState.queued.value, progress=0.0,
                                   attempts=Job.attempts - 1)
        self._running.clear()
        await asyncio.gather(*(process.stop() for process in self._processes))
        await self._tasks.cancel_all()  # an intake batch still being written

    async def _settle_incoming(self) -> None:
        """Files an interrupted song left in `.incoming/`: in with a row, else deleted."""
        library = self._settings.library_dir
        waiting = incoming.pending(library)
        committed = await self._store.call(_committed_files, waiting) if waiting else set()
        await asyncio.to_thread(incoming.settle, library, committed)

    # ------------------------------------------------------------------ intake

    async def submit(self, request: SongRequest,
                     charge: Callable[[], None] | None = None) -> tuple[Job, bool]:
        """Queue a request (or find the job its request_id already made).

        Requests arriving together are written in one transaction (see `_write_intake`);
        they keep their arrival order. `charge` (the household's quota, on the store
        thread) runs in that transaction just before the job is written, and may refuse it.
        """
        self._check_names(request)
        if request.source_song_id is not None:
            if await self._store.call(Song.get_or_none, Song.id == request.source_song_id) is None:
                raise errors.UnknownSong(f"no song {request.source_song_id!r}", "source_song_id")
        elif request.seed is None:  # a cover keeps its source's seed unless told otherwise
            request = request.model_copy(update={"seed": spec_module.new_seed()})
        future: asyncio.Future[tuple[Job, bool]] = asyncio.get_running_loop().create_future()
        self._intake.append((request, charge, future))
        if self._tasks.get("intake") is None:
            self._tasks.spawn(self._write_intake(), "intake")
        return await future

    async def _write_intake(self) -> None:
        """Write waiting requests in batches. Every waiting request is answered, whatever
        fails here: a future left pending would hang its command and never ack it."""
        batch: list[_Intake] = []
        try:
            await self._write_batches(batch)
        except Exception as error:
            log.exception("job intake failed")
            for _, _, future in batch + self._intake:
                if not future.done():
                    future.set_exception(error)
            self._intake = []

    async def _write_batches(self, batch: list[_Intake]) -> None:
        while self._intake:
            batch[:], self._intake = self._intake[:_INTAKE_BATCH], self._intake[_INTAKE_BATCH:]
            try:
                results = await self._store.call(
                    _insert_batch, [request for request, _, _ in batch],
                    self._settings.generation.max_pending, [charge for _, charge, _ in batch])
            except Exception as error:  # noqa: BLE001 - every waiting request gets the error
                fault = diskfaults.database_failure(error, self._where)
                if fault is not None:
                    log.error("requests could not be stored: %s", fault.message)
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(fault or error)
                continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if isinstance(result, errors.CassettedError):
                    if not future.done():
                        future.set_exception(result)
                    continue
                job, duplicate = result
                if not future.done():
                    future.set_result(result)  # stored: the command may be acked now
                if not duplicate:
                    self._pending += 1
                    self._retry_at.pop(job.id, None)  # a resent request: try it now
                    self._announce(job)
            self._publish_queue()
            self._wakeup.set()

    def _job_changed(self, event: JobEvent) -> None:
        self._bus.emit(JobChanged(event))

    def _announce(self, job: Job) -> None:
        """A newly queued job's event; a listener's failure must not cost the request."""
        try:
            self._job_changed(_event(job, eta_s=self._queued_eta()))
        except Exception:
            log.exception("job %s: the queued event could not be published", job.id)

    def _check_names(self, request: SongRequest) -> None:
        if request.room is not None:
            self._settings.room(request.room)
        if request.engine is not None:
            engine_plugin(request.engine)  # UnknownEngine naming the registered ones
        if request.lora is not None:
            self._check_lora(request.engine or self._settings.generation.engine, request.lora)
        providers = self._settings.lyrics.provider_names
        if request.lyrics_provider is not None and request.lyrics_provider not in providers:
            raise errors.UnknownProvider(
                f"unknown lyrics provider {request.lyrics_provider!r} "
                f"(providers: {', '.join(providers)})", "lyrics_provider")

    def _check_lora(self, engine: str, lora: str) -> None:
        """A LoRA style is refused in the reply, not by a failed job: only the in-process
        engine switches adapters per song (a remote server's adapter is global to it, so
        `[acestep_api] lora` sets one for every song instead)."""
        if not engine_plugin(engine).capabilities.loras:
            raise errors.Unsupported(f"the {engine} engine takes no LoRA style per request"
                                     + (" (set [acestep_api] lora for every song)"
                                        if engine == "acestep_api" else ""), "lora")
        known = self._settings.acestep.loras
        if lora not in known:
            raise errors.InvalidPayload(f"no LoRA style {lora!r} in [acestep] loras (known: "
                                        f"{', '.join(sorted(known)) or 'none configured'})", "lora")

    async def cancel(self, job_id: str) -> Job:
        job: Job | None = await self._store.call(Job.get_or_none, Job.id == job_id)
        if job is None:
            raise errors.UnknownJob(f"no job {job_id!r}", "job_id")
        if JobState(job.state).terminal:
            raise errors.InvalidState(f"job {job_id} is already {job.state}")
        cancelled = await self._store.call(_cancel_if_queued, job_id)
        if cancelled is not None:
            self._pending -= 1
            self._job_changed(_event(cancelled))
            self._publish_queue()
            return cancelled
        running = self._running.get(job_id)
        if running is not None:
            running.worker.cancel()  # the worker announces `cancelled` when production stops
        return job

    async def get(self, job_id: str) -> Job | None:
        return await self._store.call(Job.get_or_none, Job.id == job_id)

    # ------------------------------------------------------------------ workers

    async def _worker(self, process: Producer) -> None:
        """Claim and run jobs forever. Supervised here: whatever escapes a job (a database
        that cannot be written, a worker process that cannot start) is logged at ERROR, the
        job held is kept for later, and the loop carries on after a growing pause."""
        first_delay = self._settings.generation.retry_min_s
        delay = first_delay
        # A local render process is started for the first song (produce() starts it) and
        # retired after `worker_idle_s` without one, so an idle daemon holds no engine.
        idle_s = self._settings.generation.worker_idle_s
        retires = idle_s > 0 and isinstance(process, WorkerProcess)
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        while True:
            job: Job | None = None
            try:
                await self._rescue_stranded()
                idle_until = idle_since + idle_s if retires and process.alive else None
                job = await self._next_job(idle_until)
                if job is None:
                    if idle_until is not None and loop.time() >= idle_until:
                        log.info("job worker %s idle for %.0f s: its process retired",
                                 process.index, idle_s)
                        await process.stop()
                    continue
                await self._run(job, process)
                idle_since = loop.time()
                delay = first_delay
            except asyncio.CancelledError:
                raise
            except Exception as error:
                fault = diskfaults.database_failure(error, self._where)
                if job is not None:
                    self._running.pop(job.id, None)
                    self._stranded.add(job.id)
                    self._announce_stranded(job, fault, delay)
                if fault is not None:
                    log.error("job worker %s: %s; trying again in %.1f s", process.index,
                              fault.message, delay)
                else:
                    log.error("job worker %s failed; trying again in %.1f s", process.index,
                              delay, exc_info=error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _announce_stranded(self, job: Job, fault: errors.CassettedError | None,
                           delay: float) -> None:
        """Say why a job stopped when its row cannot say it: it goes back in the queue as
        soon as the database takes writes (the event is what the row will read then)."""
        job.state, job.progress = JobState.queued.value, 0.0
        reason = fault or errors.StorageUnavailable("the job's state could not be recorded")
        job.error_code, job.error_message = reason.code, reason.message
        try:
            self._job_changed(_event(job, attempt=job.attempts, retry_in_s=delay))
        except Exception:
            log.exception("job %s: could not announce its retry", job.id)

    async def _next_job(self, idle_until: float | None = None) -> Job | None:
        """The next job to run, waiting for one (None: look again; at the latest at
        `idle_until`, loop time)."""
        now = asyncio.get_running_loop().time()
        for job_id, at in list(self._retry_at.items()):
            if at <= now:
                del self._retry_at[job_id]
        waiting = tuple(self._retry_at)
        job = await self._store.call(_claim_next, waiting)
        if job is None:
            self._wakeup.clear()
            # Re-check after clearing so a submit between claim and clear is not missed.
            job = await self._store.call(_claim_next, waiting)
            if job is None:
                wake = [*self._retry_at.values(), *([idle_until] if idle_until else [])]
                timeout = (min(wake) - asyncio.get_running_loop().time()) if wake else None
                with contextlib.suppress(TimeoutError):  # a retry is due
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                return None
        self._wakeup.set()  # let an idle sibling look for more work
        return job

    async def _rescue_stranded(self) -> None:
        """Jobs whose end could not be written: back in the queue (or done, if their song
        was stored), once the database takes writes again."""
        if not self._stranded:
            return
        ids = sorted(self._stranded)
        for job in await self._store.call(_recover, ids):
            log.warning("job %s is %s again after a storage failure", job.id, job.state)
            self._job_changed(_event(job))
        self._stranded.difference_update(ids)
        await self._refresh_queue()

    async def _run(self, job: Job, process: Producer) -> None:
        request = SongRequest.model_validate_json(job.request)
        room = self._settings.rooms.get(request.room) if request.room else None
        running = _Running(job=job, worker=process)
        self._running[job.id] = running
        self._pending = max(0, self._pending - 1)
        self._publish_queue()
        updates: asyncio.Queue[tuple[JobState, float] | None] = asyncio.Queue()
        try:
            spec, order = await self._spec_and_order(request, room)
            engine = request.engine or self._settings.generation.engine
            running.expected_s = round(spec.duration_s * self._rtf.get(engine, 0.1) + 1.0, 2)
            song_id = new_id()
            self._job_changed(_event(job, eta_s=running.expected_s))
            running.last_published = time.monotonic()

            def report(state: JobState, fraction: float) -> None:
                updates.put_nowait((state, fraction))

            consumer = self._tasks.spawn(self._follow(running, updates), f"follow-{job.id}")
            started = time.monotonic()
            try:
                produced = await process.produce(job.id, song_id, spec, request, order, report)
            finally:
                updates.put_nowait(None)
                await consumer
            song_id = produced.song_id or song_id  # a cluster job re-attached after a restart
            self._learn(engine, (time.monotonic() - started) / spec.duration_s)
            try:
                job, song, variants = await self._store.call(
                    _store_song, job.id, song_id, produced, request)
            except Exception:
                # No row, so these files must not stay: the next attempt makes new ones.
                incoming.discard(self._settings.library_dir,
                                 [produced.relative_file, *produced.variant_files])
                raise
            try:
                await process.committed(job.id)
            except Exception:  # the result is kept for a while; a duplicate is recognised
                log.exception("job %s: could not release its result", job.id)
            # Committed: now the files may enter the library (a crash before this line
            # leaves them in .incoming/, which the next start settles).
            try:
                incoming.place(self._settings.library_dir,
                               [produced.relative_file, *produced.variant_files])
            except OSError as error:  # the row is there: the next start moves them in
                log.error("song %s: files not moved into the library yet: %s", song_id, error)
            info = song_info(song, self._settings)
            self._job_changed(_event(job, file=info.file, room=song.room, worker=produced.worker,
                                     variants=variants or None,
                                     warnings=list(produced.notes) or None))
            ready = SongReady(info, job.id)
            self._bus.emit(ready)  # the party may hold it: it plays in the party's order
            if self._deliver is not None and song.room and not ready.held_by and await self._play(info):
                job = await self._store.call(_set, job.id, state=JobState.playing.value)
                self._job_changed(_event(job, file=info.file, room=song.room,
                                         worker=produced.worker))
            job = await self._store.call(_set, job.id, state=JobState.done.value,
                                         finished_at=time.time())
            self._job_changed(_event(job, file=info.file, room=song.room, worker=produced.worker))
        except Cancelled:
            job = await self._store.call(_set, job.id, state=JobState.cancelled.value,
                                         finished_at=time.time())
            self._job_changed(_event(job))
        except asyncio.CancelledError:
            raise  # daemon stopping: stop() puts the job back in the queue
        except errors.CassettedError as error:
            await self._fail(job, error)
        except Exception as error:
            if diskfaults.database_failure(error, self._where) is not None:
                raise  # nothing can be recorded now: the worker keeps the job (see _worker)
            # A job boundary: fail this job, keep serving.
            log.exception("job %s failed", job.id)
            await self._fail(job, errors.GenerationFailed(f"{type(error).__name__}: {error}"[:300]))
        finally:
            self._running.pop(job.id, None)
            self._publish_queue()

    async def _play(self, info: SongInfo) -> bool:
        """Hand a finished song to playback; a player that hangs must not stall the queue."""
        assert self._deliver is not None
        try:
            return await asyncio.wait_for(self._deliver(info), _DELIVER_TIMEOUT_S)
        except TimeoutError:
            log.error("room %s: the player did not start song %s within %d s",
                      info.room, info.id, _DELIVER_TIMEOUT_S)
            return False

    async def _spec_and_order(self, request: SongRequest, room: RoomSettings | None
                              ) -> tuple[SongSpec, TaskOrder | None]:
        """The spec to produce and, for a cover or repaint, the source song to start from."""
        if request.task == "text2music":
            spec = spec_module.resolve(request, self._settings.generation, room,
                                       self._read_prompt)
            if request.steps or request.shift or request.variants > 1 or request.lora:
                return spec, TaskOrder(steps=request.steps, shift=request.shift,
                                       variants=request.variants, lora=request.lora)
            return spec, None
        row = await self._store.call(Song.get_or_none, Song.id == request.source_song_id)
        if row is None:
            raise errors.UnknownSong(f"no song {request.source_song_id!r}", "source_song_id")
        source = song_info(row, self._settings)
        spec = spec_module.resolve_from_source(request, source, self._settings.generation)
        return spec, TaskOrder(
            kind=request.task, source_path=source.file, source_bpm=source.bpm,
            cover_strength=request.cover_strength, repaint_start_s=request.repaint_start_s,
            repaint_end_s=request.repaint_end_s, steps=request.steps, shift=request.shift,
            variants=request.variants, lora=request.lora)

    async def _fail(self, job: Job, error: errors.CassettedError) -> None:
        """A failed attempt: retried later when the system is to blame, else final."""
        attempts = job.attempts
        generation = self._settings.generation
        if error.system_fault and attempts <= generation.retries:
            wait = min(generation.retry_min_s * 2 ** max(0, attempts - 1), RETRY_MAX_S)
            log.error("job %s attempt %d failed: %s %s; retrying in %.1f s", job.id, attempts,
                      error.code, error.message, wait)
            job = await self._store.call(_set, job.id, state=JobState.queued.value,
                                         progress=0.0, error_code=error.code,
                                         error_message=error.message)
            self._retry_at[job.id] = asyncio.get_running_loop().time() + wait
            self._pending += 1
            self._job_changed(_event(job, attempt=attempts, retry_in_s=wait))
            self._wakeup.set()  # an idle worker must learn when the retry is due
            return
        log.error("job %s failed: %s %s", job.id, error.code, error.message)
        job = await self._store.call(_set, job.id, state=JobState.failed.value,
                                     error_code=error.code, error_message=error.message,
                                     finished_at=time.time())
        self._job_changed(_event(job, attempt=attempts))

    async def _follow(self, running: _Running, updates: asyncio.Queue[tuple[JobState, float] | None]) -> None:
        """Turn the pipeline's reports into rows and events: transitions always, progress throttled."""
        state = JobState(running.job.state)
        while (update := await updates.get()) is not None:
            new_state, fraction = update
            now = time.monotonic()
            changed = new_state != state
            due = (fraction - running.last_progress >= _PROGRESS_STEP
                   or now - running.last_published >= _PROGRESS_INTERVAL_S)
            if not (changed or due):
                continue
            state = new_state
            try:
                running.job = await self._store.call(_set, running.job.id, state=state.value,
                                                     progress=round(fraction, 4))
            except Exception as error:
                fault = diskfaults.database_failure(error, self._where)
                if fault is None:
                    raise
                if not running.unrecorded:
                    log.error("job %s: progress not recorded: %s", running.job.id, fault.message)
                running.unrecorded = True
                running.job.state, running.job.progress = state.value, round(fraction, 4)
            running.last_progress, running.last_published = fraction, now
            self._job_changed(_event(running.job, eta_s=self._eta(running, fraction)))

    # ------------------------------------------------------------------ estimates

    def _eta(self, running: _Running, fraction: float) -> float:
        elapsed = time.monotonic() - running.started
        if fraction >= 0.15:
            return round(max(0.0, elapsed * (1 - fraction) / fraction), 2)
        return round(max(0.0, running.expected_s - elapsed), 2)

    def _learn(self, engine: str, rtf: float) -> None:
        old = self._rtf.get(engine)
        self._rtf[engine] = rtf if old is None else 0.7 * old + 0.3 * rtf

    def _queued_eta(self) -> float:
        """Rough wait: the work ahead shared by the workers (default song length assumed)."""
        per_song = self._settings.generation.default_duration_s * (
            max(self._rtf.values()) if self._rtf else 0.1) + 1.0
        ahead = self._pending + len(self._running)
        return round(per_song * ahead / self._concurrency + per_song, 2)

    # ------------------------------------------------------------------ queue state

    async def _refresh_queue(self) -> None:
        self._pending = await self._store.call(_queue_counts)
        self._publish_queue()

    def _publish_queue(self) -> None:
        self._bus.emit(QueueChanged(QueueState(
            pending=self._pending, running=sorted(self._running),
            max_concurrent=self._concurrency)))
