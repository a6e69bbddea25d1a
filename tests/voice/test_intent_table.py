"""The intent parser against a table of utterances: every field it must read, and no more.

Each row lists the fields the sentence says; every other field must come out None, so a
rule that starts reading too much fails here as surely as one that reads too little.
"""

from __future__ import annotations

from typing import Any

import pytest

from cassetted.voice.intent import FIELDS, parse
from tests.voice.conftest import ROOMS

# (utterance, fields said, a warning that must appear or None)
TABLE: list[tuple[str, dict[str, Any], str | None]] = [
    # the issue's sentence
    ("Hey Google, create a relaxing jazz song for the living room",
     {"genre": "jazz", "mood": "relaxing", "room": "living_room"}, None),
    # genre synonyms
    ("play some EDM", {"genre": "electronic"}, None),
    ("a techno track", {"genre": "electronic"}, None),
    ("make a trance tune", {"genre": "electronic"}, None),
    ("dubstep please", {"genre": "electronic"}, None),
    ("a deep house groove", {"genre": "electronic"}, None),
    ("a rap song", {"genre": "hip-hop"}, None),
    ("some trap beats", {"genre": "hip-hop"}, None),
    ("a hip hop beat", {"genre": "hip-hop"}, None),
    ("a hip-hop song", {"genre": "hip-hop"}, None),
    ("something orchestral", {"genre": "classical"}, None),
    ("a symphony", {"genre": "classical"}, None),
    ("a symphonic piece", {"genre": "classical"}, None),
    ("a piano sonata", {"genre": "classical"}, None),
    ("rock'n'roll!", {"genre": "rock"}, None),
    ("some rock and roll", {"genre": "rock"}, None),
    ("a metal song", {"genre": "rock"}, None),
    ("punk", {"genre": "rock"}, None),
    ("a bluegrass song", {"genre": "country"}, None),
    ("a folk song", {"genre": "country"}, None),
    ("an ambient soundscape", {"genre": "ambient"}, None),
    ("a pop song", {"genre": "pop"}, None),
    ("lo-fi beats", {"genre": "hip-hop", "mood": "relaxing"}, None),
    ("blues", {"genre": "jazz"}, None),
    # speech-to-text spellings
    ("an r and b song", {"genre": "pop"}, None),
    ("low fi beats", {"genre": "hip-hop", "mood": "relaxing"}, None),
    ("drum and base", {"genre": "electronic"}, None),
    ("some jaz", {"genre": "jazz"}, None),
    # mood synonyms
    ("something chill", {"mood": "relaxing"}, None),
    ("a calm song", {"mood": "relaxing"}, None),
    ("mellow jazz", {"genre": "jazz", "mood": "relaxing"}, None),
    ("a sleepy tune", {"mood": "relaxing"}, None),
    ("a peaceful piano sonata", {"genre": "classical", "mood": "relaxing"}, None),
    ("a happy pop song", {"genre": "pop", "mood": "uplifting"}, None),
    ("something cheerful", {"mood": "uplifting"}, None),
    ("an upbeat country song", {"genre": "country", "mood": "uplifting"}, None),
    ("euphoric trance", {"genre": "electronic", "mood": "euphoric" and "uplifting"}, None),
    ("a triumphant orchestral piece", {"genre": "classical", "mood": "uplifting"}, None),
    ("workout music", {"mood": "energetic"}, None),
    ("an angry punk song", {"genre": "rock", "mood": "energetic"}, None),
    ("heavy metal", {"genre": "rock", "mood": "energetic"}, None),
    ("a techno banger", {"genre": "electronic", "mood": "energetic"}, None),
    ("get me pumped with some rap", {"genre": "hip-hop", "mood": "energetic"}, None),
    ("a sad country song", {"genre": "country", "mood": "melancholic"}, None),
    ("gloomy ambient", {"genre": "ambient", "mood": "melancholic"}, None),
    ("a dark techno track", {"genre": "electronic", "mood": "melancholic"}, None),
    ("not sad, make it happy", {"mood": "uplifting"}, "negated mood"),
    # rooms: id, name, alias, possessives, plurals, preposition or not
    ("jazz in the lounge", {"genre": "jazz", "room": "living_room"}, None),
    ("a song for the kids' room", {"room": "kids_room"}, None),
    ("a song for the children's room", {"room": "kids_room"}, None),
    ("a song for the kid's room", {"room": "kids_room"}, None),
    ("play it in the kids room", {"room": "kids_room"}, None),
    ("something for living_room", {"room": "living_room"}, None),
    ("rock in the kitchen", {"genre": "rock", "room": "kitchen"}, None),
    ("pop on the kitchen speaker", {"genre": "pop", "room": "kitchen"}, None),
    ("ambient for the study", {"genre": "ambient", "room": "office"}, None),
    ("a lullaby in the bedroom",
     {"mood": "relaxing", "room": "master_bedroom", "child_safe": True}, None),
    ("something for Emma's room", {"room": "emma"}, None),
    ("kitchen: happy pop", {"genre": "pop", "mood": "uplifting", "room": "kitchen"}, None),
    ("jazz for the garage", {"genre": "jazz"}, "no room called 'garage'"),
    ("a song for the guest room", {}, "no room called 'guest room'"),
    ("rock in the kitchen and the lounge", {"genre": "rock", "room": "kitchen"}, "several rooms"),
    # tempo
    ("hip hop at 92 bpm", {"genre": "hip-hop", "bpm": 92}, None),
    ("100 beats per minute", {"bpm": 100}, None),
    ("ninety bpm", {"bpm": 90}, None),
    ("one twenty bpm house", {"genre": "electronic", "bpm": 120}, None),
    ("at a tempo of 140", {"bpm": 140}, None),
    ("techno at 1000 bpm", {"genre": "electronic"}, "out of range"),
    # duration
    ("two minutes of jazz", {"genre": "jazz", "duration_s": 120.0}, None),
    ("a 90 second intro", {"duration_s": 90.0}, None),
    ("a 30 second jingle", {"duration_s": 30.0}, None),
    ("1.5 minutes", {"duration_s": 90.0}, None),
    ("a 3-minute pop song", {"genre": "pop", "duration_s": 180.0}, None),
    ("a minute and a half", {"duration_s": 90.0}, None),
    ("two and a half minutes long", {"duration_s": 150.0}, None),
    ("2 minutes and 30 seconds", {"duration_s": 150.0}, None),
    ("a song for 20 minutes", {}, "out of range"),
    ("ready in five minutes", {}, None),
    ("make it 2:30 long", {"duration_s": 150.0}, None),
    ("jazz for 1:45", {"genre": "jazz", "duration_s": 105.0}, None),
    ("play jazz at 7:30", {"genre": "jazz"}, None),  # a time of day

    # key
    ("in G major", {"key": "G major"}, None),
    ("a song in D minor", {"key": "D minor"}, None),
    ("F sharp minor", {"key": "F# minor"}, None),
    ("jazz in B flat", {"genre": "jazz", "key": "Bb major"}, None),
    ("in the key of A minor", {"key": "A minor"}, None),
    ("in C# minor", {"key": "C# minor"}, None),
    ("play a minor song", {}, None),
    ("a song in a minor key", {}, None),
    # instrumental or not
    ("no vocals", {"instrumental": True}, None),
    ("jazz without lyrics", {"genre": "jazz", "instrumental": True}, None),
    ("no singing please", {"instrumental": True}, None),
    ("an instrumental", {"instrumental": True}, None),
    ("with vocals", {"instrumental": False}, None),
    ("a rock song with a female singer", {"genre": "rock", "instrumental": False}, None),
    ("not instrumental", {"instrumental": False}, None),
    # language
    ("a Spanish pop song", {"genre": "pop", "language": "es"}, None),
    ("sing it in French", {"language": "fr"}, None),
    ("with German lyrics", {"language": "de", "instrumental": False}, None),
    ("a Japanese song", {"language": "ja"}, None),
    ("in italian", {"language": "it"}, None),
    ("a love song en español", {"language": "es"}, None),
    ("latin jazz", {"genre": "jazz"}, None),
    ("a classical piece with French horn", {"genre": "classical"}, None),
    # party
    ("party mode!", {"party": True}, None),
    ("play it everywhere", {"party": True}, None),
    ("in the whole house", {"party": True}, None),
    ("in all rooms", {"party": True}, None),
    ("a party song", {"mood": "energetic"}, None),
    # child-safe
    ("a song for the kids", {"child_safe": True}, None),
    ("something kid-friendly", {"child_safe": True}, None),
    ("a lullaby", {"mood": "relaxing", "child_safe": True}, None),
    ("an upbeat lullaby", {"mood": "uplifting", "child_safe": True}, None),
    # topic
    ("a song about my cat", {"prompt": "my cat"}, None),
    ("a happy song about my sad cat", {"mood": "uplifting", "prompt": "my sad cat"}, None),
    ("a song about my cat in the kitchen at 90 bpm",
     {"room": "kitchen", "bpm": 90, "prompt": "my cat"}, None),
    ("about 90 bpm", {"bpm": 90}, None),
    ("a song about summer, jazz style", {"genre": "jazz", "prompt": "summer"}, None),
    ("a song about summer in a jazz style", {"genre": "jazz", "prompt": "summer"}, None),
    ("a song for my mom's birthday", {"prompt": "for my mom's birthday"}, None),
    ("a song for our wedding anniversary", {"prompt": "for our wedding anniversary"}, None),
    # everything at once
    (("Alexa, make an upbeat Spanish pop song about the sea for the kitchen, "
     "two minutes, 120 bpm, in E minor"),
     {"genre": "pop", "mood": "uplifting", "language": "es", "room": "kitchen",
      "duration_s": 120.0, "bpm": 120, "key": "E minor", "prompt": "the sea"}, None),
    ("", {}, None),
]


