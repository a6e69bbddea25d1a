"""PlaybackController standalone: real store (SQLite), real MPD and snapserver, no MQTT."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cassetted.config import MpdSettings, RoomSettings, Settings
from cassetted.contract import errors
from cassetted.contract.schemas import Event, PartyCommand, RoomCommand, RoomState, SongInfo
from cassetted.events import EventBus
from cassetted.library.access import song_info
from cassetted.playback.controller import PlaybackController
from cassetted.playback.errors import PlaybackFailed
from cassetted.playback.settings import MpdEndpoint, SnapcastPlaybackSettings
from cassetted.store.database import Song, Store
from tests.playback.helpers import require_servers, run, write_flac

require_servers()
from tests.fixtures.services import HOST, MpdServer, SnapServer  # noqa: E402


class Published:
    """What the controller published, as the daemon's MQTT side would receive it."""

    def __init__(self) -> None:
        self.states: list[tuple[str, RoomState]] = []
        self.events: list[Event] = []

    def state(self, room: str, state: RoomState) -> None:
        self.states.append((room, state))

    def event(self, event: Event) -> None:
        self.events.append(event)

    def last(self, room: str) -> RoomState | None:
        return next((s for r, s in reversed(self.states) if r == room), None)

    async def until(self, predicate: Callable[[], object], timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a test's wait states its own limit
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 - the predicate reads state with no event to await
                await asyncio.sleep(0.01)

    def event_types(self, room: str | None = None) -> list[tuple[str, str | None]]:
        return [(e.type, e.song_id) for e in self.events if room is None or e.room == room]


def _settings(tmp_path: Path, mpd: MpdServer | None) -> Settings:
    rooms = {
        "kitchen_room": RoomSettings(name="Kitchen", output="snapcast", snapcast_group="kitchen"),
        "bedroom": RoomSettings(name="Bedroom", snapcast_group="bedroom"),
        "study": RoomSettings(name="Study"),
    }
    if mpd is not None:
        rooms["living_room"] = RoomSettings(
            name="Living Room", output="mpd",
            mpd=MpdSettings(host=HOST, port=mpd.port, music_dir=mpd.music_dir))
    return Settings(state_dir=tmp_path / "state", rooms=rooms)


def _make_song(song_id: str, library: Path, room: str | None, seconds: float) -> Song:
    write_flac(library / f"song-{song_id}.flac", seconds)
    return Song.create(id=song_id, title=f"Song {song_id}", genre="jazz", mood="relaxing",
                       bpm=100, key="C major", time_signature="4/4", duration_s=seconds,
                       language="en", seed=1, room=room, engine="builtin",
                       lyrics_provider="builtin", file=f"song-{song_id}.flac", format="flac")


class Harness:
    def __init__(self, tmp_path: Path, mpd: MpdServer | None,
                 snap: SnapServer | None = None, party_mpd: MpdServer | None = None) -> None:
        self.settings = _settings(tmp_path, mpd)
        self.store = Store(None, self.settings.state_dir)
        self.published = Published()
        snapcast = SnapcastPlaybackSettings(
            host=HOST, port=snap.control_port if snap else 1, reconnect_max_s=0.2,
            mpd=MpdEndpoint(host=HOST, port=party_mpd.port, music_dir=party_mpd.music_dir)
            if party_mpd else None)
        self.bus = EventBus()
        self.controller = PlaybackController(self.settings, self.store, self.bus,
                                             self.published.state, self.published.event,
                                             snapcast=snapcast)

    async def song(self, song_id: str, room: str | None = "living_room",
                   seconds: float = 3.0) -> SongInfo:
        row = await self.store.call(_make_song, song_id, self.settings.library_dir, room, seconds)
        return song_info(row, self.settings)

    async def room(self, room: str, action: str, **fields: Any) -> dict[str, Any]:
        return await self.controller.handle_room_command(room, RoomCommand(action=action, **fields))


async def _harness(*args: Any) -> Harness:
    harness = Harness(*args)
    await harness.store.open()
    await harness.controller.start()
    return harness


async def _close(harness: Harness) -> None:
    await harness.controller.stop()
    await harness.store.close()


def test_song_ready_plays_now_and_publishes(tmp_path: Path, mpd_server: MpdServer) -> None:
    async def body() -> None:
        h = await _harness(tmp_path, mpd_server)
        p = h.published
        await p.until(lambda: p.last("living_room") and p.last("living_room").state == "idle")
        song = await h.song("fresh1")
        started = time.perf_counter()
        assert await h.controller.song_ready(song) is True
        assert time.perf_counter() - started < 1.0
        assert mpd_server.status()["state"] == "play"
        assert mpd_server.currentsong()["file"] == "cassetted/fresh1.flac"
        await p.until(lambda: p.last("living_room").state == "playing")
        state = p.last("living_room")
        assert state.song is not None and state.song.id == "fresh1" and state.output == "mpd"
        assert ("song_started", "fresh1") in p.event_types("living_room")
        assert [s.id for s in await h.controller.playlist("living_room")] == ["fresh1"]
        await p.until(lambda: mpd_server.stored_playlist("cassetted-living_room")
                      == ["cassetted/fresh1.flac"])
        # A song for a room without a player is kept in its playlist, not played.
        assert await h.controller.song_ready(await h.song("quiet", room="study")) is False
        assert [s.id for s in await h.controller.playlist("study")] == ["quiet"]
        assert await h.controller.song_ready(await h.song("nowhere", room=None)) is False
        await _close(h)

    run(body())


def test_song_finished_follows_the_end_of_a_song(tmp_path: Path, mpd_server: MpdServer) -> None:
    async def body() -> None:
        h = await _harness(tmp_path, mpd_server)
        p = h.published
        await h.controller.song_ready(await h.song("short", seconds=0.5))
        await p.until(lambda: ("song_finished", "short") in p.event_types(), timeout=10)
        await p.until(lambda: p.last("living_room").state == "idle")
        assert p.event_types("living_room") == [("song_started", "short"), ("song_finished", "short")]
        await _close(h)

    run(body())


def test_room_commands(tmp_path: Path, mpd_server: MpdServer) -> None:
    async def body() -> None:
        h = await _harness(tmp_path, mpd_server)
        p = h.published
        for song_id in ("s1", "s2", "s3"):
            await h.song(song_id, seconds=5)
        await h.controller.snapcast.stop()  # type: ignore[union-attr]  # not under test here

        for song_id in ("s1", "s2", "s3"):
            reply = await h.room("living_room", "add", song_id=song_id)
        assert reply["playlist"] == ["s1", "s2", "s3"] and reply["mirrored"] is True
        reply = await h.room("living_room", "remove", song_id="s2")
        assert reply["playlist"] == ["s1", "s3"]
        assert mpd_server.stored_playlist("cassetted-living_room") == [
            "cassetted/s1.flac", "cassetted/s3.flac"]
        await h.room("living_room", "add", song_id="s2")
        reply = await h.room("living_room", "shuffle")
        assert sorted(reply["playlist"]) == ["s1", "s2", "s3"]
        order = reply["playlist"]
        assert mpd_server.stored_playlist("cassetted-living_room") == [
            f"cassetted/{s}.flac" for s in order]

        # `play` with nothing queued in MPD starts the room's playlist.
        await h.room("living_room", "play")
        await p.until(lambda: p.last("living_room").song and p.last("living_room").song.id == order[0])
        reply = await h.room("living_room", "play_playlist", song_id=order[1])
        assert reply["playlist"] == order
        await p.until(lambda: p.last("living_room").song and p.last("living_room").song.id == order[1])
        await h.room("living_room", "next")
        await p.until(lambda: p.last("living_room").song.id == order[2])
        await h.room("living_room", "volume", volume=20)
        await p.until(lambda: p.last("living_room").volume == 20)
        await h.room("living_room", "pause")
        await p.until(lambda: p.last("living_room").state == "paused")
        await h.room("living_room", "play_song", song_id="s1")
        await p.until(lambda: p.last("living_room").state == "playing"
                      and p.last("living_room").song.id == "s1")
        await h.room("living_room", "seek", position_s=2)
        await h.room("living_room", "stop")
        await p.until(lambda: p.last("living_room").state == "idle")
        assert mpd_server.status()["state"] == "stop"
        reply = await h.room("living_room", "clear")
        assert reply["playlist"] == [] and mpd_server.stored_playlist("cassetted-living_room") == []

        # Every refusal is a CassettedError with its code.
        cases = [
            (("attic", "play"), {}, errors.UnknownRoom),
            (("living_room", "play_song"), {"song_id": "nope"}, errors.UnknownSong),
            (("living_room", "play_song"), {}, errors.InvalidPayload),
            (("living_room", "add"), {"song_id": "nope"}, errors.UnknownSong),
            (("living_room", "remove"), {"song_id": "s1"}, errors.UnknownSong),
            (("living_room", "play_playlist"), {}, errors.InvalidState),
            (("living_room", "volume"), {}, errors.InvalidPayload),
            (("living_room", "seek"), {}, errors.InvalidPayload),
            (("study", "play"), {}, errors.Unsupported),
        ]
        for (room, action), fields, expected in cases:
            with pytest.raises(expected):
                await h.room(room, action, **fields)
        await h.room("study", "add", song_id="s1")  # playlists work for every room

        await asyncio.to_thread(mpd_server.stop)
        await p.until(lambda: p.last("living_room").state == "unavailable")
        with pytest.raises(PlaybackFailed) as failed:
            await h.room("living_room", "play")
        assert failed.value.code == "playback_failed"
        await _close(h)

    run(body())


def test_party_through_the_controller(tmp_path: Path, mpd_server: MpdServer,
                                      snapserver: SnapServer, party_mpd: MpdServer) -> None:
    async def body() -> None:
        h = await _harness(tmp_path, mpd_server, snapserver, party_mpd)
        p = h.published
        await h.controller.snapcast.wait_connected()  # type: ignore[union-attr]
        await p.until(lambda: p.last("kitchen_room") and p.last("kitchen_room").state == "idle")
        await h.song("anthem", seconds=5)

        with pytest.raises(errors.UnknownRoom):
            await h.controller.handle_party(PartyCommand(action="start", rooms=["attic"]))
        with pytest.raises(errors.InvalidState):
            await h.controller.handle_party(PartyCommand(action="start", rooms=["study"]))

        result = await h.controller.handle_party(PartyCommand(action="start", song_id="anthem"))
        assert result["rooms"] == ["bedroom", "kitchen_room"]
        for client in ("kitchen", "bedroom"):
            assert snapserver.group_of(client)["stream_id"] == "party"
        assert party_mpd.currentsong()["file"] == "cassetted/anthem.flac"
        assert party_mpd.status()["state"] == "play"
        await p.until(lambda: p.last("kitchen_room").party and p.last("kitchen_room").state == "playing")
        assert p.last("kitchen_room").song.id == "anthem"
        assert not p.last("living_room").party
        assert "party_started" in [e.type for e in p.events]

        # A song made for a room in the party is heard by the whole party.
        assert await h.controller.song_ready(await h.song("encore", room="bedroom")) is True
        assert party_mpd.currentsong()["file"] == "cassetted/encore.flac"

        result = await h.controller.handle_party(PartyCommand(action="stop"))
        assert result["restored"] == ["bedroom", "kitchen_room"]
        for client in ("kitchen", "bedroom"):
            assert snapserver.group_of(client)["stream_id"] == "radio"
        assert party_mpd.status()["state"] == "stop"
        await p.until(lambda: not p.last("kitchen_room").party)
        assert "party_stopped" in [e.type for e in p.events]
        await _close(h)

    run(body())


def test_rooms_without_a_working_player_are_unavailable_with_the_reason(tmp_path: Path) -> None:
    async def body() -> None:
        settings = Settings(state_dir=tmp_path / "state", rooms={
            "garage": RoomSettings(name="Garage", output="mpd"),  # no [rooms.garage.mpd]
        })
        store = Store(None, settings.state_dir)
        await store.open()
        published = Published()
        controller = PlaybackController(settings, store, EventBus(), published.state,
                                        published.event)
        await controller.start()
        await published.until(lambda: published.last("garage") is not None)
        assert published.last("garage").state == "unavailable"
        with pytest.raises(PlaybackFailed, match=r"no \[rooms.garage.mpd\]"):
            await controller.handle_room_command("garage", RoomCommand(action="play"))
        with pytest.raises(errors.Unsupported):
            await controller.handle_party(PartyCommand(action="start"))
        # A song for it is still kept in its playlist; the failure is an `error` event.
        row = await store.call(_make_song, "g1", settings.library_dir, "garage", 1.0)
        assert await controller.song_ready(song_info(row, settings)) is False
        await published.until(lambda: published.event_types("garage") == [("error", "g1")])
        assert [s.id for s in await controller.playlist("garage")] == ["g1"]
        await controller.stop()
        await store.close()

    run(body())
