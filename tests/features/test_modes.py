"""Room modes end to end: sleep and child-safe through a real daemon, the real broker and
a real MPD, across a restart."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile

from cassetted.contract.schemas import SongInfo
from cassetted.events import EventBus, SongReady
from cassetted.voice.hermes import HermesAnnouncer
from tests.fixtures.services import MpdServer, wait_for
from tests.probe import MqttProbe, Received

SLEEP_TOML = "\n[sleep]\nsong_duration_s = 60\n"
PIN_TOML = '\n[child_safe]\npin = "2468"\nmax_pin_attempts = 3\n'
ALLOWED_GENRES = {"pop", "jazz", "classical", "country", "ambient", "electronic"}
ALLOWED_MOODS = {"uplifting", "relaxing", "energetic"}


@pytest.fixture
def mpd_server(tmp_path: Path) -> Iterator[MpdServer]:
    server = MpdServer(tmp_path / "mpd").start()
    yield server
    server.stop()


def _office(server: MpdServer) -> str:
    return (f'\n[rooms.office]\nname = "Office"\noutput = "mpd"\n'
            f'[rooms.office.mpd]\nhost = "127.0.0.1"\nport = {server.port}\n'
            f'music_dir = "{server.music_dir}"\n')


def _mark(probe: MqttProbe) -> Callable[[Received], bool]:
    """A predicate part: true for messages that arrive from now on."""
    before = {id(m) for m in probe.messages}
    return lambda m: id(m) not in before


def _state(probe: MqttProbe, room: str, predicate: Callable[[dict], bool],
           new: Callable[[Received], bool] = lambda m: True, timeout: float = 15) -> dict:
    topic = f"{probe.base}/room/{room}/state"
    return probe.wait(lambda m: m.topic == topic and new(m) and predicate(m.json()), timeout).json()


def _restart(daemon: Any, probe: MqttProbe) -> Callable[[Received], bool]:
    assert daemon.stop() == 0
    new = _mark(probe)
    daemon.start()
    probe.wait(lambda m: new(m) and m.topic == f"{probe.base}/status" and m.payload == b"online", 30)
    return new


def _latest(probe: MqttProbe, song_id: str) -> dict:
    return probe.wait(lambda m: m.topic == f"{probe.base}/song/latest"
                      and m.json()["id"] == song_id).json()


# ----------------------------------------------------------------------------- sleep


def test_sleep_takes_only_stop_makes_ambient_music_and_survives_a_restart(
        daemon_factory, probe: MqttProbe) -> None:
    """Sleep is persisted per room: song requests (typed and spoken) and room commands are
    refused with mode_refused, a 60 s ambient instrumental is made for the room, and after
    a restart the room is still asleep until mode normal wakes it."""
    daemon = daemon_factory(SLEEP_TOML).start()
    probe.wait_online()
    reply = probe.command("room/living_room/mode", {"mode": "sleep", "fade_min": 15})
    assert reply["ok"] is True and reply["mode"] == "sleep" and reply["fade_min"] == 15, reply
    assert len(reply["job_ids"]) == 1
    event = probe.wait(lambda m: m.topic == f"{probe.base}/event"
                       and m.json()["type"] == "mode_changed").json()
    assert event["room"] == "living_room" and event["mode"] == "sleep"
    _state(probe, "living_room", lambda s: s["mode"] == "sleep")

    refused = probe.command("song/create", {"prompt": "some jazz", "room": "living_room"})
    assert refused["error"]["code"] == "mode_refused", refused
    assert "sleep mode" in refused["error"]["message"]
    spoken = probe.command("voice", {"text": "play some rock", "room": "living_room"})
    assert spoken["error"]["code"] == "mode_refused"
    volume = probe.command("room/living_room/set", {"action": "volume", "volume": 10})
    assert volume["error"]["code"] == "mode_refused"

    final = probe.wait_job(reply["job_ids"][0], timeout=60)
    assert final["state"] == "done", final
    song = _latest(probe, final["song_id"])
    assert (song["genre"], song["mood"], song["room"]) == ("ambient", "relaxing", "living_room")
    assert song["duration_s"] == 60 and song["instrumental"] is True
    assert abs(soundfile.info(song["file"]).duration - 60) < 0.5

    new = _restart(daemon, probe)
    _state(probe, "living_room", lambda s: s["mode"] == "sleep", new)
    again = probe.command("song/create", {"prompt": "some jazz", "room": "living_room"})
    assert again["error"]["code"] == "mode_refused"
    woken = probe.command("room/living_room/mode", {"mode": "normal"})
    assert woken["ok"] is True and woken["mode"] == "normal"
    _state(probe, "living_room", lambda s: s["mode"] == "normal", new)
    awake = probe.command("song/create", {"prompt": "some jazz", "room": "living_room"})
    assert probe.wait_job(awake["job_id"])["state"] == "done"


def test_sleep_fades_a_real_mpd_room_to_silence_and_stop_wakes_it(
        mpd_server: MpdServer, daemon_factory, probe: MqttProbe) -> None:
    """The fade walks MPD's volume down step by step to 0 and stops the player; the room
    stays asleep (play is refused); `stop` wakes it and brings the old volume back."""
    daemon_factory(SLEEP_TOML + _office(mpd_server)).start()
    probe.wait_online()
    made = probe.command("song/create", {"prompt": "office focus", "room": "office",
                                         "duration_s": 30})
    assert probe.wait_job(made["job_id"], timeout=60)["state"] == "done"
    assert wait_for(lambda: mpd_server.status().get("state") == "play")
    assert probe.command("room/office/set", {"action": "volume", "volume": 60})["ok"] is True
    _state(probe, "office", lambda s: s["volume"] == 60)

    new = _mark(probe)
    started = time.monotonic()
    reply = probe.command("room/office/mode", {"mode": "sleep", "fade_min": 0.05})
    assert reply["ok"] is True and reply["mode"] == "sleep", reply
    assert wait_for(lambda: mpd_server.status().get("volume") == "0"
                    and mpd_server.status().get("state") == "stop", 20)
    assert time.monotonic() - started >= 2.5  # a fade over 3 s, not a jump
    state = _state(probe, "office", lambda s: s["state"] == "idle" and s["volume"] == 0, new)
    assert state["mode"] == "sleep"
    volumes = [m.json()["volume"] for m in probe.on("room/office/state") if new(m)]
    steps = [v for v in dict.fromkeys(volumes) if v is not None]
    assert steps == sorted(steps, reverse=True) and steps[-1] == 0, volumes
    assert any(0 < v < 60 for v in steps), steps  # it went through the middle
    assert probe.command("room/office/set", {"action": "play"})["error"]["code"] == "mode_refused"

    stopped = probe.command("room/office/set", {"action": "stop"})
    assert stopped["ok"] is True, stopped
    _state(probe, "office", lambda s: s["mode"] == "normal", new)
    assert wait_for(lambda: mpd_server.status().get("volume") == "60")


def test_a_fade_cut_by_a_crash_resumes_where_the_clock_says(
        mpd_server: MpdServer, daemon_factory, probe: MqttProbe) -> None:
    """Killed mid-fade, the daemon comes back still asleep and goes on from the volume the
    clock says (never louder than when it died), ending at 0 and stop on time."""
    daemon = daemon_factory(SLEEP_TOML + _office(mpd_server)).start()
    probe.wait_online()
    assert probe.command("room/office/set", {"action": "volume", "volume": 80})["ok"] is True
    _state(probe, "office", lambda s: s["volume"] == 80)
    started = time.monotonic()
    assert probe.command("room/office/mode", {"mode": "sleep", "fade_min": 0.15})["ok"] is True
    assert wait_for(lambda: 0 < int(mpd_server.status()["volume"]) < 75, 10)
    at_kill = int(mpd_server.status()["volume"])
    daemon.kill()
    new = _mark(probe)
    daemon.start()
    assert wait_for(lambda: mpd_server.status().get("volume") == "0"
                    and mpd_server.status().get("state") == "stop", 20)
    assert time.monotonic() - started >= 8.5  # the 9 s fade ran on the clock
    state = _state(probe, "office", lambda s: s["volume"] == 0, new)
    assert state["mode"] == "sleep"
    volumes = [m.json()["volume"] for m in probe.on("room/office/state") if new(m)]
    steps = [v for v in dict.fromkeys(volumes) if v is not None]
    assert steps == sorted(steps, reverse=True) and max(steps) <= at_kill, (at_kill, volumes)


# ----------------------------------------------------------------------------- child-safe


def test_child_safe_limits_songs_caps_volume_needs_the_pin_and_keeps_a_log(
        mpd_server: MpdServer, daemon_factory, probe: MqttProbe) -> None:
    """A configured child-safe room refuses a rock song; a room made child-safe at runtime
    caps MPD's volume at 70, forces child_safe and an allowed genre and mood on its songs;
    the PIN (never echoed or logged) turns it off, wrong PINs lock it; the parents' log
    holds every request; all of it survives a restart."""
    daemon = daemon_factory(PIN_TOML + _office(mpd_server)).start()
    probe.wait_online()
    _state(probe, "kids_room", lambda s: s["child_safe"] is True and s["volume_cap"] == 70)
    rock = probe.command("song/create", {"prompt": "loud", "genre": "rock", "room": "kids_room",
                                         "token": "secret-token-1"})
    assert rock["error"]["code"] == "mode_refused" and rock["error"]["field"] == "genre", rock
    assert set(rock["allowed"]) == ALLOWED_GENRES and "pop" in rock["error"]["message"]
    asked = probe.command("song/create", {"genre": "rock", "child_safe": True,
                                          "room": "living_room"})
    assert asked["error"]["code"] == "mode_refused"  # child_safe asked for: the same limits

    assert probe.command("room/office/set", {"action": "volume", "volume": 90})["ok"] is True
    assert wait_for(lambda: mpd_server.status().get("volume") == "90")

    on = probe.command("room/office/mode", {"child_safe": True})
    assert on["ok"] is True and on["child_safe"] is True and on["volume_cap"] == 70, on
    assert wait_for(lambda: mpd_server.status().get("volume") == "70")
    assert probe.command("room/office/set", {"action": "volume", "volume": 95})["ok"] is True
    _state(probe, "office", lambda s: s["volume"] == 70 and s["volume_cap"] == 70)
    assert mpd_server.status().get("volume") == "70"

    hiphop = probe.command("song/create", {"prompt": "dinosaurs", "genre": "hip-hop",
                                           "room": "office"})
    assert hiphop["error"]["code"] == "mode_refused"
    kind = probe.command("song/create", {"prompt": "a song about dinosaurs", "room": "office",
                                         "token": "secret-token-2"})
    assert kind["ok"] is True, kind
    final = probe.wait_job(kind["job_id"], timeout=60)
    song = _latest(probe, final["song_id"])
    assert song["genre"] in ALLOWED_GENRES and song["mood"] in ALLOWED_MOODS
    with sqlite3.connect(daemon.state_dir / "cassetted.db") as db:
        (child_safe,) = db.execute("SELECT child_safe FROM song WHERE id = ?",
                                   (song["id"],)).fetchone()
    assert child_safe == 1  # the office is not child-safe by config: the mode forced it
    # Only songs made child-safe play there; a grown-up song from the library is refused.
    grown_up = probe.command("song/create", {"prompt": "late night", "genre": "rock",
                                             "room": "living_room"})
    grown_up_id = probe.wait_job(grown_up["job_id"], timeout=60)["song_id"]
    refused = probe.command("room/office/set", {"action": "play_song", "song_id": grown_up_id})
    assert refused["error"]["code"] == "mode_refused" and refused["error"]["field"] == "song_id"
    assert probe.command("room/office/set", {"action": "add", "song_id": grown_up_id}) \
        ["error"]["code"] == "mode_refused"
    assert probe.command("room/office/set", {"action": "play_song", "song_id": song["id"]})["ok"]

    assert probe.command("room/office/mode", {"child_safe": False})["error"]["code"] == "wrong_pin"
    wrong = probe.command("room/office/mode", {"child_safe": False, "pin": "1111"})
    assert wrong["error"]["code"] == "wrong_pin" and "1111" not in str(wrong)
    off = probe.command("room/office/mode", {"child_safe": False, "pin": "2468"})
    assert off["ok"] is True and off["child_safe"] is False and "2468" not in str(off), off
    _state(probe, "office", lambda s: s["child_safe"] is False and s["volume_cap"] is None)

    assert probe.command("room/office/mode", {"child_safe": True})["ok"] is True
    for _ in range(3):  # max_pin_attempts = 3: the last wrong one locks the room
        wrong = probe.command("room/office/mode", {"child_safe": False, "pin": "0000"})
        assert wrong["error"]["code"] == "wrong_pin"
    assert "locked" in wrong["error"]["message"]
    locked = probe.command("room/office/mode", {"child_safe": False, "pin": "2468"})
    assert locked["error"]["code"] == "mode_refused", locked

    entries = probe.command("child_safe/log", {})["entries"]
    ts = [e["ts"] for e in entries]
    assert ts == sorted(ts, reverse=True)
    outcomes = [(e["room"], e["outcome"], e["request"].get("genre")) for e in entries]
    assert ("kids_room", "refused", "rock") in outcomes
    assert ("living_room", "refused", "rock") in outcomes
    assert ("office", "refused", "hip-hop") in outcomes
    accepted = next(e for e in entries if e["outcome"] == "accepted")
    assert accepted["room"] == "office" and accepted["request"]["child_safe"] is True
    assert accepted["request"]["genre"] == song["genre"] and accepted["reason"].startswith("chose")
    assert all("token" not in e["request"] and "reply_to" not in e["request"] for e in entries)
    refused = next(e for e in entries if e["room"] == "kids_room")
    assert "not allowed" in refused["reason"]
    kids = probe.command("child_safe/log", {"room": "kids_room"})["entries"]
    assert [e["room"] for e in kids] == ["kids_room"]

    new = _restart(daemon, probe)
    _state(probe, "office", lambda s: s["child_safe"] is True and s["volume_cap"] == 70, new)
    still = probe.command("room/office/mode", {"child_safe": False, "pin": "2468"})
    assert still["error"]["code"] == "mode_refused"  # the lock-out outlives the restart
    log = daemon.log()
    assert "2468" not in log and "1111" not in log and "0000" not in log
    assert "secret-token" not in log


def test_child_safe_without_a_pin_and_the_log_by_role(daemon_factory, probe: MqttProbe) -> None:
    """With [household] on and no PIN: anyone may turn child-safe on, only an owner off;
    guests may not read the parents' log, family may."""
    daemon_factory('\n[household]\nenabled = true\nidentify_by = ["user_field"]\ntrusted_user_field = true\n'
                   '[users.mum]\nrole = "owner"\n[users.tim]\nrole = "family"\n').start()
    probe.wait_online()
    assert probe.command("child_safe/log", {})["error"]["code"] == "forbidden"
    assert probe.command("child_safe/log", {"user": "tim"})["ok"] is True
    by_tim = probe.command("room/kids_room/mode", {"child_safe": False, "user": "tim"})
    assert by_tim["error"]["code"] == "forbidden", by_tim
    by_mum = probe.command("room/kids_room/mode", {"child_safe": False, "user": "mum"})
    assert by_mum["ok"] is True and by_mum["child_safe"] is False, by_mum
    by_guest = probe.command("room/kids_room/mode", {"child_safe": True})
    assert by_guest["ok"] is True and by_guest["child_safe"] is True
    bad = probe.command("room/kids_room/mode", {"fade_min": 5})
    assert bad["error"]["code"] == "invalid_payload"
    assert probe.command("room/garage/mode", {"mode": "sleep"})["error"]["code"] == "unknown_room"


