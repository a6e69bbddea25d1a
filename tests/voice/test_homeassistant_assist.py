"""The Home Assistant Assist example: well-formed YAML, and what it sends parses right."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml  # a test dependency: a missing or broken YAML must fail here, never skip

from cassetted.voice.intent import parse
from tests.voice.conftest import ROOMS

ASSIST = Path(__file__).resolve().parents[2] / "examples" / "homeassistant" / "assist"


def test_files_exist() -> None:
    for name in ("custom_sentences/en/cassetted.yaml", "intent_script.yaml",
                 "automation_sentence_trigger.yaml", "README.md"):
        assert (ASSIST / name).is_file(), name


def test_yaml_shapes() -> None:
    sentences = yaml.safe_load((ASSIST / "custom_sentences/en/cassetted.yaml").read_text())
    assert sentences["language"] == "en"
    data = sentences["intents"]["CassettedCreateSong"]["data"]
    assert all(isinstance(s, str) for block in data for s in block["sentences"])
    assert sentences["lists"]["style"] == {"wildcard": True}
    script = yaml.safe_load((ASSIST / "intent_script.yaml").read_text())
    action = script["intent_script"]["CassettedCreateSong"]["action"][0]
    assert action["action"] == "mqtt.publish" and action["data"]["topic"] == "cassetted/voice"
    automation = yaml.safe_load((ASSIST / "automation_sentence_trigger.yaml").read_text())
    assert automation[0]["triggers"][0]["trigger"] == "conversation"


@pytest.mark.parametrize(("style", "noun", "details", "expected"), [
    ("relaxing jazz", "song", "for the living room",
     {"genre": "jazz", "mood": "relaxing", "room": "living_room"}),
    ("upbeat EDM", "track", "at 128 bpm", {"genre": "electronic", "mood": "uplifting", "bpm": 128}),
    ("", "lullaby", "for the kids room", {"mood": "relaxing", "child_safe": True, "room": "kids_room"}),
    ("sad Spanish pop", "song", "", {"genre": "pop", "mood": "melancholic", "language": "es"}),
])
def test_intent_script_text_parses(style: str, noun: str, details: str, expected: dict) -> None:
    # what intent_script.yaml's template builds: "make a <style> <noun> <details>"
    text = " ".join(f"make a {style} {noun} {details}".split())
    got = parse(text, ROOMS).as_dict()
    assert {k: got[k] for k in expected} == expected
