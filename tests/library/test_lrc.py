"""Timed lyrics: where the built-in engine's voice sings each line, checked on its audio."""

from __future__ import annotations

import itertools
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from cassetted.contract.schemas import SongSpec
from cassetted.features.karaoke import remix_duration
from cassetted.jobs.pipeline import Pipeline
from cassetted.library import lrc
from cassetted.library.incoming import place
from cassetted.music.builtin import voice as _voice
from cassetted.music.builtin.arrange import arrange
from cassetted.music.builtin.engine import BuiltinEngine

LYRICS = """[Verse]
Morning light on the kitchen floor
Coffee steam and an open door
[Chorus]
Sing it loud, sing it proud
We are dancing in the crowd
[Verse 2]
Evening falls on the city street
Every heartbeat finds the beat
[Bridge]
Hold on, hold on
[Chorus]
Sing it loud, sing it proud
We are dancing in the crowd
"""
SUNG = {line for line in LYRICS.splitlines() if line and not line.startswith("[")}


def spec(**changes: object) -> SongSpec:
    fields: dict[str, object] = {"genre": "rock", "mood": "energetic", "bpm": 120, "key": "G major",
                                 "duration_s": 40.0, "seed": 7, "lyrics": LYRICS,
                                 "title": "Kitchen Floor"}
    fields.update(changes)
    return SongSpec(**fields)  # type: ignore[arg-type]


def intro_end_s(s: SongSpec) -> float:
    """Where the arrangement's intro ends (the engine's own form, read-only)."""
    arr = arrange(s.genre, s.mood, s.bpm, s.key, s.time_signature, s.duration_s, s.lyrics,
                  s.instrumental, np.random.default_rng(0))
    assert arr.sections[0].kind == "intro"
    return arr.sections[0].bars * arr.meter.beats_per_bar * 60.0 / s.bpm


CASES = [spec(), spec(genre="jazz", mood="relaxing", bpm=96, time_signature="3/4", seed=3),
         spec(genre="pop", bpm=100, time_signature="6/8", duration_s=60.0, seed=11),
         spec(genre="electronic", bpm=128, duration_s=90.0, seed=2)]


@pytest.mark.parametrize("engine", ["builtin", "acestep"])
@pytest.mark.parametrize("s", CASES, ids=lambda s: f"{s.genre}-{s.time_signature}")
def test_lines_are_sung_lines_in_order_inside_the_song(s: SongSpec, engine: str) -> None:
    lines = lrc.timed_lines(s, engine)
    times = [t for t, _ in lines]
    assert len(lines) >= 4
    assert all(b > a for a, b in itertools.pairwise(times)), "strictly increasing"
    assert times[0] >= intro_end_s(s) - 1e-6, "the first line comes after the intro"
    assert times[-1] < s.duration_s
    assert {text for _, text in lines} <= SUNG, "structure tags are never lines"
    if engine == "acestep":  # the estimate sings the lyrics once, as written
        assert [text for _, text in lines] == [line for line in LYRICS.splitlines() if line in SUNG]


def test_instrumental_songs_have_no_lines() -> None:
    assert lrc.timed_lines(spec(instrumental=True)) == []
    assert lrc.timed_lines(spec(lyrics="[Instrumental]")) == []
    assert lrc.timed_lines(spec(lyrics="[Instrumental]"), "acestep_api") == []


@pytest.mark.parametrize("s", CASES, ids=lambda s: f"{s.genre}-{s.time_signature}")
@pytest.mark.parametrize("new_bpm", [150, 75])
def test_a_tempo_change_scales_every_line_by_the_tempo_ratio(s: SongSpec, new_bpm: int) -> None:
    """The karaoke remix (same spec, new bpm, the length that keeps the bars) sings the same
    lines, each at the source's time x old/new bpm."""
    remix = s.model_copy(update={"bpm": new_bpm,
                                 "duration_s": remix_duration(s.duration_s, s.bpm, new_bpm)})
    before, after = lrc.timed_lines(s), lrc.timed_lines(remix)
    assert [text for _, text in after] == [text for _, text in before]
    ratio = s.bpm / new_bpm
    for (t0, _), (t1, _) in zip(before, after, strict=True):
        assert t1 == pytest.approx(t0 * ratio, abs=1e-6)


