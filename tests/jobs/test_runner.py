"""JobRunner on a real SQLite store with real worker processes and the built-in engine.

Each test drives the runner through its public face (submit, cancel, get, start, stop) and
reads the `job` table and the listener's events, as the daemon's MQTT side would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import ENVELOPE_FIELDS, JobState, SongRequest
from cassetted.jobs.runner import JobRunner
from cassetted.store.database import Job, Store, new_id
from tests.jobs.conftest import SHORT_S, Recorder, make_settings

T = TypeVar("T")


def run(test: Callable[[JobRunner, Store], Awaitable[T]], settings: Settings,
        recorder: Recorder, timeout: float = 120) -> T:
    """Open a store, build a runner (not started), run `test`, then stop and close both."""

    async def main() -> T:
        store = Store(None, settings.state_dir)
        await store.open()
        runner = JobRunner(store, settings, recorder.bus)
        try:
            return await asyncio.wait_for(test(runner, store), timeout)
        finally:
            await runner.stop()
            await store.close()

    return asyncio.run(main())


def request(**fields: Any) -> SongRequest:
    values: dict[str, Any] = {"prompt": "a song about the kettle", "duration_s": SHORT_S,
                              "instrumental": True}
    values.update(fields)
    return SongRequest(**values)


async def rows(store: Store) -> list[Job]:
    return await store.call(lambda: list(Job.select().order_by(Job.created_at, Job.id)))


# ---------------------------------------------------------------------------- submit


def test_submit_writes_a_queued_row_and_announces_it(settings: Settings,
                                                      recorder: Recorder) -> None:
    async def test(runner: JobRunner, store: Store) -> None:
        job, duplicate = await runner.submit(request(request_id="r-1"))
        assert not duplicate
        [row] = await rows(store)
        assert (row.id, row.state, row.request_id) == (job.id, "queued", "r-1")
        stored = SongRequest.model_validate_json(row.request)
        assert stored.seed is not None  # drawn at intake, so a resumed job makes the same song
        assert [e.state for e in recorder.events] == [JobState.queued]
        assert recorder.queues[-1].pending == 1

    run(test, settings, recorder)


def test_a_resent_request_id_finds_its_job(settings: Settings, recorder: Recorder) -> None:
    async def test(runner: JobRunner, store: Store) -> None:
        first, _ = await runner.submit(request(request_id="same"))
        again, duplicate = await runner.submit(request(request_id="same", prompt="other"))
        assert duplicate and again.id == first.id
        assert len(await rows(store)) == 1
        assert len(recorder.events) == 1  # the duplicate announces nothing

    run(test, settings, recorder)


def test_a_resent_request_id_retries_a_job_the_system_failed(settings: Settings,
                                                             recorder: Recorder) -> None:
    async def test(runner: JobRunner, store: Store) -> None:
        job, _ = await runner.submit(request(request_id="again"))
        await store.call(lambda: Job.update(state="failed", attempts=4,
                                            error_code=errors.Interrupted.code)
                         .where(Job.id == job.id).execute())
        retried, duplicate = await runner.submit(request(request_id="again"))
        assert not duplicate and retried.id == job.id
        assert (retried.state, retried.attempts) == ("queued", 0)
        assert retried.error_code == errors.Interrupted.code  # says why it is tried again

    run(test, settings, recorder)


@pytest.mark.parametrize(("fields", "error"), [
    ({"room": "attic"}, errors.UnknownRoom),
    ({"engine": "gramophone"}, errors.UnknownEngine),
    ({"lyrics_provider": "nobody"}, errors.UnknownProvider),
    ({"lora": "jazzy"}, errors.Unsupported),  # the built-in engine takes no LoRA
    ({"task": "cover", "source_song_id": "nosuchsong"}, errors.UnknownSong),
])
def test_admission_refuses_bad_names_without_a_row(settings: Settings, recorder: Recorder,
                                                   fields: dict[str, Any],
                                                   error: type[errors.CassettedError]) -> None:
    async def test(runner: JobRunner, store: Store) -> None:
        with pytest.raises(error):
            await runner.submit(request(**fields))
        assert await rows(store) == []
        assert recorder.events == []

    run(test, settings, recorder)


def test_a_full_queue_refuses_more(tmp_path: Path, recorder: Recorder) -> None:
    async def test(runner: JobRunner, store: Store) -> None:
        await runner.submit(request())
        await runner.submit(request())
        with pytest.raises(errors.QueueFull):
            await runner.submit(request())
        assert len(await rows(store)) == 2

    run(test, make_settings(tmp_path, max_pending=2), recorder)


# ------------------------------------------------------------------------ lifecycle


def test_start_recovers_interrupted_jobs(settings: Settings, recorder: Recorder) -> None:
    """A daemon killed mid-job left rows in running states: each is queued again (and then
    produced), failed after too many attempts, or done if its song was already stored."""
    body = request(seed=5).model_dump_json(exclude=set(ENVELOPE_FIELDS))

    async def test(runner: JobRunner, store: Store) -> None:
        def leave(state: str, attempts: int) -> str:
            job_id = new_id()
            Job.create(id=job_id, request=body, state=state, attempts=attempts, progress=0.5)
            return job_id

        resumed = await store.call(leave, "composing", 1)
        given_up = await store.call(leave, "encoding", 3)
        was_ready = await store.call(leave, "ready", 1)
        await runner.start()
        announced = {e.job_id: e for e in recorder.events}
        assert announced[resumed].state == JobState.queued
        failure = announced[given_up].error
        assert announced[given_up].state == JobState.failed
        assert failure is not None and failure.code == errors.Interrupted.code
        assert announced[was_ready].state == JobState.done

        await recorder.until_state(resumed, JobState.done)
        states = {row.id: (row.state, row.attempts) for row in await rows(store)}
        assert states == {resumed: ("done", 2), given_up: ("failed", 3),
                          was_ready: ("done", 1)}

    run(test, settings, recorder)


def test_jobs_run_in_arrival_order(settings: Settings, recorder: Recorder) -> None:
    async def test(runner: JobRunner, store: Store) -> None:
        ids = [(await runner.submit(request(seed=n)))[0].id for n in range(3)]
        await runner.start()
        await recorder.until(lambda: all(JobState.done in recorder.states(i) for i in ids),
                             within_s=150)
        started = [e.job_id for e in recorder.events if e.state == JobState.writing_lyrics]
        assert list(dict.fromkeys(started)) == ids
        assert [row.song_id is not None for row in await rows(store)] == [True] * 3
        assert [job for _, job in recorder.ready] == ids

    run(test, settings, recorder, timeout=180)


def test_a_finished_job_went_through_every_state(settings: Settings, recorder: Recorder) -> None:
    async def test(runner: JobRunner, store: Store) -> None:
        await runner.start()
        job, _ = await runner.submit(request())
        await recorder.until_state(job.id, JobState.done)
        assert recorder.states(job.id) == [JobState.queued, JobState.writing_lyrics,
                                           JobState.composing, JobState.encoding,
                                           JobState.ready, JobState.done]
        row = await runner.get(job.id)
        assert row is not None and row.progress == 1.0 and row.finished_at is not None

    run(test, settings, recorder)
    [(song, _)] = recorder.ready
    assert Path(song.file).is_file() and song.duration_s == SHORT_S


def test_stop_puts_the_running_job_back(settings: Settings, recorder: Recorder) -> None:
    async def test(runner: JobRunner, store: Store) -> None:
        await runner.start()
        job, _ = await runner.submit(request())
        await recorder.until_state(job.id, JobState.composing)
        await runner.stop()
        row = await runner.get(job.id)
        assert row is not None
        # Not a crash: the attempt is given back, so a restart does not count it.
        assert (row.state, row.progress, row.attempts) == ("queued", 0.0, 0)

    run(test, settings, recorder)


# ---------------------------------------------------------------------------- cancel


def test_cancel_a_queued_job(settings: Settings, recorder: Recorder) -> None:
    async def test(runner: JobRunner, store: Store) -> None:
        job, _ = await runner.submit(request())
        cancelled = await runner.cancel(job.id)
        assert cancelled.state == "cancelled" and cancelled.finished_at is not None
        assert recorder.states(job.id) == [JobState.queued, JobState.cancelled]
        assert recorder.queues[-1].pending == 0
        with pytest.raises(errors.InvalidState):  # terminal: nothing more to cancel
            await runner.cancel(job.id)
        with pytest.raises(errors.UnknownJob):
            await runner.cancel("no-such-job")

    run(test, settings, recorder)


def test_cancel_a_running_job(settings: Settings, recorder: Recorder) -> None:
    async def test(runner: JobRunner, store: Store) -> None:
        await runner.start()
        job, _ = await runner.submit(request(duration_s=60))
        await recorder.until_state(job.id, JobState.composing)
        await runner.cancel(job.id)
        await recorder.until_state(job.id, JobState.cancelled, within_s=30)
        row = await runner.get(job.id)
        assert row is not None and row.state == "cancelled" and row.song_id is None
        assert recorder.ready == []

    run(test, settings, recorder)
