"""SnapcastClient, SnapcastZone and PartyMode against a real snapserver with two snapclients."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from cassetted.playback.base import Track
from cassetted.playback.errors import PlaybackFailed
from cassetted.playback.party import PartyMode
from cassetted.playback.settings import MpdEndpoint
from cassetted.playback.zones.snapcast import SnapcastClient, SnapcastError, SnapcastZone
from tests.playback.helpers import Recorder, require_servers, run

require_servers()
from cassetted.playback.zones.mpd import MpdZone  # noqa: E402
from tests.fixtures.services import HOST, MpdServer, SnapServer  # noqa: E402


def _client(server: SnapServer) -> SnapcastClient:
    return SnapcastClient(HOST, server.control_port, reconnect_max_s=0.2)


async def _until(predicate: Callable[[], object], timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a test's wait states its own limit
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - the predicate reads state with no event to await
            await asyncio.sleep(0.01)


def test_status_and_group_lookup(snapserver: SnapServer) -> None:
    async def body() -> None:
        client = _client(snapserver)
        await client.start()
        await client.wait_connected()
        kitchen = client.find_group("kitchen")
        assert kitchen is not None and kitchen["clients"][0]["id"] == "kitchen"
        assert client.find_group(kitchen["id"]) is kitchen
        await client.request("Group.SetName", {"id": kitchen["id"], "name": "Kitchen"})
        # Raw calls are not folded into the copy (snapserver does not echo our own changes).
        client.server = (await client.request("Server.GetStatus"))["server"]
        assert client.find_group("Kitchen")["id"] == kitchen["id"]  # type: ignore[index]
        assert client.find_group("nobody") is None
        with pytest.raises(SnapcastError, match="Group not found"):
            await client.set_group_stream("no-such-group", "party")
        await client.stop()

    run(body())


def test_notifications_from_others_update_the_model(snapserver: SnapServer) -> None:
    async def body() -> None:
        client = _client(snapserver)
        heard: list[str] = []
        client.add_listener(heard.append)
        await client.start()
        await client.wait_connected()
        group_id = client.find_group("bedroom")["id"]  # type: ignore[index]
        await asyncio.to_thread(snapserver.rpc, "Group.SetStream",
                                {"id": group_id, "stream_id": "party"})
        await _until(lambda: client.group(group_id)["stream_id"] == "party")  # type: ignore[index]
        await asyncio.to_thread(snapserver.rpc, "Client.SetVolume",
                                {"id": "bedroom", "volume": {"muted": False, "percent": 23}})
        await _until(lambda: client.client("bedroom")["config"]["volume"]["percent"] == 23)  # type: ignore[index]
        assert "Group.OnStreamChanged" in heard and "Client.OnVolumeChanged" in heard

        snapserver.clients[0].stop()  # type: ignore[attr-defined]
        await _until(lambda: not client.client("kitchen")["connected"])  # type: ignore[index]
        await client.stop()

    run(body())


def test_snapserver_restart_reconnects(snapserver: SnapServer) -> None:
    async def body() -> None:
        client = _client(snapserver)
        heard: list[str] = []
        client.add_listener(heard.append)
        await client.start()
        await client.wait_connected()
        await asyncio.to_thread(snapserver.stop)
        await _until(lambda: not client.connected)
        assert heard[-1] == "disconnected"
        with pytest.raises(SnapcastError, match="unreachable"):
            await client.set_group_stream("x", "party")
        await asyncio.to_thread(snapserver.start)
        await client.wait_connected(10)
        assert heard[-1] == "connected"
        group = client.find_group("kitchen")  # groups survive: snapserver keeps server.json
        assert group is not None
        await client.set_group_stream(group["id"], "party")
        await client.stop()

    run(body())
    assert snapserver.group_of("kitchen")["stream_id"] == "party"


def test_party_moves_groups_and_restores_streams_and_volumes(snapserver: SnapServer,
                                                             tmp_path: Path) -> None:
    state_file = tmp_path / "party.json"
    snapserver.rpc("Client.SetVolume", {"id": "kitchen", "volume": {"muted": False, "percent": 40}})

    async def body() -> None:
        client = _client(snapserver)
        await client.start()
        await client.wait_connected()
        party = PartyMode(client, "party", state_file)
        result = await party.start({"kitchen_room": "kitchen", "bedroom": "bedroom"})
        assert result["rooms"] == ["bedroom", "kitchen_room"]
        assert party.active and state_file.exists()
        for name in ("kitchen", "bedroom"):
            assert snapserver.group_of(name)["stream_id"] == "party"

        # During the party someone turns the kitchen up; stop puts it back.
        await asyncio.to_thread(snapserver.rpc, "Client.SetVolume",
                                {"id": "kitchen", "volume": {"muted": False, "percent": 90}})
        # A daemon restarted mid-party still knows what to restore.
        again = PartyMode(client, "party", state_file)
        assert again.rooms == {"kitchen_room", "bedroom"}
        result = await again.stop()
        assert result["restored"] == ["bedroom", "kitchen_room"] and result["not_found"] == []
        assert not again.active and not state_file.exists()
        await client.stop()

    run(body())
    for name in ("kitchen", "bedroom"):
        assert snapserver.group_of(name)["stream_id"] == "radio"
    assert snapserver.volume_of("kitchen") == 40


def test_party_errors_are_clear(snapserver: SnapServer) -> None:
    async def body() -> None:
        client = _client(snapserver)
        await client.start()
        await client.wait_connected()
        with pytest.raises(PlaybackFailed, match="no stream 'disco'"):
            await PartyMode(client, "disco").start({"kitchen_room": "kitchen"})
        party = PartyMode(client, "party")
        with pytest.raises(PlaybackFailed, match="'ghost'"):
            await party.start({"kitchen_room": "kitchen", "attic": "ghost"})
        assert not party.active  # nothing moved when one room was unknown
        result = await party.start({"kitchen_room": "kitchen", "attic": "ghost"}, strict=False)
        assert result["skipped"][0]["room"] == "attic"
        assert snapserver.group_of("kitchen")["stream_id"] == "party"
        await asyncio.to_thread(snapserver.stop)
        await _until(lambda: not client.connected)
        with pytest.raises(PlaybackFailed, match="unreachable"):
            await party.stop()
        assert party.active  # kept, to be restored once snapserver is back
        await asyncio.to_thread(snapserver.start)
        await client.wait_connected(10)
        result = await party.stop()
        assert result["restored"] == ["kitchen_room"]
        await client.stop()

    run(body())
    assert snapserver.group_of("kitchen")["stream_id"] == "radio"


def test_snapcast_zone_plays_through_the_feeding_mpd(snapserver: SnapServer, party_mpd: MpdServer,
                                                     tracks: Callable[..., Track]) -> None:
    track = tracks("snap1", seconds=5)

    async def body() -> None:
        client = _client(snapserver)
        await client.start()
        feeder = MpdZone("kitchen_room", MpdEndpoint(host=HOST, port=party_mpd.port,
                                                     music_dir=party_mpd.music_dir))
        zone = SnapcastZone("kitchen_room", "kitchen", client, feeder, "party")
        states = Recorder()
        await zone.start(states)
        idle = await states.wait(lambda s: s.state == "idle")
        assert idle.extra["stream"] == "radio" and idle.volume == 100
        await zone.play_now(track)
        playing = await states.wait(lambda s: s.state == "playing" and s.song_id == "snap1")
        assert playing.extra["stream"] == "party"
        mark = states.mark()
        await zone.control("volume", volume=30)
        await states.wait_after(mark, lambda s: s.volume == 30)
        assert snapserver.volume_of("kitchen") == 30
        # Someone moves the group away: the room shows that stream, not the MPD.
        mark = states.mark()
        group_id = zone.group()["id"]  # type: ignore[index]
        await asyncio.to_thread(snapserver.rpc, "Group.SetStream",
                                {"id": group_id, "stream_id": "radio"})
        moved = await states.wait_after(mark, lambda s: s.extra.get("stream") == "radio")
        assert moved.song_id is None
        await zone.stop()
        await client.stop()

    run(body())
    assert party_mpd.status()["state"] == "play"


def test_snapcast_zone_unknown_group_is_unavailable(snapserver: SnapServer) -> None:
    async def body() -> None:
        client = _client(snapserver)
        await client.start()
        zone = SnapcastZone("attic", "ghost", client, None, None)
        states = Recorder()
        await zone.start(states)
        await client.wait_connected()
        status = await states.wait(lambda s: "ghost" in str(s.extra.get("reason")))
        assert status.state == "unavailable"
        with pytest.raises(Exception, match=r"ghost|no MPD"):
            await zone.control("volume", volume=10)
        await zone.stop()
        await client.stop()

    run(body())


def test_snapcast_zone_follows_a_snapserver_restart(snapserver: SnapServer) -> None:
    async def body() -> None:
        client = _client(snapserver)
        await client.start()
        zone = SnapcastZone("kitchen_room", "kitchen", client, None, None)
        states = Recorder()
        await zone.start(states)
        await states.wait(lambda s: s.state == "idle")
        mark = states.mark()
        await asyncio.to_thread(snapserver.stop)
        down = await states.wait_after(mark, lambda s: s.state == "unavailable")
        assert "unreachable" in str(down.extra["reason"])
        mark = states.mark()
        await asyncio.to_thread(snapserver.start)
        back = await states.wait_after(mark, lambda s: s.state != "unavailable", timeout=10)
        assert back.extra["clients"] == ["kitchen"]
        await zone.stop()
        await client.stop()

    run(body())


def test_stop_ends_the_reader_too_and_the_client_starts_again(snapserver: SnapServer) -> None:
    """The connection, its reader and any status refresh are one owner's tasks: stop ends
    all of them (a reader left behind would keep the socket), and start reconnects."""
    async def body() -> None:
        client = _client(snapserver)
        await client.start()
        await client.wait_connected()
        assert {"snapcast-connection", "snapcast-reader"} <= set(client._tasks.running())
        await client.stop()
        assert client._tasks.running() == []
        await client.start()
        await client.wait_connected()
        assert client.find_group("kitchen") is not None
        await client.stop()
        assert client._tasks.running() == []

    run(body())