# ----------------------------------------------------------------------------- quiet


class _Adapter:
    def __init__(self) -> None:
        self.announced: list[str] = []

    async def on_song_ready(self, job_id: str, title: str) -> bool:
        self.announced.append(job_id)
        return True


def _song(room: str) -> SongInfo:
    return SongInfo(id=f"song-{room}", title="t", prompt="", lyrics="", genre="ambient",
                    mood="relaxing", bpm=70, key="C major", time_signature="4/4", duration_s=60,
                    language="en", instrumental=True, seed=1, room=room, engine="builtin",
                    lyrics_provider="builtin", file="x.flac", format="flac", created_at=0)


def test_no_song_ready_announcement_in_a_sleeping_room() -> None:
    """A song that was asked for before the room fell asleep is not announced there."""
    adapter = _Adapter()
    bus = EventBus()
    HermesAnnouncer(adapter, bus, quiet=lambda room: room == "bedroom")  # type: ignore[arg-type]

    async def main() -> None:
        bus.emit(SongReady(_song("bedroom"), "job-asleep"))
        bus.emit(SongReady(_song("kitchen"), "job-awake"))
        await asyncio.sleep(0.01)

    asyncio.run(main())
    assert adapter.announced == ["job-awake"]


def test_the_home_assistant_sleep_switch(daemon_factory, probe: MqttProbe) -> None:
    """The room device's Sleep switch puts the room to sleep and wakes it."""
    daemon_factory("\n[sleep]\nsong_duration_s = 60\nfade_min = 0.05\n").start()
    probe.wait_online()
    config = probe.wait(lambda m: m.topic.endswith("/room_living_room_sleep/config")).json()
    probe.publish(config["command_topic"].removeprefix(probe.base + "/"), "ON", raw=True)
    _state(probe, "living_room", lambda s: s["mode"] == "sleep")
    refused = probe.command("song/create", {"room": "living_room"})
    assert refused["error"]["code"] == "mode_refused"
    seen = {id(m) for m in probe.messages}
    probe.publish(config["command_topic"].removeprefix(probe.base + "/"), "OFF", raw=True)
    _state(probe, "living_room", lambda s: s["mode"] == "normal", new=lambda m: id(m) not in seen)
    assert probe.command("song/create", {"room": "living_room"})["ok"]
