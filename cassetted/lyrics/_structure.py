"""What every provider agrees on: the section plan for a duration, the style caption, the
structure tags and syllable counting (CMUdict via `pronouncing`, loaded on first use)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

from cassetted.contract.schemas import MAX_LYRICS_CHARS, SongSpec

TAGS: tuple[str, ...] = ("Intro", "Verse", "Pre-Chorus", "Chorus", "Bridge", "Outro")
INSTRUMENTAL = "[Instrumental]"

# Sung syllables per second a listener still follows; above it the lyrics do not fit.
MAX_SYLLABLES_PER_SECOND = 3.0
# Characters per second of song an LLM reply may use (before the 4,096 hard cap).
MAX_CHARS_PER_SECOND = 25.0


@dataclass(frozen=True)
class Section:
    tag: str
    lines: int


def plan_sections(duration_s: float) -> tuple[Section, ...]:
    """The song form for a length: a jingle gets a verse and a chorus, a 4-minute song
    verse/chorus/verse/chorus/bridge/chorus/outro."""
    verse, chorus, bridge = Section("Verse", 4), Section("Chorus", 4), Section("Bridge", 4)
    outro, intro = Section("Outro", 2), Section("Intro", 2)
    if duration_s < 15:
        return (Section("Chorus", 2),)  # a sting: one hook, nothing else fits
    if duration_s < 25:
        return (Section("Verse", 2), Section("Chorus", 2))
    if duration_s < 45:
        return (verse, chorus)
    if duration_s < 100:
        return (verse, chorus, verse, chorus)
    if duration_s < 150:
        return (verse, chorus, verse, chorus, outro)
    if duration_s < 200:
        return (verse, chorus, verse, chorus, Section("Bridge", 2), chorus)
    if duration_s < 330:
        return (verse, chorus, verse, chorus, bridge, chorus, outro)
    return (intro, verse, chorus, verse, chorus, bridge, verse, chorus, outro)


def max_chars(duration_s: float) -> int:
    """Longest lyrics (characters) that fit a song of this length."""
    return min(MAX_LYRICS_CHARS, max(300, int(duration_s * MAX_CHARS_PER_SECOND)))


def max_syllables(duration_s: float) -> int:
    return int(duration_s * MAX_SYLLABLES_PER_SECOND)


_INSTRUMENTS: dict[str, str] = {
    "rock": "electric guitars, bass guitar, live drums",
    "pop": "synth pads, bright piano, punchy drums",
    "jazz": "upright bass, piano trio, brushed drums, saxophone",
    "electronic": "analog synths, four-on-the-floor kick, deep bassline",
    "classical": "string ensemble, piano, woodwinds",
    "hip-hop": "boom-bap drums, sampled keys, sub bass",
    "country": "acoustic guitar, fiddle, pedal steel, brushed snare",
    "ambient": "evolving pads, soft piano, field textures",
}
_FEEL: dict[str, str] = {
    "uplifting": "uplifting, bright", "relaxing": "relaxed, warm",
    "energetic": "energetic, driving", "melancholic": "melancholic, bittersweet",
}


def tempo_word(bpm: int) -> str:
    if bpm < 80:
        return "slow"
    if bpm < 110:
        return "mid-tempo"
    if bpm < 140:
        return "upbeat"
    return "fast"


def style_caption(spec: SongSpec) -> str:
    """Short caption for the music engine: genre, instruments, tempo and feel, bpm, key."""
    vocals = "instrumental" if spec.instrumental else "vocals"
    return (f"{spec.genre}, {_INSTRUMENTS[spec.genre]}, {_FEEL[spec.mood]}, "
            f"{tempo_word(spec.bpm)}, {spec.bpm} bpm, {spec.key}, {spec.time_signature}, {vocals}")


# --------------------------------------------------------------------------- syllables

_TAG_LINE = re.compile(r"^\[([A-Za-z][A-Za-z -]*?)(?:\s*\d+)?\]$")


@lru_cache(maxsize=1)
def _cmu() -> dict[str, list[str]]:
    """CMUdict word -> pronunciations, as `pronouncing` ships it (about 0.3 s on first use)."""
    import pronouncing

    pronouncing.init_cmu()
    return cast("dict[str, list[str]]", pronouncing.lookup)


def phones(word: str) -> list[str]:
    return _cmu().get(word.lower().strip("'’"), [])


def _guess_syllables(word: str) -> int:
    groups = re.findall(r"[aeiouy]+", word.lower())
    count = len(groups)
    if word.lower().endswith("e") and count > 1 and not word.lower().endswith(("le", "ee")):
        count -= 1
    return max(1, count)


def word_syllables(word: str) -> int:
    """Syllables of one word: CMUdict when it knows the word, a vowel-group guess otherwise."""
    found = phones(word)
    if found:
        return sum(ch.isdigit() for ch in found[0])
    return _guess_syllables(word)


def words(line: str) -> list[str]:
    return re.findall(r"[A-Za-z]+(?:['’][A-Za-z]+)?", line)


def line_syllables(line: str) -> int:
    return sum(word_syllables(word) for word in words(line))


def rhyming_parts(word: str) -> set[str]:
    """Every rhyming part (last stressed vowel onwards) of the word's pronunciations."""
    import pronouncing

    return {pronouncing.rhyming_part(p) for p in phones(word)}


def rhymes(a: str, b: str) -> bool:
    """True when two different words share a rhyming part in CMUdict."""
    a, b = a.lower(), b.lower()
    return a != b and bool(rhyming_parts(a) & rhyming_parts(b))


def parse_sections(lyrics: str) -> list[tuple[str, list[str]]]:
    """Split tagged lyrics into (tag, lines); lines before any tag go under tag ""."""
    sections: list[tuple[str, list[str]]] = []
    for raw in lyrics.splitlines():
        line = raw.strip()
        if not line:
            continue
        tag = _TAG_LINE.match(line)
        if tag:
            sections.append((tag.group(1).strip().title(), []))
        elif sections:
            sections[-1][1].append(line)
        else:
            sections.append(("", [line]))
    return sections