@pytest.mark.parametrize(("text", "said", "warning"), TABLE, ids=[row[0][:40] or "empty" for row in TABLE])
def test_utterance(text: str, said: dict[str, Any], warning: str | None) -> None:
    parsed = parse(text, ROOMS)
    got = parsed.as_dict()
    assert list(got) == list(FIELDS)
    expected = {name: said.get(name) for name in FIELDS}
    assert got == expected, parsed.evidence
    if warning is None:
        assert parsed.warnings == []
    else:
        assert any(warning in w for w in parsed.warnings), parsed.warnings


def test_table_is_large() -> None:
    assert len(TABLE) >= 60


def test_defaults_are_not_said() -> None:
    """SongRequest says instrumental=False by default; the parse says None (not spoken)."""
    parsed = parse("a jazz song", ROOMS)
    assert parsed.request.instrumental is False
    assert parsed.as_dict()["instrumental"] is None
    assert "instrumental" not in parsed.given
    assert parsed.given == {"genre"}


def test_default_room_only_when_none_said() -> None:
    assert parse("jazz", ROOMS, default_room="kitchen").as_dict()["room"] == "kitchen"
    assert parse("jazz in the lounge", ROOMS, default_room="kitchen").as_dict()["room"] == "living_room"
    unknown = parse("jazz", ROOMS, default_room="attic")
    assert unknown.as_dict()["room"] is None
    assert any("attic" in w for w in unknown.warnings)


