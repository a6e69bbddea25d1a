"""Rooms learn their default genre and mood from requests and votes (the rule in
household/learning.py), end to end over the real broker."""

from __future__ import annotations

import pytest

from tests.probe import MqttProbe

DECAY = 0.85


def _state(probe: MqttProbe, room: str, predicate) -> dict:  # type: ignore[no-untyped-def]
    return probe.wait(lambda m: m.topic == f"{probe.base}/room/{room}/state"
                      and predicate(m.json().get("learned") or {})).json()


def test_requests_and_votes_teach_a_room(daemon_factory, probe: MqttProbe) -> None:
    daemon = daemon_factory().start()
    probe.wait_online()
    room = "living_room"

    # Nothing learned yet: a bare request is left to the usual defaults.
    first = probe.command("song/create", {"room": room, "genre": "jazz", "mood": "relaxing"})
    assert first["ok"] and "learned" not in first
    state = _state(probe, room, lambda learned: learned.get("genres", {}).get("jazz") == 1.0)
    assert state["learned"]["genre"] is None  # 1.0 < min_evidence 1.5

    # The prompt counts as what the person chose, like the fields.
    second = probe.command("song/create", {"room": room, "prompt": "a relaxing jazz tune"})
    assert "learned" not in second
    jazz = DECAY * 1 + 1
    _state(probe, room, lambda learned: learned.get("genre") == "jazz" and learned.get("mood") == "relaxing")

    # A request that leaves genre and mood open gets the room's preference ...
    bare = probe.command("song/create", {"room": room, "duration_s": 10})
    assert bare["learned"] == {"genre": "jazz", "mood": "relaxing"}
    done = probe.wait_job(bare["job_id"])
    latest = probe.wait(lambda m: m.topic == f"{probe.base}/song/latest"
                        and m.json()["id"] == done["song_id"]).json()
    assert (latest["genre"], latest["mood"]) == ("jazz", "relaxing")
    # ... and what the room filled in teaches it nothing (no self-reinforcement).
    state = _state(probe, room, lambda learned: learned.get("genre") == "jazz")
    assert state["learned"]["genres"]["jazz"] == pytest.approx(jazz, abs=1e-3)

    # What someone asks for still wins over what the room learned.
    rock = probe.command("song/create", {"room": room, "prompt": "an energetic rock anthem",
                                         "duration_s": 10})
    assert "learned" not in rock
    rock_song = probe.wait_job(rock["job_id"])["song_id"]
    jazz *= DECAY
    _state(probe, room, lambda learned: learned.get("genres", {}).get("rock") == 1.0)

    # Votes on a song made for the room move its preference: two likes for the rock song.
    for user in ("anna", "ben"):
        assert probe.command(f"song/{rock_song}/vote", {"vote": 1, "user": user})["ok"]
    jazz *= DECAY * DECAY
    rock_weight = (1.0 * DECAY + 1) * DECAY + 1
    state = _state(probe, room, lambda learned: abs(learned["genres"].get("rock", 0) - rock_weight) < 1e-3)
    assert state["learned"]["genre"] == "rock"
    assert state["learned"]["genres"]["jazz"] == pytest.approx(jazz, abs=1e-3)
    # Taking a vote back is a negative observation of the same size.
    probe.command(f"song/{rock_song}/vote", {"vote": 0, "user": "ben"})
    taken_back = rock_weight * DECAY - 1
    state = _state(probe, room, lambda learned: abs(learned["genres"].get("rock", 0) - taken_back) < 1e-3)
    assert state["learned"]["genres"]["jazz"] == pytest.approx(jazz * DECAY, abs=1e-3)

    # Another room learned nothing; the learning survives a restart.
    kids = probe.wait(lambda m: m.topic == f"{probe.base}/room/kids_room/state").json()
    assert kids["learned"]["genres"] == {}
    daemon.stop()
    probe.messages.clear()
    daemon_factory().start()
    probe.wait_online()
    restored = _state(probe, room, bool)["learned"]
    assert restored["genres"] == state["learned"]["genres"] and restored["genre"] is None  # < 1.5
    probe.command(f"song/{rock_song}/vote", {"vote": 1, "user": "ben"})
    _state(probe, room, lambda learned: learned.get("genre") == "rock")
    again = probe.command("song/create", {"room": room, "duration_s": 10})
    assert again["learned"] == {"genre": "rock", "mood": "energetic"}


QUOTA = """
[household]
enabled = true
trusted_user_field = true
unknown_user_role = "family"

[household.quotas.family]
songs = 1
per_hours = 24
"""


def test_refused_requests_teach_a_room_nothing(daemon_factory, probe: MqttProbe) -> None:
    """The kids' room is child-safe: a rock request there is refused, and must not teach the
    room rock. A request refused for its quota, or a repeated request_id, teaches nothing
    either; an admitted one does, once."""
    daemon_factory(QUOTA).start()
    probe.wait_online()
    rock = probe.command("song/create", {"prompt": "loud", "genre": "rock", "room": "kids_room",
                                         "user": "tom", "duration_s": 10})
    assert rock["error"]["code"] == "mode_refused", rock
    pop = {"genre": "pop", "mood": "uplifting", "room": "kids_room", "user": "tom",
           "duration_s": 10, "request_id": "tom-pop"}
    first = probe.command("song/create", pop)
    assert first["ok"] and first["quota"]["used"] == 1, first
    again = probe.command("song/create", pop)  # the same request_id: a repeat
    assert again["ok"] and again["duplicate"] and again["job_id"] == first["job_id"]
    over = probe.command("song/create", {"genre": "ambient", "room": "kids_room",
                                         "user": "tom", "duration_s": 10})
    assert over["error"]["code"] == "quota_exceeded", over
    learned = _state(probe, "kids_room", lambda learned: learned.get("genres", {}).get("pop"))
    assert learned["learned"]["genres"] == {"pop": 1.0}, learned  # once, and only pop
    # After the refusals too, nothing else was learned: the retained state says the same.
    states = [m.json().get("learned") or {} for m in probe.on("room/kids_room/state")]
    assert all(set(s.get("genres", {})) <= {"pop"} for s in states), states
    assert all(s.get("genres", {}).get("pop", 0) <= 1.0 for s in states), states
