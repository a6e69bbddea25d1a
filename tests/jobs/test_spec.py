"""resolve() and resolve_from_source(): every empty field filled, reproducibly, in the
documented order of precedence."""

from __future__ import annotations

from typing import Any

import pytest

from cassetted.config import GenerationSettings, RoomSettings
from cassetted.contract.schemas import GENRES, MOODS, SongInfo, SongRequest
from cassetted.jobs.spec import new_seed, resolve, resolve_from_source

GENERATION = GenerationSettings()


def request(**fields: Any) -> SongRequest:
    values: dict[str, Any] = {"prompt": "a song", "seed": 42}
    values.update(fields)
    return SongRequest(**values)


def test_the_same_seed_resolves_to_the_same_spec() -> None:
    assert resolve(request(), GENERATION) == resolve(request(), GENERATION)
    drawn = {resolve(request(seed=seed), GENERATION).model_dump_json() for seed in range(20)}
    assert len(drawn) > 1  # the seed, not a constant, decides


def test_everything_drawn_is_valid() -> None:
    for seed in range(30):
        spec = resolve(request(seed=seed), GENERATION)
        assert spec.genre in GENRES and spec.mood in MOODS
        assert spec.bpm > 0 and spec.key and spec.time_signature
        assert spec.duration_s == GENERATION.default_duration_s
        assert spec.language == GENERATION.language and spec.seed == seed


def test_resolve_needs_a_seed() -> None:
    with pytest.raises(ValueError, match="seeded"):
        resolve(request(seed=None), GENERATION)


def test_new_seeds_fit_the_field() -> None:
    seeds = {new_seed() for _ in range(50)}
    assert len(seeds) > 1 and all(0 <= s < 2**32 for s in seeds)
    SongRequest(prompt="x", seed=max(seeds))  # accepted by the request's own bounds


def test_genre_and_mood_precedence() -> None:
    room = RoomSettings(name="Den", default_genre="country", default_mood="melancholic")
    configured = GenerationSettings(default_genre="rock", default_mood="energetic")

    def heard(prompt: str) -> tuple[str | None, str | None]:
        return "jazz", "relaxing"

    def picked(room_: RoomSettings | None = room, **fields: Any) -> tuple[str, str]:
        spec = resolve(request(**fields), configured, room_, heard)
        return spec.genre, spec.mood

    # The request wins over the prompt, the prompt over the room, the room over the config.
    assert picked(genre="pop", mood="uplifting") == ("pop", "uplifting")
    assert picked() == ("jazz", "relaxing")
    assert resolve(request(prompt=""), configured, room, heard).genre == "country"
    assert resolve(request(prompt=""), configured, None, heard).mood == "energetic"


def test_a_given_field_does_not_shift_the_others() -> None:
    """Defaults are drawn whether or not the request names a value, so naming the bpm
    keeps the key the seed would have chosen."""
    plain = resolve(request(genre="pop", mood="uplifting"), GENERATION)
    with_bpm = resolve(request(genre="pop", mood="uplifting", bpm=plain.bpm + 7), GENERATION)
    assert with_bpm.bpm == plain.bpm + 7
    assert with_bpm.key == plain.key and with_bpm.time_signature == plain.time_signature


def test_the_request_carries_child_safety_and_lyrics() -> None:
    room = RoomSettings(name="Kids", child_safe=True)
    assert resolve(request(), GENERATION, room).child_safe is False  # admission decides
    spec = resolve(request(child_safe=True, lyrics="la la", duration_s=30), GENERATION)
    assert (spec.child_safe, spec.lyrics, spec.duration_s) == (True, "la la", 30)


SOURCE = SongInfo(
    id="src1", title="Kettle Song", prompt="the kettle", lyrics="[Verse]\nboil", genre="country",
    mood="relaxing", bpm=90, key="D major", time_signature="3/4", duration_s=95.0,
    language="en", instrumental=False, seed=1234, engine="builtin", lyrics_provider="builtin",
    file="/library/kettle.flac", format="flac", created_at=1.0)


def test_a_cover_keeps_the_source_but_what_it_changes() -> None:
    cover = request(task="cover", source_song_id="src1", seed=None, prompt="", bpm=150,
                    duration_s=60)
    spec = resolve_from_source(cover, SOURCE, GENERATION)
    assert spec.bpm == 150 and spec.duration_s == 60
    assert (spec.genre, spec.key, spec.seed, spec.lyrics, spec.prompt) == (
        "country", "D major", 1234, "[Verse]\nboil", "the kettle")
    assert spec.title == "Kettle Song (cover)"


def test_a_repaint_keeps_the_source_length() -> None:
    repaint = request(task="repaint", source_song_id="src1", seed=9, duration_s=30,
                      repaint_start_s=10, repaint_end_s=20)
    spec = resolve_from_source(repaint, SOURCE, GENERATION)
    assert spec.duration_s == SOURCE.duration_s and spec.seed == 9


def test_an_instrumental_source_lends_no_lyrics() -> None:
    source = SOURCE.model_copy(update={"instrumental": True})
    spec = resolve_from_source(request(task="cover", source_song_id="src1"), source, GENERATION)
    assert spec.lyrics == ""
