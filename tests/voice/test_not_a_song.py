"""Not every sentence is a song (issue 19, 7).

The sentences below were written for this test, as a voice assistant's household says
them, before the rule was run on them; the song requests are the intent corpus
(tests/data/utterances.jsonl, written for the parser, not for this rule). The first run
missed 2 of its 279 ("a nursery rhyme for my toddler", "surprise me"): "rhyme" and
"surprise" were added to the song words then, so that corpus is no longer unseen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cassetted.config import RoomSettings
from cassetted.voice import intent
from tests.probe import MqttProbe

CORPUS = Path(__file__).resolve().parents[1] / "data" / "utterances.jsonl"
ROOMS = {"living_room": RoomSettings(name="Living Room"), "kitchen": RoomSettings(name="Kitchen")}

NOT_SONGS = [
    "what is the weather like",
    "what's the weather like tomorrow in the kitchen",
    "turn off the lights in the living room",
    "set a timer for ten minutes",
    "what time is it",
    "how tall is mount everest",
    "add milk to the shopping list",
    "lock the front door",
    "is the garage door open",
    "remind me to call grandma at five",
    "translate good morning to french",
    "how many days until christmas",
    "what's on my calendar today",
    "turn the heating up two degrees",
    "who won the football last night",
    "good night",
    "thank you",
    "cancel",
    "open the blinds in the bedroom",
    "hey google, what's the capital of peru",
]


def _song_requests() -> list[str]:
    return [json.loads(line)["text"] for line in CORPUS.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("text", NOT_SONGS)
def test_a_sentence_with_no_sign_of_a_song_is_not_a_song_request(text: str) -> None:
    assert not intent.is_song_request(text, intent.parse(text, ROOMS)), text


def test_every_song_request_of_the_corpus_is_one() -> None:
    requests = _song_requests()
    missed = [t for t in requests if not intent.is_song_request(t, intent.parse(t, ROOMS))]
    assert len(requests) >= 150 and not missed, missed


def test_the_daemon_answers_not_understood_and_makes_nothing(
        daemon_factory: Callable[..., Any], probe: MqttProbe) -> None:
    daemon_factory().start()
    probe.wait_online()
    weather = probe.command("voice", {"text": "What is the weather like"})
    assert weather["ok"] is False and weather["error"]["code"] == "not_understood", weather
    assert weather["error"]["field"] == "text" and "any_utterance" in weather["error"]["message"]
    grandma = probe.command("voice", {"text": "play something for grandma, 10 seconds"})
    assert grandma["ok"], grandma
    assert not [m for m in probe.messages if m.topic.startswith(f"{probe.base}/job/")
                and m.json().get("request_id") is None and "weather" in m.payload.decode()]


def test_any_utterance_keeps_anything_goes(daemon_factory: Callable[..., Any],
                                           probe: MqttProbe) -> None:
    daemon_factory("\n[voice]\nany_utterance = true\n").start()
    probe.wait_online()
    reply = probe.command("voice", {"text": "what is the weather like"})
    assert reply["ok"] and reply["job_id"], reply
