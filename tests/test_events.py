"""The event bus: typed subscriptions, order, a broken handler contained, held songs."""

from __future__ import annotations

import logging

import pytest

from cassetted.contract.schemas import QueueState, SongInfo
from cassetted.events import EventBus, QueueChanged, RoomExtras, SongReady


def _song() -> SongInfo:
    return SongInfo(id="s1", title="t", prompt="", lyrics="", genre="ambient", mood="relaxing",
                    bpm=70, key="C major", time_signature="4/4", duration_s=10, language="en",
                    instrumental=True, seed=1, room="kitchen", engine="builtin",
                    lyrics_provider="builtin", file="x.flac", format="flac", created_at=0)


def test_handlers_hear_only_their_type_in_subscription_order() -> None:
    bus = EventBus()
    heard: list[str] = []
    bus.subscribe(QueueChanged, lambda event: heard.append(f"first {event.state.pending}"))
    bus.subscribe(RoomExtras, lambda event: heard.append("room"))
    bus.subscribe(QueueChanged, lambda event: heard.append(f"second {event.state.pending}"))
    bus.emit(QueueChanged(QueueState(pending=3, running=[], max_concurrent=1)))
    assert heard == ["first 3", "second 3"]
    assert bus.subscribers(QueueChanged) == 2 and bus.subscribers(SongReady) == 0


def test_a_broken_handler_is_logged_and_the_others_still_hear(
        caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    heard: list[str] = []

    def broken(event: RoomExtras) -> None:
        raise KeyError("boom")

    bus.subscribe(RoomExtras, broken)
    bus.subscribe(RoomExtras, lambda event: heard.append(event.room_id))
    with caplog.at_level(logging.ERROR, logger="cassetted.events"):
        bus.emit(RoomExtras("kitchen", "modes", {"mode": "sleep"}))  # does not raise
    assert heard == ["kitchen"]
    [record] = caplog.records
    assert "RoomExtras" in record.getMessage() and record.exc_info is not None


def test_a_song_held_by_a_handler_says_who_holds_it() -> None:
    bus = EventBus()
    bus.subscribe(SongReady, lambda ready: ready.hold("party"))
    ready = SongReady(_song(), "job-1")
    bus.emit(ready)
    assert ready.held_by == ["party"]
    assert SongReady(_song(), "job-2").held_by == []  # not shared between events