def _render_voice(s: SongSpec, sr: int, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """Render the song with the built-in engine and keep the voice track it mixes in."""
    monkeypatch.setenv("CASSETTED_PIPER_VOICE", "off")  # the wordless voice: its onsets are sharp
    captured: list[np.ndarray] = []
    real = _voice.render_voice

    def keep(*args: object, **kwargs: object) -> np.ndarray:
        out = real(*args, **kwargs)  # type: ignore[arg-type]
        captured.append(out)
        return out

    monkeypatch.setattr(_voice, "render_voice", keep)
    audio = BuiltinEngine(sr).generate(s, lambda fraction, note=None: None)
    assert audio.samples.shape[0] == round(s.duration_s * sr) and len(captured) == 1
    return captured[0]


@pytest.mark.parametrize("s", [CASES[2], CASES[3]], ids=["pop-6/8", "electronic-4/4"])
def test_the_voice_enters_where_the_lrc_says(s: SongSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the voice the engine renders and mixes: nothing is sung before the first line, and
    at every LRC time the singer comes in (the 60 ms after are at least twice as loud as the
    60 ms before). These songs' sections are whole two-bar phrases, each ending with a
    breath, so every line starts out of a pause; in shorter sections a cut phrase may run
    legato into the next line, which the timings above still place, but a loudness test
    cannot see. A quarter of a beat late, or half a beat early, the test fails."""
    sr = 22050
    voice = _render_voice(s, sr, monkeypatch)
    lines = lrc.timed_lines(s)

    def rms(t0: float, t1: float) -> float:
        return float(np.sqrt(np.mean(voice[max(0, int(t0 * sr)):int(t1 * sr)] ** 2)))

    def comes_in(t: float) -> bool:
        return 2 * rms(t - 0.06, t - 0.005) < rms(t + 0.02, t + 0.08)

    first = lines[0][0]
    assert np.abs(voice[: int((first - 0.005) * sr)]).max() < 1e-6, "nothing sung before line 1"
    assert all(comes_in(t) for t, _ in lines), [round(t, 2) for t, _ in lines if not comes_in(t)]
    beat = 60.0 / s.bpm
    for shift in (beat / 4, -beat / 2):
        assert sum(comes_in(t + shift) for t, _ in lines) <= len(lines) // 4, shift


def test_lrc_format_round_trips() -> None:
    lines = [(4.0, "Morning light"), (65.257, "Coffee [steam]"), (599.99, "the end")]
    text = lrc.to_lrc(lines, "Kitchen [Floor]", "cassetted", 601.2)
    head = text.splitlines()[:4]
    assert head == ["[ti:Kitchen (Floor)]", "[ar:cassetted]", "[length:10:01]", "[re:cassetted]"]
    body = text.splitlines()[4:]
    assert body == ["[00:04.00]Morning light", "[01:05.26]Coffee [steam]", "[09:59.99]the end"]
    assert all(re.fullmatch(r"\[\d\d:\d\d\.\d\d\].+", line) for line in body)
    parsed = lrc.parse_lrc(text)
    assert [t for _, t in parsed] == [t for _, t in lines]
    assert [t for t, _ in parsed] == pytest.approx([t for t, _ in lines], abs=0.006)
    assert lrc.parse_lrc("[00:01.5][00:03.00]twice\n[ar:x]\n") == [(1.5, "twice"), (3.0, "twice")]


def test_the_pipeline_writes_the_sidecar_beside_each_take(tmp_path: Path) -> None:
    pipeline = Pipeline(tmp_path, "wav")
    s = spec(duration_s=12.0)
    produced = pipeline.run("song1", s, lambda _: pytest.fail("lyrics were given"),
                            BuiltinEngine(22050), lambda state, fraction: None, threading.Event())
    audio = tmp_path / produced.relative_file
    sidecar = audio.with_suffix(".lrc")
    # Written beside each other in .incoming/; both enter the library together.
    assert not audio.exists() and (tmp_path / ".incoming" / sidecar.name).exists()
    place(tmp_path, [produced.relative_file])
    assert audio.exists() and sidecar.exists() and not (tmp_path / ".incoming" / sidecar.name).exists()
    written, expected = lrc.parse_lrc(sidecar.read_text()), lrc.timed_lines(produced.spec)
    assert [text for _, text in written] == [text for _, text in expected]
    assert [t for t, _ in written] == pytest.approx([t for t, _ in expected], abs=0.006)
    assert "[ti:Kitchen Floor]" in sidecar.read_text()

    instrumental = pipeline.run("song2", s.model_copy(update={"instrumental": True}),
                                lambda _: pytest.fail("no lyrics wanted"), BuiltinEngine(22050),
                                lambda state, fraction: None, threading.Event())
    place(tmp_path, [instrumental.relative_file])
    assert (tmp_path / instrumental.relative_file).exists()
    assert not (tmp_path / instrumental.relative_file).with_suffix(".lrc").exists()
