"""WorkerProcess: a real spawned child producing with the built-in engine and lyric writer."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import JobState, SongRequest, SongSpec
from cassetted.jobs.pipeline import Produced
from cassetted.jobs.spec import resolve
from cassetted.jobs.worker import WorkerProcess
from cassetted.library.incoming import incoming_dir
from cassetted.music.base import Cancelled
from tests.jobs.conftest import SHORT_S

T = TypeVar("T")


def run(test: Callable[[WorkerProcess], Awaitable[T]], settings: Settings,
        timeout: float = 90) -> T:
    """Start one worker, run `test` with it, always stop it."""

    async def main() -> T:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        worker = WorkerProcess(settings, 0)
        await worker.start()
        try:
            return await asyncio.wait_for(test(worker), timeout)
        finally:
            await worker.stop()

    return asyncio.run(main())


def order(settings: Settings, **fields: Any) -> tuple[SongSpec, SongRequest]:
    values: dict[str, Any] = {"prompt": "a song about rain", "seed": 11, "duration_s": SHORT_S}
    values.update(fields)
    request = SongRequest(**values)
    return resolve(request, settings.generation), request


def our_child() -> multiprocessing.process.BaseProcess:
    [child] = [p for p in multiprocessing.active_children() if p.name == "cassetted-worker-0"]
    return child


async def _signal_mid_song(worker: WorkerProcess, settings: Settings, job_id: str,
                           sig: signal.Signals) -> tuple[multiprocessing.process.BaseProcess,
                                                         asyncio.Task[Produced]]:
    """Start a 120 s song and send the child `sig` once it composes: the child and the
    production task, still running."""
    spec, request = order(settings, duration_s=120)
    first = our_child()
    composing = asyncio.Event()

    def report(state: JobState, fraction: float) -> None:
        if state == JobState.composing:
            composing.set()

    production = asyncio.create_task(worker.produce(job_id, f"song-{job_id}", spec, request,
                                                    None, report))
    await composing.wait()
    assert first.pid is not None
    os.kill(first.pid, sig)
    return first, production


def test_produce_reports_progress_and_hands_back_the_song(settings: Settings) -> None:
    reports: list[tuple[JobState, float]] = []

    async def test(worker: WorkerProcess) -> Produced:
        spec, request = order(settings)
        return await worker.produce("job1", "song1", spec, request, None,
                                    lambda state, fraction: reports.append((state, fraction)))

    produced = run(test, settings)
    assert produced.engine == "builtin" and produced.lyrics_provider == "builtin"
    assert produced.spec.lyrics and produced.spec.title  # the child wrote the lyrics
    assert produced.relative_file.endswith("-song1.flac")
    # The file waits in .incoming/ until the runner has committed its row.
    assert (incoming_dir(settings.library_dir) / produced.relative_file).is_file()
    states = list(dict.fromkeys(state for state, _ in reports))
    assert states == [JobState.writing_lyrics, JobState.composing, JobState.encoding]
    fractions = [fraction for _, fraction in reports]
    assert fractions == sorted(fractions) and fractions[0] >= 0 and fractions[-1] <= 1


def test_cancel_stops_production(settings: Settings) -> None:
    async def test(worker: WorkerProcess) -> None:
        spec, request = order(settings, duration_s=120)
        composing = asyncio.Event()

        def report(state: JobState, fraction: float) -> None:
            if state == JobState.composing:
                composing.set()

        production = asyncio.create_task(worker.produce("job2", "song2", spec, request, None, report))
        await composing.wait()
        worker.cancel()
        with pytest.raises(Cancelled):
            await asyncio.wait_for(production, 30)
        assert worker.alive  # the child serves the next job

    run(test, settings)


def test_an_error_in_the_child_comes_back_as_its_class(settings: Settings) -> None:
    async def test(worker: WorkerProcess) -> None:
        spec, request = order(settings, engine="gramophone")
        with pytest.raises(errors.UnknownEngine, match="gramophone"):
            await worker.produce("job3", "song3", spec, request, None, lambda state, fraction: None)
        assert worker.alive

    run(test, settings)


def test_a_killed_child_is_an_interruption_and_is_replaced(settings: Settings) -> None:
    async def test(worker: WorkerProcess) -> None:
        first, production = await _signal_mid_song(worker, settings, "job4", signal.SIGKILL)
        with pytest.raises(errors.Interrupted, match="died") as caught:
            await asyncio.wait_for(production, 30)
        assert caught.value.system_fault  # retried by the runner, not failed for good
        assert worker.alive and our_child().pid != first.pid

    run(test, settings)


def test_stop_ends_the_child(settings: Settings) -> None:
    async def test(worker: WorkerProcess) -> multiprocessing.process.BaseProcess:
        child = our_child()
        await worker.stop()
        assert not worker.alive
        return child

    child = run(test, settings)
    assert not child.is_alive() and child.exitcode == 0  # asked to stop, not killed


def test_a_hung_child_is_killed_after_stall_s_and_is_an_interruption(settings: Settings) -> None:
    """SIGSTOP freezes the child mid-song as a wedged driver would: it neither dies nor
    answers. After `stall_s` without progress it is killed and replaced, and the job is an
    interruption (retried), not held forever."""
    settings = settings.model_copy(update={"generation": settings.generation.model_copy(
        update={"stall_s": 5.0})})

    async def test(worker: WorkerProcess) -> float:
        first, production = await _signal_mid_song(worker, settings, "job5", signal.SIGSTOP)
        frozen = asyncio.get_running_loop().time()
        with pytest.raises(errors.Interrupted, match="no progress for 5 s") as caught:
            await asyncio.wait_for(production, 30)
        waited = asyncio.get_running_loop().time() - frozen
        assert caught.value.system_fault
        assert not first.is_alive() and worker.alive and our_child().pid != first.pid
        return waited

    assert 4.0 <= run(test, settings) < 15  # the clock runs from the last report
