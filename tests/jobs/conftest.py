"""Real parts for the job tests: a SQLite Store in tmp_path, settings for the built-in engine
at its shortest songs, and a recorder that follows what the runner announces on the event bus."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cassetted.config import GenerationSettings, RoomSettings, Settings
from cassetted.contract.schemas import JobEvent, JobState, QueueState, SongInfo
from cassetted.events import EventBus, JobChanged, QueueChanged, SongReady

SHORT_S = 10  # the shortest song a request may ask for (MIN_DURATION_S)


def make_settings(tmp_path: Path, **generation: Any) -> Settings:
    """One room, the built-in engine and lyric writer, songs of SHORT_S seconds."""
    values: dict[str, Any] = {"default_duration_s": SHORT_S, "retry_min_s": 0.2}
    values.update(generation)
    return Settings(state_dir=tmp_path / "state",
                    rooms={"living_room": RoomSettings(name="Living Room")},
                    generation=GenerationSettings(**values))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@dataclass
class Recorder:
    """Follows the bus the runner announces on (its only outward interface) and keeps
    every event."""

    bus: EventBus = field(default_factory=EventBus)
    events: list[JobEvent] = field(default_factory=list)
    queues: list[QueueState] = field(default_factory=list)
    ready: list[tuple[SongInfo, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bus.subscribe(JobChanged, lambda e: self.events.append(e.event))
        self.bus.subscribe(QueueChanged, lambda e: self.queues.append(e.state))
        self.bus.subscribe(SongReady, lambda e: self.ready.append((e.song, e.job_id)))

    def states(self, job_id: str) -> list[JobState]:
        """The states announced for one job, repeats folded."""
        seen: list[JobState] = []
        for event in self.events:
            if event.job_id == job_id and (not seen or seen[-1] != event.state):
                seen.append(event.state)
        return seen

    async def until(self, test: Callable[[], bool], within_s: float = 60) -> None:
        """Wait on the event loop until `test()` holds (the runner works meanwhile)."""
        deadline = time.monotonic() + within_s
        while not test():
            assert time.monotonic() < deadline, f"timed out; events: {self.events}"
            await asyncio.sleep(0.02)

    async def until_state(self, job_id: str, state: JobState, within_s: float = 60) -> None:
        await self.until(lambda: state in self.states(job_id), within_s)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