def test_unknown_room_is_reported_not_guessed() -> None:
    parsed = parse("relaxing jazz for the garage", ROOMS)
    assert parsed.request.room is None
    assert parsed.unknown_room == "garage"
    assert parsed.warnings == ["no room called 'garage'"]


def test_no_rooms_configured() -> None:
    parsed = parse("jazz in the living room", {})
    assert parsed.as_dict()["room"] is None
    assert parsed.warnings == ["no room called 'living room'"]


def test_evidence_points_at_words() -> None:
    parsed = parse("Create a relaxing jazz song for the Living Room at 92 BPM", ROOMS)
    assert parsed.evidence["genre"] == "jazz"
    assert parsed.evidence["room"] == "for the Living Room"
    assert parsed.evidence["bpm"] == "at 92 BPM"


def test_request_is_a_valid_song_request() -> None:
    parsed = parse("an energetic rock song in F sharp minor at 150 bpm for the kitchen", ROOMS)
    again = type(parsed.request).model_validate(parsed.request.model_dump())
    assert again == parsed.request


def test_room_for_site() -> None:
    from cassetted.voice.intent import room_for_site

    sites = {"sat-1": "kitchen", "sat-2": "attic"}
    assert room_for_site("sat-1", ROOMS, sites) == "kitchen"
    assert room_for_site("sat-2", ROOMS, sites) is None  # mapped to a room that is not configured
    assert room_for_site("office", ROOMS, sites) == "office"  # the site id is a room id
    assert room_for_site("default", ROOMS, sites) is None
    assert room_for_site(None, ROOMS, sites) is None
