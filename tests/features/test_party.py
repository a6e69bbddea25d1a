"""Party mode end to end: the real daemon and broker, a real snapserver with two snapclients,
and the real party MPD feeding the party stream (issue #9, point 4)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from tests.playback.conftest import party_mpd, snapserver  # noqa: F401 - fixtures
from tests.playback.helpers import require_servers
from tests.probe import MqttProbe

require_servers()
from mpd import CommandError  # noqa: E402

from tests.fixtures.services import MpdServer, SnapServer, wait_for  # noqa: E402

OWNER = "as/dad-phone"  # the owner's broker login ([users.dad] mqtt_usernames)

HOUSEHOLD = """
[household]
enabled = true
identify_by = ["token", "mqtt_username", "user_field"]
trusted_user_field = true   # these tests speak for members by name

[users.dad]
role = "owner"
mqtt_usernames = ["dad-phone"]

[party]
guest_song_limit = 2
song_duration_s = 10
low_water = 2
fillers = 2
"""


def _config(snap: SnapServer, mpd: MpdServer) -> str:
    return HOUSEHOLD + f"""
[snapcast]
host = "127.0.0.1"
port = {snap.control_port}
reconnect_max_s = 0.5

[snapcast.mpd]
host = "127.0.0.1"
port = {mpd.port}
music_dir = "{mpd.music_dir}"

[rooms.kitchen]
name = "Kitchen"
snapcast_group = "kitchen"

