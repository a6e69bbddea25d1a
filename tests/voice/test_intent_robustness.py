"""The parser never crashes, never hangs, and an LLM can only fill gaps, never break things."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from cassetted.contract.schemas import SongRequest
from cassetted.voice.intent import (
    FIELDS,
    MAX_INPUT_CHARS,
    parse,
    parse_duration,
    parse_key,
    parse_number,
    resolve_room,
)
from tests.voice.conftest import ROOMS

WORDS = ("jazz", "in", "the", "for", "about", "bpm", "minutes", "a", "minor", "sharp", "kids'",
         "room", "no", "vocals", "party", "mode", "one", "hundred", "and", "half", "key", "of",
         "lounge", "French", "lullaby", "'s", "-", ",", "92", "1.5", "♯", "♭", "İ", "ß")


def _random_unicode(rng: random.Random, length: int) -> str:
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
              (0x900, 0x97F), (0x3040, 0x30FF), (0x4E00, 0x4FFF), (0x1F300, 0x1F64F),
              (0x0, 0x1F), (0x200B, 0x202E), (0xFB00, 0xFB06), (0xFE00, 0xFE0F)]
    out = []
    for _ in range(length):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def _check(text: str) -> None:
    start = time.perf_counter()
    parsed = parse(text, ROOMS)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.05, f"{elapsed * 1000:.1f} ms for {text[:60]!r}"
    assert isinstance(parsed.request, SongRequest)
    assert list(parsed.as_dict()) == list(FIELDS)
    assert all(isinstance(w, str) for w in parsed.warnings)


def test_random_unicode_never_crashes() -> None:
    rng = random.Random(5)
    for _ in range(300):
        _check(_random_unicode(rng, rng.randint(0, 300)))


def test_word_salad_never_crashes() -> None:
    rng = random.Random(7)
    for _ in range(500):
        _check(" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 200))))


@pytest.mark.parametrize("text", [
    "x" * 10_000,
    "jazz " * 2000,
    "one " * 2500 + "bpm",
    "one and " * 1500,
    "a " * 5000,
    "in the key of " * 700,
    "about " * 2000,
    "for the kids' " * 700,
    "9" * 10_000,
    "\x00" * 10_000,
    "🎷" * 10_000,
    "ﷺ" * 10_000,  # NFKC expands this one character into many
    "İ" * 10_000,  # lowercases to two characters
    "no " * 3000 + "jazz",
    "rock'n'" * 1500,
])
def test_long_hostile_input_is_cut_and_fast(text: str) -> None:
    _check(text)
    parsed = parse(text, ROOMS)
    assert any(str(MAX_INPUT_CHARS) in w for w in parsed.warnings)


def test_text_past_the_cap_is_not_read() -> None:
    parsed = parse("x" * MAX_INPUT_CHARS + " jazz", ROOMS)
    assert parsed.request.genre is None


def test_non_string_input_is_read_as_text() -> None:
    assert parse(12345, ROOMS).as_dict()["genre"] is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "value"), [
    ("92", 92), ("1.5", 1.5), ("1,5", 1.5), ("1,000", 1000), ("ninety two", 92),
    ("one twenty", 120), ("a hundred and ten", 110), ("twenty-five", 25), ("banana", None),
    ("", None),
])
def test_parse_number(text: str, value: float | None) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize(("text", "key"), [
    ("F sharp minor", "F# minor"), ("Bb", "Bb major"), ("b flat minor", "Bb minor"),
    ("A minor", "A minor"), ("C#", "C# major"), ("e", "E major"), ("H major", None),
    ("banana", None),
])
def test_parse_key_for_slots(text: str, key: str | None) -> None:
    assert parse_key(text) == key


@pytest.mark.parametrize(("text", "seconds"), [
    ("two minutes", 120.0), ("90", 90.0), ("90 s", 90.0), ("1.5 min", 90.0),
    ("a minute and a half", 90.0), ("2:30", 150.0), ("1:05 min", 65.0), ("soon", None),
])
def test_parse_duration_for_slots(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "room"), [
    ("Living Room", "living_room"), ("lounge", "living_room"), ("the kids' room", "kids_room"),
    ("kitchen", "kitchen"), ("garage", None), ("", None),
])
def test_resolve_room(text: str, room: str | None) -> None:
    assert resolve_room(text, ROOMS) == room


# --------------------------------------------------------------------------- LLM fallback


def test_llm_not_asked_when_rules_found_genre_or_mood() -> None:
    def llm(text: str) -> dict[str, Any]:
        raise AssertionError("should not be called")

    assert parse("a jazz song", ROOMS, llm=llm).request.genre == "jazz"
    assert parse("a sad song", ROOMS, llm=llm).request.mood == "melancholic"


def test_llm_fills_only_empty_fields_and_is_validated() -> None:
    seen: list[str] = []

    def llm(text: str) -> dict[str, Any]:
        seen.append(text)
        return {"genre": "EDM", "mood": "chill", "room": "Kitchen", "bpm": 90,
                "duration_s": 45, "key": "d minor", "language": "Spanish", "prompt": "x"}

    parsed = parse("something nice for the lounge at 120 bpm about the sea", ROOMS, llm=llm)
    assert seen == ["something nice for the lounge at 120 bpm about the sea"]
    got = parsed.as_dict()
    assert got["genre"] == "electronic" and got["mood"] == "relaxing"
    assert got["room"] == "living_room"  # the rules' room wins
    assert got["bpm"] == 120  # the rules' tempo wins
    assert got["prompt"] == "the sea"
    assert got["duration_s"] == 45.0 and got["key"] == "D minor" and got["language"] == "es"
    assert parsed.evidence["genre"] == "(llm)"


@pytest.mark.parametrize("answer", [
    None, "jazz", 42, ["genre", "jazz"], {"genre": {"$gt": ""}}, {"bpm": 10_000},
    {"bpm": float("nan")}, {"bpm": True}, {"duration_s": "forever"}, {"room": "garage"},
    {"key": "Z major"}, {"language": "Klingon"}, {"prompt": "x" * 5000}, {"genre": "polka"},
    {"instrumental": "perhaps"}, {"request_id": "evil", "reply_to": "#"},
])
def test_hostile_llm_answers_are_ignored(answer: Any) -> None:
    parsed = parse("something nice", ROOMS, llm=lambda text: answer)
    assert all(value is None for value in parsed.as_dict().values())
    assert parsed.request.request_id is None and parsed.request.reply_to is None
    if answer not in ({"request_id": "evil", "reply_to": "#"},):
        assert parsed.warnings, answer


def test_failing_llm_is_a_warning() -> None:
    def llm(text: str) -> dict[str, Any]:
        raise TimeoutError("model too slow")

    parsed = parse("something nice", ROOMS, llm=llm)
    assert parsed.as_dict()["genre"] is None
    assert parsed.warnings == ["LLM parse failed (TimeoutError); ignored"]
