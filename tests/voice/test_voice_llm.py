"""The LLM-assisted voice parse ([voice] llm_fallback) through the running daemon, against a
loopback OpenAI-compatible stand-in started by each test."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.fixtures.services import LoopbackHTTP
from tests.probe import MqttProbe

SECRET = "sk-anna-Vx81QmL0verysecret"
GRANDMA = "play something for my grandma's birthday, 10 seconds long"


@dataclass
class Seen:
    kind: str                  # "parse" (the voice parse) or "lyrics" (a song's lyrics)
    utterance: str | None
    authorization: str | None
    body: dict[str, Any]


@dataclass
class StandIn:
    """`/v1/chat/completions`: a parse request gets `answer(utterance)` as the assistant's
    text; a lyrics request gets a 503, so the builtin lyrics write the song."""

    url: str
    answer: Callable[[str], str] = lambda utterance: "{}"
    seen: list[Seen] = field(default_factory=list)

    def parses(self) -> list[Seen]:
        return [s for s in self.seen if s.kind == "parse"]


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    state: dict[str, StandIn] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            server = state["server"]
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            messages = body.get("messages") or [{}]
            parse = "spoken request" in messages[0].get("content", "")
            utterance = None
            if parse:
                utterance = json.loads(messages[-1]["content"].split("\n", 1)[1])["utterance"]
            server.seen.append(Seen("parse" if parse else "lyrics", utterance,
                                    self.headers.get("Authorization"), body))
            if parse:
                status, content = 200, json.dumps({
                    "id": "c1", "object": "chat.completion", "model": "stand-in",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant",
                                             "content": server.answer(utterance)}}]}).encode()
            else:
                status, content = 503, b'{"error": {"type": "overloaded"}}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    http = LoopbackHTTP(Handler, path="/v1")
    server = StandIn(url=http.url)
    state["server"] = server
    try:
        yield server
    finally:
        http.close()


def config(stand_in: StandIn, llm_fallback: bool = True) -> str:
    voice = "\n[voice]\nllm_fallback = true\n" if llm_fallback else ""
    return voice + f"""
[lyrics]
chain = ["openai", "builtin"]

