"""MpdZone against a real MPD: delivery, controls, idle-driven state, stored playlists, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from cassetted.config import MpdSettings
from cassetted.playback.base import Track, ZoneError
from tests.playback.helpers import Recorder, require_servers, run

require_servers()
from cassetted.playback.zones.mpd import MpdZone  # noqa: E402
from tests.fixtures.services import HOST, MpdServer  # noqa: E402


def _zone(server: MpdServer, **kwargs: object) -> MpdZone:
    endpoint = MpdSettings(host=HOST, port=server.port, music_dir=server.music_dir)
    return MpdZone("living_room", endpoint, reconnect_max_s=0.2, **kwargs)  # type: ignore[arg-type]


def test_play_now_links_updates_and_plays(mpd_server: MpdServer,
                                          tracks: Callable[..., Track]) -> None:
    track = tracks("a1b2c3")

    async def body() -> None:
        states = Recorder()
        zone = _zone(mpd_server)
        await zone.start(states)
        await states.wait(lambda s: s.state == "idle")
        await zone.play_now(track)
        playing = await states.wait(lambda s: s.state == "playing")
        assert playing.song_id == "a1b2c3"
        await zone.stop()

    run(body())
    placed = mpd_server.music_dir / "cassetted" / "a1b2c3.flac"
    assert placed.stat().st_ino == track.path.stat().st_ino  # a hard link, not a copy
    assert mpd_server.status()["state"] == "play"
    assert mpd_server.currentsong()["file"] == "cassetted/a1b2c3.flac"


def test_play_now_goes_ahead_of_the_queue(mpd_server: MpdServer,
                                          tracks: Callable[..., Track]) -> None:
    first, second, urgent = tracks("q1"), tracks("q2"), tracks("now")

    async def body() -> None:
        states = Recorder()
        zone = _zone(mpd_server)
        await zone.start(states)
        await zone.wait_connected()
        await zone.set_queue([first, second])
        await states.wait(lambda s: s.song_id == "q1" and s.state == "playing")
        await zone.play_now(urgent)
        await states.wait(lambda s: s.song_id == "now")
        await zone.stop()

    run(body())
    client = mpd_server.client()
    queue = [song["file"] for song in client.playlistinfo()]
    client.disconnect()
    assert queue == ["cassetted/q1.flac", "cassetted/now.flac", "cassetted/q2.flac"]


def test_each_control_is_followed_by_a_state(mpd_server: MpdServer,
                                             tracks: Callable[..., Track]) -> None:
    songs = [tracks(f"c{i}", seconds=5) for i in range(3)]

    async def body() -> None:
        states = Recorder()
        zone = _zone(mpd_server)
        await zone.start(states)
        await zone.wait_connected()
        await zone.set_queue(songs, start_index=1)
        await states.wait(lambda s: s.state == "playing" and s.song_id == "c1")

        steps = [
            ("pause", {}, lambda s: s.state == "paused"),
            ("play", {}, lambda s: s.state == "playing"),
            ("volume", {"volume": 35}, lambda s: s.volume == 35),
            ("next", {}, lambda s: s.song_id == "c2"),
            ("previous", {}, lambda s: s.song_id == "c1"),
            ("seek", {"position_s": 3.0}, lambda s: (s.elapsed_s or 0) >= 2.9),
            ("stop", {}, lambda s: s.state == "idle" and s.song_id is None),
        ]
        for action, options, expected in steps:
            mark = states.mark()
            await zone.control(action, **options)  # type: ignore[arg-type]
            await states.wait_after(mark, expected)
        await zone.stop()

    run(body())
    status = mpd_server.status()
    assert status["state"] == "stop" and status["volume"] == "35"


def test_stored_playlist_mirror(mpd_server: MpdServer, tracks: Callable[..., Track]) -> None:
    songs = [tracks("p1"), tracks("p2"), tracks("p3")]

    async def body() -> None:
        zone = _zone(mpd_server)
        await zone.start(Recorder())
        await zone.wait_connected()
        await zone.save_playlist("cassetted-living_room", songs)
        assert mpd_server.stored_playlist("cassetted-living_room") == [
            "cassetted/p1.flac", "cassetted/p2.flac", "cassetted/p3.flac"]
        await zone.save_playlist("cassetted-living_room", [songs[2], songs[0]])
        await zone.append_to_playlist("cassetted-living_room", songs[1])
        assert mpd_server.stored_playlist("cassetted-living_room") == [
            "cassetted/p3.flac", "cassetted/p1.flac", "cassetted/p2.flac"]
        await zone.save_playlist("cassetted-living_room", [])
        assert mpd_server.stored_playlist("cassetted-living_room") == []
        await zone.stop()

    run(body())


def test_mpd_restart_reports_unavailable_then_reconnects(mpd_server: MpdServer,
                                                         tracks: Callable[..., Track]) -> None:
    before, after = tracks("r1"), tracks("r2")

    async def body() -> None:
        states = Recorder()
        zone = _zone(mpd_server)
        await zone.start(states)
        await zone.wait_connected()
        await zone.play_now(before)
        await states.wait(lambda s: s.state == "playing")

        mark = states.mark()
        await asyncio.to_thread(mpd_server.stop)
        down = await states.wait_after(mark, lambda s: s.state == "unavailable")
        assert "unreachable" in str(down.extra["reason"])
        with pytest.raises(ZoneError, match="unavailable"):
            await zone.play_now(after)

        mark = states.mark()
        await asyncio.to_thread(mpd_server.start)
        await states.wait_after(mark, lambda s: s.state != "unavailable", timeout=10)
        await zone.play_now(after)
        await states.wait(lambda s: s.state == "playing" and s.song_id == "r2")
        await zone.stop()

    run(body())
    assert mpd_server.currentsong()["file"] == "cassetted/r2.flac"


def test_song_removed_from_mpd_database_is_updated_again(mpd_server: MpdServer,
                                                         tracks: Callable[..., Track]) -> None:
    """The file is in music_dir but MPD's database lost it: addid fails once, update, retry."""
    track = tracks("lost1")

    async def body() -> None:
        zone = _zone(mpd_server)
        await zone.start(Recorder())
        await zone.wait_connected()
        await zone.play_now(track)
        await zone.control("stop")
        client = mpd_server.client()
        client.clear()
        (mpd_server.music_dir / "cassetted" / "lost1.flac").rename(mpd_server.workdir / "away.flac")
        client.update()
        client.idle("update")
        (mpd_server.workdir / "away.flac").rename(mpd_server.music_dir / "cassetted" / "lost1.flac")
        client.disconnect()
        await zone.play_now(track)
        await zone.stop()

    run(body())
    assert mpd_server.currentsong()["file"] == "cassetted/lost1.flac"


