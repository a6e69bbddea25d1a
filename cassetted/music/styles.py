"""Genre and mood defaults: what an empty request field becomes.

Kept as data so the spec resolver, the engines and the lyric writers agree on what
"relaxing jazz" means (tempo range, major or minor, metre).
"""

from __future__ import annotations

import random

from cassetted.contract.schemas import Genre, Mood, TimeSignature

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# Typical tempo range (bpm) per genre.
GENRE_BPM: dict[str, tuple[int, int]] = {
    "rock": (100, 140),
    "pop": (95, 125),
    "jazz": (90, 140),
    "electronic": (120, 135),
    "classical": (70, 110),
    "hip-hop": (80, 98),
    "country": (90, 120),
    "ambient": (60, 80),
}

# Tempo factor and mode per mood.
MOOD_TEMPO: dict[str, float] = {
    "uplifting": 1.05, "relaxing": 0.85, "energetic": 1.15, "melancholic": 0.85,
}
MOOD_MINOR_PROBABILITY: dict[str, float] = {
    "uplifting": 0.1, "relaxing": 0.35, "energetic": 0.4, "melancholic": 0.9,
}


def default_bpm(genre: Genre, mood: Mood, rng: random.Random) -> int:
    """A tempo inside the genre's range, pushed by the mood."""
    lo, hi = GENRE_BPM[genre]
    base = rng.uniform(lo, hi) * MOOD_TEMPO[mood]
    return round(min(max(base, lo * 0.8), hi * 1.2))


def default_key(genre: Genre, mood: Mood, rng: random.Random) -> str:
    """A key whose mode follows the mood ("A minor", "F major")."""
    minor = rng.random() < MOOD_MINOR_PROBABILITY[mood]
    return f"{rng.choice(NOTE_NAMES)} {'minor' if minor else 'major'}"


def default_time_signature(genre: Genre, mood: Mood) -> TimeSignature:
    """4/4 everywhere except slow classical, which waltzes."""
    if genre == "classical" and mood in ("relaxing", "melancholic"):
        return "3/4"
    return "4/4"