[rooms.bedroom]
name = "Bedroom"
snapcast_group = "bedroom"
"""


def _mark(probe: MqttProbe) -> set[int]:
    """What the probe has seen so far, to wait for what comes after."""
    return {id(m) for m in probe.messages}


def _state(probe: MqttProbe, predicate: Callable[[dict], bool], seen: set[int] | None = None,
           timeout: float = 30) -> dict:
    """The first party/state (after `seen`) that satisfies `predicate`."""
    topic = f"{probe.base}/party/state"
    return probe.wait(lambda m: m.topic == topic and (seen is None or id(m) not in seen)
                      and predicate(m.json()), timeout).json()


def _states(probe: MqttProbe) -> list[dict]:
    return [m.json() for m in probe.on("party/state")]


def _songs(probe: MqttProbe) -> dict[str, dict]:
    page = probe.command("library/query", {"as_user": "dad", "page_size": 100})
    return {song["id"]: song for song in page["songs"]}


def _made(probe: MqttProbe, job_id: str, timeout: float = 60) -> str:
    done = probe.wait_job(job_id, timeout=timeout)
    assert done["state"] == "done", done
    return done["song_id"]


def _queued_at(probe: MqttProbe, job_id: str) -> float:
    return next(e["ts"] for e in probe.job_events(job_id) if e["state"] == "queued")


def _upcoming(mpd: MpdServer, with_current: bool = False) -> list[str]:
    """Files the party MPD will play after the current one (or from it)."""
    client = mpd.client()
    try:
        current = int(client.status().get("song", -1))
        return [item["file"] for item in client.playlistinfo()[current + (0 if with_current else 1):]]
    finally:
        client.disconnect()


def _skip(mpd: MpdServer) -> None:
    """The song on air ends now (as if it had played out)."""
    client = mpd.client()
    try:
        client.next()
    except CommandError:  # "Not playing": the queue ran out already
        pass
    finally:
        client.disconnect()


def _event(probe: MqttProbe, kind: str, seen: set[int] | None = None) -> dict:
    return probe.wait(lambda m: m.topic == f"{probe.base}/event" and m.json()["type"] == kind
                      and (seen is None or id(m) not in seen)).json()


def test_themed_party_with_guests_votes_fillers_restart_and_saved_playlist(
        snapserver: SnapServer, party_mpd: MpdServer,  # noqa: F811 - the daemon stops first
        daemon_factory: Any, probe: MqttProbe) -> None:
    config = _config(snapserver, party_mpd)
    daemon = daemon_factory(config).start()
    probe.wait_online()

    # Start: owner only; the edm theme's starters are electronic, energetic, 128-140 bpm.
    assert probe.command("party/set", {"action": "start"})["error"]["code"] == "forbidden"
    assert probe.command(f"{OWNER}/party/set", {"action": "start", "theme": "disco"}
                         )["error"]["field"] == "theme"
    started = probe.command(f"{OWNER}/party/set",
                            {"action": "start", "theme": "edm", "starters": 2})
    assert started["ok"] is True, started
    assert started["theme"] == "edm" and started["rooms"] == ["bedroom", "kitchen"]
    assert len(started["starters"]) == 2
    for client in ("kitchen", "bedroom"):
        assert snapserver.group_of(client)["stream_id"] == "party"
    assert _event(probe, "party_started")["party_id"] == started["party_id"]
    starter_songs = [_made(probe, job_id) for job_id in started["starters"]]
    songs = _songs(probe)
    for song_id in starter_songs:
        song = songs[song_id]
        assert 128 <= song["bpm"] <= 140 and song["genre"] == "electronic", song
        assert song["mood"] == "energetic", song
    # The starters play through the party MPD, in the party's order.
    _state(probe, lambda s: s["now_playing"] == starter_songs[0])

    # A party guest, made by the owner, adds songs and learns their place in the queue.
    guest = probe.command("guest/create", {"name": "Sarah", "party": True, "user": "dad"})
    assert guest["ok"] is True and guest["party_id"] == started["party_id"], guest
    token = guest["token"]
    wishes = [probe.command("song/create", {"prompt": f"sarah's wish {n}", "party": True,
                                            "genre": "pop", "mood": "uplifting", "bpm": 100,
                                            "token": token}) for n in (1, 2)]
    for wish in wishes:
        assert wish["ok"] is True and wish["party_position"] >= 1, wish
    assert wishes[1]["party_position"] > wishes[0]["party_position"]
    assert wishes[1]["quota"]["used"] == 2 and wishes[1]["quota"]["limit"] == 2
    # ... up to [party] guest_song_limit.
    third = probe.command("song/create", {"prompt": "one more", "party": True, "token": token})
    assert third["error"]["code"] == "quota_exceeded", third
    assert third["quota"]["limit"] == 2 and third["quota"]["remaining"] == 0

    # Votes reorder the queue: in the reply, in party/state and in the party MPD.
    first, second = (_made(probe, wish["job_id"]) for wish in wishes)
    queued = _state(probe, lambda s: any(i["song_id"] == second for i in s["queue"]))
    before = next(i["position"] for i in queued["queue"] if i["song_id"] == second)
    assert before > 1, queued
    up = probe.command(f"song/{second}/vote", {"vote": 1, "user": "dad"})
    assert up["ok"] is True and up["party_position"] == 1 and up["score"] == 1, up
    top = _state(probe, lambda s: s["queue"] and s["queue"][0]["song_id"] == second)
    assert top["queue"][0]["score"] == 1 and top["queue"][0]["user"] == "sarah"
    assert top["guest_songs"] == 2
    wait_for(lambda: f"cassetted/{second}.flac" in _upcoming(party_mpd, with_current=True)[:2], 30)
    down = probe.command(f"song/{first}/vote", {"vote": -1, "user": "dad"})
    last = _state(probe, lambda s: s["queue"] and s["queue"][-1]["song_id"] == first)
    assert down["party_position"] == len(last["queue"]) > 1, (down, last)

    # Fillers come when fewer than low_water songs wait: the first round (the queue ran low
    # as starter 1 began) at the starters' tempo; songs ending fast (MPD `next`) bring a
    # second round at the mean tempo of all the party's songs so far, Sarah's 100 bpm ones
    # too, and in their commonest mood and genre.
    for _ in range(12):
        if _states(probe)[-1]["fillers"] >= 4:
            break
        _skip(party_mpd)
        time.sleep(0.5)
    fillers = sorted({i["job_id"] for s in _states(probe) for i in s["queue"] if i["filler"]},
                     key=lambda job_id: _queued_at(probe, job_id))
    assert len(fillers) >= 4, fillers
    filler_songs = {job_id: _made(probe, job_id) for job_id in fillers[:4]}
    songs = _songs(probe)
    party_songs = [songs[s] for s in [*starter_songs, first, second, *list(filler_songs.values())]]
    means = []
    for job_id, song_id in filler_songs.items():
        so_far = [s["bpm"] for s in party_songs if s["created_at"] < _queued_at(probe, job_id)]
        means.append(sum(so_far) / len(so_far))
        filler = songs[song_id]
        assert abs(filler["bpm"] - means[-1]) <= 3, (filler["bpm"], so_far)
        assert filler["mood"] == "energetic" and filler["genre"] == "electronic", filler
    assert means[-1] < 128 <= means[0], means  # Sarah's songs pulled the tempo down

    # A restarted daemon carries on with the same party: no new starters.
    daemon.stop()
    seen = _mark(probe)
    daemon = daemon_factory(config).start()
    started_at = _state(probe, lambda s: s["active"])["started_at"]
    resumed = _state(probe, lambda s: s["active"], seen)
    assert resumed["started_at"] == started_at and resumed["theme"] == "edm", resumed
    assert not [m for m in probe.on("event") if id(m) not in seen
                and m.json()["type"] == "party_started"]

    # Stop: the playlist is saved (and playable), the guest's pass ends, the rooms come back.
    seen = _mark(probe)
    stopped = probe.command(f"{OWNER}/party/set", {"action": "stop"})
    assert stopped["ok"] is True, stopped
    name = stopped["playlist"]
    assert re.fullmatch(r"party_\d{8}_\d{4}", name), name
    assert set(starter_songs) | {first, second} <= set(stopped["songs"])
    assert stopped["guests_expired"] == ["sarah"]
    assert _event(probe, "party_stopped", seen)["playlist"] == name
    assert _state(probe, lambda s: not s["active"], seen)["queue"] == []
    for client in ("kitchen", "bedroom"):
        assert snapserver.group_of(client)["stream_id"] == "radio"
    assert len(party_mpd.stored_playlist(f"cassetted-{name}")) == len(stopped["songs"])
    listed = probe.command("party/playlists", {})["playlists"]
    assert [(p["name"], p["theme"], p["songs"]) for p in listed] == [
        (name, "edm", len(stopped["songs"]))]
    gone = probe.command("user/quota", {"token": token})
    assert gone["error"]["code"] == "unauthorized", gone

    again = probe.command(f"{OWNER}/party/set", {"action": "start", "playlist": name})
    assert again["ok"] is True and again["starters"] == [], again
    wait_for(lambda: party_mpd.currentsong().get("file") == f"cassetted/{stopped['songs'][0]}.flac", 30)
    assert probe.command(f"{OWNER}/party/set", {"action": "stop"})["ok"] is True


def test_a_party_closed_to_guests_refuses_their_songs(
        snapserver: SnapServer, party_mpd: MpdServer,  # noqa: F811 - the daemon stops first
        daemon_factory: Any, probe: MqttProbe) -> None:
    daemon_factory(_config(snapserver, party_mpd)).start()
    probe.wait_online()
    none_yet = probe.command("guest/create", {"name": "Tom", "party": True, "user": "dad"})
    assert none_yet["error"]["code"] == "invalid_state", none_yet

    started = probe.command(f"{OWNER}/party/set", {"action": "start", "theme": "lounge",
                                                   "starters": 2, "guest_access": False})
    assert started["ok"] is True, started
    tom = probe.command("guest/create", {"name": "Tom", "party": True, "user": "dad"})
    assert tom["ok"] is True, tom
    refused = probe.command("song/create", {"prompt": "my song", "party": True,
                                            "token": tom["token"]})
    assert refused["error"]["code"] == "forbidden", refused
    # Members still add songs to it.
    dads = probe.command("song/create", {"prompt": "dad's pick", "party": True, "user": "dad"})
    assert dads["ok"] is True and dads["party_position"] >= 1, dads
    shown = _state(probe, lambda s: any(i["job_id"] == dads["job_id"] for i in s["queue"]))
    assert {"position": dads["party_position"], "user": "dad", "state": "generating"}.items() <= \
        next(i for i in shown["queue"] if i["job_id"] == dads["job_id"]).items()
    assert shown["guest_songs"] == 0  # members' songs are no guests' songs
    assert probe.command(f"{OWNER}/party/set", {"action": "stop"})["ok"] is True
    # Stopped: starters still being made are not worth finishing; what a person asked for is.
    ends = {job: probe.wait_job(job)["state"] for job in started["starters"]}
    assert set(ends.values()) <= {"done", "cancelled"}, ends
    assert probe.wait_job(dads["job_id"])["state"] == "done"


def test_stopping_a_party_cancels_the_starters_still_being_made(
        snapserver: SnapServer, party_mpd: MpdServer,  # noqa: F811 - the daemon stops first
        daemon_factory: Any, probe: MqttProbe) -> None:
    # Long starters (600 s songs take seconds each), so most still wait when the party ends.
    daemon_factory(_config(snapserver, party_mpd).replace(
        "song_duration_s = 10", "song_duration_s = 600", 1)).start()
    probe.wait_online()
    started = probe.command(f"{OWNER}/party/set", {"action": "start", "theme": "edm",
                                                   "starters": 4})
    assert started["ok"] is True and len(started["starters"]) == 4, started
    assert probe.command(f"{OWNER}/party/set", {"action": "stop"})["ok"] is True
    ends = [probe.wait_job(job, timeout=120)["state"] for job in started["starters"]]
    assert ends[-1] == "cancelled" and set(ends) <= {"done", "cancelled"}, ends


def test_party_without_snapcast_is_unsupported(daemon_factory: Any, probe: MqttProbe) -> None:
    daemon_factory(HOUSEHOLD).start()
    probe.wait_online()
    reply = probe.command(f"{OWNER}/party/set", {"action": "start", "theme": "edm"})
    assert reply["error"]["code"] == "unsupported", reply
    # A song asked for "everywhere" with no party running is still made.
    song = probe.command("song/create", {"prompt": "everywhere", "party": True, "user": "dad"})
    assert song["ok"] is True and "party_position" not in song, song
