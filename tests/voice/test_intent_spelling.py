"""The spelling pass: typos of genre, mood and room words are read, real words are not."""

from __future__ import annotations

from typing import Any

import pytest

from cassetted.voice import lexicon as lex
from cassetted.voice.intent import _LEXICON_SPELLER, _one_edit, parse
from tests.voice.conftest import ROOMS


@pytest.mark.parametrize(("text", "said", "corrections"), [
    ("play electonic music", {"genre": "electronic"}, {"electonic": "electronic"}),
    ("some relaxin jaz", {"genre": "jazz", "mood": "relaxing"}, {"relaxin": "relaxing"}),
    ("a melancolic tune", {"mood": "melancholic"}, {"melancolic": "melancholic"}),
    ("a jzaz song", {"genre": "jazz"}, {"jzaz": "jazz"}),  # two letters swapped
    ("a cheerfull song", {"mood": "uplifting"}, {"cheerfull": "cheerful"}),
    ("rock in the kichen", {"genre": "rock", "room": "kitchen"}, {"kichen": "kitchen"}),
    ("pop for the ofice", {"genre": "pop", "room": "office"}, {"ofice": "office"}),
    ("ambient in the bed room", {"genre": "ambient", "room": "master_bedroom"}, {}),
    ("jazz in the guest bed room", {"genre": "jazz", "room": "guest_bedroom"}, {}),
    ("classical for the bath room", {"genre": "classical", "room": "bathroom"}, {}),
    ("a sadd song", {"mood": "melancholic"}, {"sadd": "sad"}),  # a short word, a letter twice
    ("popp music for the loung", {"genre": "pop", "room": "living_room"}, {"popp": "pop", "loung": "lounge"}),
    ("MAKE AN ENERGETC ROCK SONG", {"genre": "rock", "mood": "energetic"}, {"ENERGETC": "energetic"}),
])
def test_typos_are_read(text: str, said: dict[str, Any], corrections: dict[str, str]) -> None:
    parsed = parse(text, ROOMS)
    got = {k: v for k, v in parsed.as_dict().items() if v is not None}
    assert got == said, parsed.evidence
    assert parsed.corrections == corrections
    assert parsed.warnings == []


@pytest.mark.parametrize(("text", "said"), [
    ("sing it in French", {"language": "fr"}),  # not "swing"
    ("a song for my child", {"child_safe": True}),  # not "chill"
    ("a song about a mouse", {"prompt": "a mouse"}),  # not "house"
    ("somthing energetic", {"mood": "energetic"}),  # something misspelt, not "soothing"
    ("quite happy", {"mood": "uplifting"}),  # not "quiet"
    ("a song about my dog Rokc", {"prompt": "my dog Rokc"}),  # a name, not "rock"
    ("a song about Jazzi", {"prompt": "Jazzi"}),
    ("two hours of calm", {"mood": "relaxing"}),  # "hours" is not "house"
    ("a kichen disco song", {"genre": "pop"}),  # a room word only after in/for/the...
])
def test_real_words_and_names_are_left_alone(text: str, said: dict[str, Any]) -> None:
    parsed = parse(text, ROOMS)
    got = {k: v for k, v in parsed.as_dict().items() if v is not None}
    assert got == said, (parsed.evidence, parsed.corrections)
    assert parsed.corrections == {}


def test_protected_words_are_no_targets() -> None:
    assert not lex.TYPO_PROTECTED & set(_LEXICON_SPELLER.targets)
    assert {"sing", "child", "mouse", "quite", "rooms"} <= lex.TYPO_PROTECTED


def test_one_edit() -> None:
    assert _one_edit("jaz", "jazz") and _one_edit("jazzz", "jazz") and _one_edit("jzaz", "jazz")
    assert _one_edit("kichen", "kitchen") and _one_edit("techo", "techno")
    assert not _one_edit("jazz", "jazz") and not _one_edit("rap", "pop") and not _one_edit("ab", "abcd")
