"""Voice commands and Hermes intents through the running daemon."""

from __future__ import annotations

import json

from tests.e2e.hostile import assert_clean_log
from tests.probe import MqttProbe


def test_voice_command_becomes_the_song_asked_for(daemon_factory, probe: MqttProbe) -> None:
    daemon_factory().start()
    probe.wait_online()
    reply = probe.command("voice", {
        "text": "Hey Google, create a relaxing jazz song for the living room, 10 seconds long"})
    assert reply["ok"] is True, reply
    assert reply["request"]["genre"] == "jazz" and reply["request"]["mood"] == "relaxing"
    assert reply["request"]["room"] == "living_room" and reply["request"]["duration_s"] == 10
    final = probe.wait_job(reply["job_id"])
    latest = probe.wait(lambda m: m.topic == f"{probe.base}/song/latest"
                        and m.json()["id"] == final["song_id"]).json()
    assert (latest["genre"], latest["mood"], latest["room"]) == ("jazz", "relaxing", "living_room")


def test_voice_room_from_the_satellite_and_unknown_rooms(daemon_factory, probe: MqttProbe) -> None:
    daemon_factory('\n[voice]\nsite_rooms = { "satellite-7" = "kids_room" }\n').start()
    probe.wait_online()
    reply = probe.command("voice", {"text": "an upbeat pop song, 10 seconds", "site_id": "satellite-7"})
    assert reply["request"]["room"] == "kids_room"
    said_garage = probe.command("voice", {"text": "rock music in the garage, 10 seconds"})
    assert said_garage["ok"] is True and "room" not in said_garage["request"]
    assert any("garage" in w for w in said_garage["warnings"])
    bad = probe.command("voice", {"text": "some rock", "room": "garage"})
    assert bad["error"]["code"] == "unknown_room"
    empty = probe.command("voice", {"text": ""})
    assert empty["error"]["field"] == "text"
    assert probe.wait_job(reply["job_id"])["state"] == "done"


def test_prompt_names_genre_and_mood(daemon_factory, probe: MqttProbe) -> None:
    daemon_factory().start()
    probe.wait_online()
    reply = probe.command("song/create", {"prompt": "a melancholic country song about rain",
                                          "duration_s": 10})
    final = probe.wait_job(reply["job_id"])
    latest = probe.wait(lambda m: m.topic == f"{probe.base}/song/latest"
                        and m.json()["id"] == final["song_id"]).json()
    assert (latest["genre"], latest["mood"]) == ("country", "melancholic")


def test_hermes_intent_round_trip(daemon_factory, probe: MqttProbe) -> None:
    prefix = f"{probe.base}/hermes"
    daemon = daemon_factory(f'\n[hermes]\nenabled = true\ntopic_prefix = "{prefix}"\n'
                            '[voice]\nsite_rooms = { "lounge-sat" = "living_room" }\n').start()
    probe.wait_online()
    intent = {
        "sessionId": "s-42", "siteId": "lounge-sat", "input": "make an energetic rock song",
        "intent": {"intentName": "CreateSong", "confidenceScore": 0.9},
        "slots": [{"slotName": "genre", "rawValue": "rock",
                   "value": {"kind": "Unknown", "value": "rock"}},
                  {"slotName": "duration", "rawValue": "ten seconds",
                   "value": {"kind": "Number", "value": 10}}],
    }
    probe.client.publish(f"{prefix}/intent/CreateSong", json.dumps(intent), qos=1).wait_for_publish(5)
    end = probe.wait(lambda m: m.topic == f"{prefix}/dialogueManager/endSession").json()
    assert end["sessionId"] == "s-42" and "rock" in end["text"].lower()
    say = probe.wait(lambda m: m.topic == f"{prefix}/tts/say", timeout=60).json()
    assert say["siteId"] == "lounge-sat" and "ready" in say["text"].lower()
    latest = probe.wait(lambda m: m.topic == f"{probe.base}/song/latest").json()
    assert latest["genre"] == "rock" and latest["room"] == "living_room"
    # Every answer went out cleanly: a reply that failed to publish logs an ERROR traceback
    # (issue 15 reported one per Hermes reply).
    assert_clean_log(daemon.log())
    # Garbage on the intent topic is survived (and answered when a session id can be found).
    probe.client.publish(f"{prefix}/intent/CreateSong", b"{nope", qos=1).wait_for_publish(5)
    assert probe.command("song/create", {"duration_s": 10})["ok"] is True