def test_errors_are_zone_errors(mpd_server: MpdServer, tmp_path: Path) -> None:
    async def body() -> None:
        zone = _zone(mpd_server)
        await zone.start(Recorder())
        await zone.wait_connected()
        with pytest.raises(ZoneError, match="song file missing"):
            await zone.play_now(Track("gone", tmp_path / "gone.flac", "Gone", 1.0))
        no_dir = MpdZone("x", MpdSettings(host=HOST, port=mpd_server.port))
        await no_dir.start(Recorder())
        await no_dir.wait_connected()
        with pytest.raises(ZoneError, match="music_dir"):
            await no_dir.play_now(Track("gone", tmp_path / "gone.flac", "Gone", 1.0))
        with pytest.raises(ZoneError, match="volume"):
            await zone.control("volume")
        await no_dir.stop()
        await zone.stop()

    run(body())


def test_stop_ends_every_task_and_a_stopped_zone_starts_again(mpd_server: MpdServer,
                                                              tracks: Callable[..., Track]) -> None:
    """The zone's connection is one owned task: stop leaves nothing running, and a room
    re-added after a reload starts the same zone object again."""
    track = tracks("d4e5f6")

    async def body() -> None:
        states = Recorder()
        zone = _zone(mpd_server)
        await zone.start(states)
        await zone.wait_connected()
        assert zone._tasks.running() == ["mpd-living_room-connection"]
        await zone.stop()
        assert zone._tasks.running() == []
        await zone.start(states)
        await zone.wait_connected()
        await zone.play_now(track)
        assert (await states.wait(lambda s: s.state == "playing")).song_id == "d4e5f6"
        await zone.stop()
        assert zone._tasks.running() == []

    run(body())
