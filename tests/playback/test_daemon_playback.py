"""A song made for a room plays there: the real daemon, the real broker, a real MPD."""

from __future__ import annotations

from tests.fixtures.services import MpdServer, wait_for
from tests.probe import MqttProbe


def _mpd_room(server: MpdServer) -> str:
    return (f'\n[rooms.office]\nname = "Office"\noutput = "mpd"\n'
            f'[rooms.office.mpd]\nhost = "127.0.0.1"\nport = {server.port}\n'
            f'music_dir = "{server.music_dir}"\n')


def test_song_for_a_room_plays_and_room_commands_drive_mpd(daemon_factory, probe: MqttProbe,
                                                            mpd_server: MpdServer) -> None:
    daemon_factory(_mpd_room(mpd_server)).start()
    probe.wait_online()
    reply = probe.command("song/create", {"prompt": "office focus", "room": "office",
                                          "duration_s": 30})
    final = probe.wait_job(reply["job_id"], timeout=90)
    states = [e["state"] for e in probe.job_events(reply["job_id"])]
    assert final["state"] == "done" and "playing" in states, states
    song_id = final["song_id"]
    assert wait_for(lambda: mpd_server.status().get("state") == "play")
    assert song_id in mpd_server.currentsong()["file"]
    state = probe.wait(lambda m: m.topic == f"{probe.base}/room/office/state"
                       and m.json()["state"] == "playing").json()
    assert state["song"]["id"] == song_id and state["output"] == "mpd"
    assert probe.wait(lambda m: m.topic == f"{probe.base}/event"
                      and m.json()["type"] == "song_started").json()["song_id"] == song_id

    paused = probe.command("room/office/set", {"action": "pause"})
    assert paused["ok"] is True, paused
    assert wait_for(lambda: mpd_server.status().get("state") == "pause")
    probe.wait(lambda m: m.topic == f"{probe.base}/room/office/state"
               and m.json()["state"] == "paused")
    assert probe.command("room/office/set", {"action": "play"})["ok"] is True
    assert wait_for(lambda: mpd_server.status().get("state") == "play")

    assert probe.command("room/office/set", {"action": "volume", "volume": 40})["ok"] is True
    assert wait_for(lambda: mpd_server.status().get("volume") == "40")
    probe.wait(lambda m: m.topic == f"{probe.base}/room/office/state" and m.json()["volume"] == 40)

    playlist = probe.command("room/office/set", {"action": "add", "song_id": song_id})
    assert playlist["ok"] is True
    probe.wait(lambda m: m.topic == f"{probe.base}/room/office/state"
               and m.json()["playlist_length"] == 2)
    assert probe.command("room/office/set", {"action": "play_song", "song_id": "nope"}
                         )["error"]["code"] == "unknown_song"
    assert probe.command("room/office/set", {"action": "volume"})["error"]["code"] == "invalid_payload"
    assert probe.command("room/living_room/set", {"action": "play"})["error"]["code"] == "unsupported"
    assert probe.command("party/set", {"action": "start", "rooms": ["garage"]}
                         )["error"]["code"] == "unknown_room"
    assert probe.command("room/office/set", {"action": "stop"})["ok"] is True
    assert wait_for(lambda: mpd_server.status().get("state") == "stop")
