"""LocalZone: without sounddevice it says so; with a stand-in sound card it plays a queue."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from cassetted.playback.base import Track, ZoneError
from cassetted.playback.zones.local import LocalZone
from tests.playback.helpers import Recorder, run


class FakeCard:
    """Stands in for sounddevice.OutputStream: the test pulls blocks like PortAudio would."""

    def __init__(self) -> None:
        self.streams: list[dict[str, Any]] = []

    def __call__(self, rate: int, channels: int, callback: Callable[..., None]) -> FakeCard:
        self.streams.append({"rate": rate, "channels": channels, "callback": callback,
                             "running": False, "closed": False})
        return self

    def start(self) -> None:
        self.streams[-1]["running"] = True

    def stop(self) -> None:
        self.streams[-1]["running"] = False

    def close(self) -> None:
        self.streams[-1]["closed"] = True

    def pull(self, frames: int) -> np.ndarray:
        stream = self.streams[-1]
        out = np.empty((frames, stream["channels"]), dtype="float32")
        stream["callback"](out, frames, None, None)
        return out


def test_without_sounddevice_the_zone_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                          tracks: Callable[..., Track]) -> None:
    real_import = builtins.__import__

    def no_sounddevice(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "sounddevice":
            raise ImportError("No module named 'sounddevice'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sounddevice)

    async def body() -> None:
        states = Recorder()
        zone = LocalZone("kitchen")
        await zone.start(states)
        status = await states.wait(lambda s: s.state == "unavailable")
        assert "cassetted[local]" in str(status.extra["reason"])
        with pytest.raises(ZoneError, match="cassetted\\[local\\]"):
            await zone.play_now(tracks("x"))

    run(body())


def test_plays_a_queue_with_controls(tracks: Callable[..., Track]) -> None:
    first, second = tracks("l1", seconds=0.5), tracks("l2", seconds=0.5)

    async def body() -> None:
        card = FakeCard()
        states = Recorder()
        zone = LocalZone("kitchen", stream_factory=card)
        await zone.start(states)
        await states.wait(lambda s: s.state == "idle")
        await zone.set_queue([first, second])
        await states.wait(lambda s: s.state == "playing" and s.song_id == "l1")
        assert card.streams[-1]["rate"] == 44100 and card.streams[-1]["running"]
        loud = np.abs(card.pull(1024)).max()
        await zone.control("volume", volume=50)
        quiet = np.abs(card.pull(1024)).max()
        assert quiet == pytest.approx(loud * 0.25, rel=0.05)
        await zone.control("pause")
        assert not card.streams[-1]["running"]
        await zone.control("play")
        await zone.control("seek", position_s=0.45)
        card.pull(44100)  # past the end: the zone moves on by itself
        await states.wait(lambda s: s.song_id == "l2" and s.state == "playing")
        card.pull(44100)
        await states.wait(lambda s: s.state == "idle")
        await zone.play_now(first)
        await states.wait(lambda s: s.song_id == "l1" and s.state == "playing")
        await zone.control("stop")
        assert card.streams[-1]["closed"]
        await zone.stop()

    run(body())
