"""Turn a SongRequest into a SongSpec: every empty field gets a value, reproducibly.

The order of precedence for genre and mood is: the request, what its prompt says
("a relaxing jazz song"), the room's default, the configured default, then a choice drawn
from the seed. Everything drawn comes from a generator seeded by the request's seed, so a
resumed job resolves to the same spec.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import cast

from cassetted.config import GenerationSettings, RoomSettings
from cassetted.contract.schemas import (
    GENRES,
    MOODS,
    Genre,
    Mood,
    SongInfo,
    SongRequest,
    SongSpec,
    TimeSignature,
)
from cassetted.music import styles

# prompt -> (genre or None, mood or None); the intent parser provides the real one.
PromptReader = Callable[[str], tuple[Genre | None, Mood | None]]


def _no_reading(prompt: str) -> tuple[Genre | None, Mood | None]:
    return None, None


def new_seed() -> int:
    """A fresh seed for a request that did not bring one (stored with the job)."""
    return random.SystemRandom().randrange(0, 2**32)


def resolve(
    request: SongRequest,
    generation: GenerationSettings,
    room: RoomSettings | None = None,
    read_prompt: PromptReader = _no_reading,
) -> SongSpec:
    """The complete spec for a request. `request.seed` must already be set."""
    if request.seed is None:
        raise ValueError("resolve() needs a seeded request")
    rng = random.Random(request.seed)
    said_genre, said_mood = read_prompt(request.prompt) if request.prompt else (None, None)
    named_genre = (request.genre or said_genre or (room.default_genre if room else None)
                   or generation.default_genre)
    named_mood = (request.mood or said_mood or (room.default_mood if room else None)
                  or generation.default_mood)
    # Drawn only when nothing named one; `x or rng.choice(...)` would read the same, but mypy
    # then infers the draw as Optional.
    genre: Genre = named_genre if named_genre is not None else rng.choice(GENRES)
    mood: Mood = named_mood if named_mood is not None else rng.choice(MOODS)
    # Draw every default even when given, so one field never shifts another's value.
    bpm = styles.default_bpm(genre, mood, rng)
    key = styles.default_key(genre, mood, rng)
    return SongSpec(
        prompt=request.prompt,
        genre=genre,
        mood=mood,
        bpm=request.bpm or bpm,
        key=request.key or key,
        time_signature=request.time_signature or styles.default_time_signature(genre, mood),
        duration_s=request.duration_s or generation.default_duration_s,
        language=request.language or generation.language,
        instrumental=request.instrumental,
        seed=request.seed,
        # The room's child-safe mode (config, or switched with the PIN) was applied to the
        # request at admission (household.modes); the room's config alone must not outlast
        # a parent turning it off.
        child_safe=request.child_safe,
        lyrics=request.lyrics or "",
    )


def resolve_from_source(request: SongRequest, source: SongInfo,
                        generation: GenerationSettings) -> SongSpec:
    """The spec of a cover or repaint: the source song's, with what the request changes.

    A karaoke remix "at 150 bpm" keeps the song's genre, key, lyrics, seed and length and
    changes the tempo; anything else the request names (genre, mood, ...) wins too, a
    cover's duration included (karaoke asks for the length that keeps every bar).
    """
    return SongSpec(
        prompt=request.prompt or source.prompt,
        genre=request.genre or source.genre,
        mood=request.mood or source.mood,
        bpm=request.bpm or source.bpm,
        key=request.key or source.key,
        # SongInfo keeps the time signature as a plain str (the contract's shape); it was a
        # SongSpec's, and SongSpec validates it again here.
        time_signature=request.time_signature or cast(TimeSignature, source.time_signature),
        # A repaint redoes part of the source's audio: it keeps the source's length.
        duration_s=(request.duration_s if request.task == "cover" else None) or source.duration_s,
        language=request.language or source.language,
        instrumental=request.instrumental,
        seed=request.seed if request.seed is not None else source.seed,
        child_safe=request.child_safe,
        title=f"{source.title} ({request.task})",
        lyrics=request.lyrics or ("" if source.instrumental else source.lyrics),
    )