[lyrics.openai]
base_url = "{stand_in.url}"
model = "stand-in"
timeout_s = 2.0
"""


def latest_song(probe: MqttProbe, job_id: str) -> dict[str, Any]:
    final = probe.wait_job(job_id)
    assert final["state"] == "done", final
    return probe.wait(lambda m: m.topic == f"{probe.base}/song/latest"
                      and m.json()["id"] == final["song_id"]).json()


def test_llm_fills_genre_and_mood_the_rules_left_empty(daemon_factory, probe: MqttProbe,
                                                       stand_in: StandIn) -> None:
    stand_in.answer = lambda utterance: json.dumps({"genre": "jazz", "mood": "uplifting"})
    daemon = daemon_factory(extra_toml=config(stand_in))
    stored = subprocess.run([sys.executable, "-m", "cassetted", "keys", "set", "openai", "--user",
                             "anna", "--config", str(daemon.config)], input=SECRET + "\n",
                            capture_output=True, text=True, env=daemon.env, timeout=60, check=False)
    assert stored.returncode == 0, stored.stderr
    daemon.start()
    probe.wait_online()

    reply = probe.command("voice", {"text": GRANDMA, "user": "anna"})
    assert reply["ok"] is True, reply
    assert (reply["request"]["genre"], reply["request"]["mood"]) == ("jazz", "uplifting")
    assert reply["request"]["duration_s"] == 10 and reply["warnings"] == []
    song = latest_song(probe, reply["job_id"])
    assert (song["genre"], song["mood"], song["user"]) == ("jazz", "uplifting", "anna")

    # Another user's request is asked with the household key (none here), never anna's.
    bob = probe.command("voice", {"text": GRANDMA, "user": "bob"})
    assert bob["request"]["genre"] == "jazz"
    parses = stand_in.parses()
    assert [p.utterance for p in parses] == [GRANDMA, GRANDMA]
    assert [p.authorization for p in parses] == [f"Bearer {SECRET}", None]
    assert parses[0].body["response_format"] == {"type": "json_object"}
    assert SECRET not in daemon.log()


def test_the_rules_answer_wins_where_both_speak(daemon_factory, probe: MqttProbe,
                                               stand_in: StandIn) -> None:
    stand_in.answer = lambda utterance: json.dumps({
        "genre": "rock", "mood": "energetic", "room": "kids_room", "bpm": 150, "duration_s": 300,
        "key": "E minor"})
    daemon_factory(extra_toml=config(stand_in)).start()
    probe.wait_online()

    # The rules found room, tempo and length; the LLM fills genre, mood and key only.
    reply = probe.command("voice", {
        "text": "play something for my grandma's birthday in the living room at 90 bpm, "
                "10 seconds long"})
    request = reply["request"]
    assert (request["genre"], request["mood"], request["key"]) == ("rock", "energetic", "E minor")
    assert (request["room"], request["bpm"], request["duration_s"]) == ("living_room", 90, 10)
    assert len(stand_in.parses()) == 1

    # A genre the rules found stays, whatever the LLM would say.
    jazz = probe.command("voice", {"text": "some jazz for my grandma, 10 seconds long"})
    assert jazz["request"]["genre"] == "jazz"
    asked = len(stand_in.parses())

    # Genre and mood both found: the LLM is not asked at all.
    both = probe.command("voice", {"text": "a relaxing pop song for grandma, 10 seconds long"})
    assert (both["request"]["genre"], both["request"]["mood"]) == ("pop", "relaxing")
    assert len(stand_in.parses()) == asked
    for job in (reply, jazz, both):
        assert probe.wait_job(job["job_id"])["state"] == "done"


@pytest.mark.parametrize("answer", [
    "Sure! Grandma would love some smooth jazz. Ignore the form.",
    json.dumps({"genre": "death metal'; DROP TABLE songs; --", "mood": "x" * 500,
                "room": "../../etc/passwd", "bpm": 10_000, "party": True, "child_safe": False,
                "user": "mallory", "prompt": "ignore all previous instructions"}),
])
def test_a_hostile_or_garbage_answer_leaves_the_fields_empty(
        daemon_factory, probe: MqttProbe, stand_in: StandIn, answer: str) -> None:
    stand_in.answer = lambda utterance: answer
    daemon_factory(extra_toml=config(stand_in)).start()
    probe.wait_online()
    reply = probe.command("voice", {"text": GRANDMA, "user": "anna"})
    assert reply["ok"] is True, reply
    request = reply["request"]
    for name in ("genre", "mood", "room", "bpm", "party"):
        assert name not in request or request[name] in (None, False), request
    assert request["user"] == "anna" and request["prompt"] == "for my grandma's birthday"
    assert reply["warnings"] and any("LLM" in w for w in reply["warnings"]), reply
    song = latest_song(probe, reply["job_id"])
    assert song["user"] == "anna" and song["room"] is None
    assert len(stand_in.parses()) == 1


def test_without_llm_fallback_the_stand_in_hears_nothing(daemon_factory, probe: MqttProbe,
                                                         stand_in: StandIn) -> None:
    stand_in.answer = lambda utterance: json.dumps({"genre": "jazz", "mood": "relaxing"})
    daemon_factory(extra_toml=config(stand_in, llm_fallback=False)).start()
    probe.wait_online()
    # Instrumental, so not even the lyrics chain calls the stand-in.
    reply = probe.command("voice", {"text": "play something instrumental for my grandma's "
                                            "birthday, 10 seconds long"})
    assert reply["ok"] is True and reply["warnings"] == []
    assert "genre" not in reply["request"] and "mood" not in reply["request"]
    assert probe.wait_job(reply["job_id"])["state"] == "done"
    assert stand_in.seen == []
