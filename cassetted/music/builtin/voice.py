"""A wordless singing voice: a vibrato glottal tone (-12 dB/octave) through vowel formants.

It cannot pronounce words, but it sings the melody on the vowels of the lyrics in order
("Morning light" -> o, i, i), which is enough for a sung line to read as a voice rather
than another synth. Per-note filtering only (a handful of biquads per note), no
per-sample loops.

`sing` is what the engine calls: when piper-tts and a Piper voice are installed, the words
themselves are sung (`_piper`); otherwise this wordless voice sings.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import signal

from cassetted.music.builtin.synth import _TABLE_SIZE, wavetable
from cassetted.music.builtin.theory import midi_to_hz

if TYPE_CHECKING:
    from cassetted.music.builtin.arrange import Note

log = logging.getLogger(__name__)

# Formant centre frequencies (Hz) and relative gains: averaged adult values, slightly
# brightened so the voice sits above the band.
FORMANTS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "a": ((800.0, 1200.0, 2800.0), (1.0, 0.6, 0.25)),
    "e": ((450.0, 1900.0, 2600.0), (1.0, 0.5, 0.3)),
    "i": ((320.0, 2300.0, 3000.0), (1.0, 0.35, 0.3)),
    "o": ((500.0, 850.0, 2800.0), (1.0, 0.7, 0.15)),
    "u": ((340.0, 750.0, 2500.0), (1.0, 0.5, 0.1)),
}
_BANDWIDTH = (90.0, 120.0, 170.0)


def vowels(lyrics: str) -> list[str]:
    """The vowel of every syllable of the sung lines, in order (tags and blank lines skipped)."""
    out: list[str] = []
    for line in lyrics.splitlines():
        if line.strip().startswith("[") or not line.strip():
            continue
        for group in re.findall(r"[aeiouyäöüéèàáíóú]+", line.lower()):
            v = group[0]
            out.append({"y": "i", "ä": "e", "é": "e", "è": "e", "ö": "o", "ü": "u", "à": "a",
                        "á": "a", "í": "i", "ó": "o", "ú": "u"}.get(v, v))
    return out or ["a"]


def _formant_bank(sr: int) -> dict[str, list[tuple[np.ndarray, float]]]:
    bank = {}
    for v, (freqs, gains) in FORMANTS.items():
        bank[v] = [(signal.butter(1, [(f - bw / 2) / (sr / 2), min((f + bw / 2) / (sr / 2), 0.99)],
                                  btype="band", output="sos"), g)
                   for f, bw, g in zip(freqs, _BANDWIDTH, gains, strict=True)]
    return bank


def render_voice(notes: list[Note], vowel_seq: list[str], sr: int, beat_s: float, n_frames: int,
                 rng: np.random.Generator, tick: Callable[[], None] | None = None) -> np.ndarray:
    """Mono render of the sung melody; note i is sung on vowel i (cycling)."""
    out = np.zeros(n_frames)
    bank = _formant_bank(sr)
    release = int(0.08 * sr)
    for i, note in enumerate(notes):
        start = round(note.start * beat_s * sr)
        if start >= n_frames:
            continue
        n_on = max(1, round(note.dur * beat_s * sr))
        n = min(n_on + release, n_frames - start)
        t = np.arange(n) / sr
        f0 = midi_to_hz(note.pitch)
        # Vibrato that blooms after the attack, as singers do; a little pitch scoop in.
        depth = np.clip((t - 0.15) / 0.3, 0.0, 1.0) * 0.012
        scoop = -0.01 * np.exp(-t / 0.04)
        inst = f0 * (1.0 + depth * np.sin(2 * np.pi * 5.4 * t) + scoop)
        phase = np.cumsum(inst) / sr
        harmonics = max(1, min(64, int(5000 / f0)))
        idx = (phase * _TABLE_SIZE).astype(np.int64) & (_TABLE_SIZE - 1)
        source = wavetable("glottal", 1 << (harmonics.bit_length() - 1))[idx]
        source = source + 0.04 * rng.standard_normal(n)         # breath
        voiced = np.zeros(n)
        for sos, g in bank[vowel_seq[i % len(vowel_seq)]]:
            voiced += g * signal.sosfilt(sos, source)
        env = np.minimum(1.0, t / 0.03)
        if n > n_on:
            env[n_on:] *= np.linspace(1.0, 0.0, n - n_on)
        out[start:start + n] += voiced * env * note.vel
        if tick is not None and i % 64 == 63:
            tick()
    peak = np.abs(out).max()
    return (out / peak if peak > 0 else out).astype(np.float32)


def sing(arr: Any, lyrics: str, language: str | None, sr: int, beat_s: float, n_frames: int,
         rng: np.random.Generator, tick: Callable[[], None] | None = None) -> np.ndarray:
    """Mono render of the arrangement's vocal part: the lyrics' words sung by a Piper voice
    when one is installed (`_piper`), else the wordless voice on the lyrics' vowels."""
    from cassetted.music.builtin import piper as _piper

    singer = _piper.singer_for(language)
    if singer is not None:
        state = rng.bit_generator.state
        raised: list[BaseException] = []

        def guarded_tick() -> None:
            try:
                if tick is not None:
                    tick()
            except BaseException as exc:        # Cancelled and the like pass straight through
                raised.append(exc)
                raise

        try:
            return _piper.render_vocals(singer, arr, lyrics, sr, beat_s, n_frames, rng, guarded_tick)
        except Exception as exc:
            if raised and exc is raised[-1]:
                raise
            log.warning("the Piper voice failed; the voice sings without words", exc_info=True)
            rng.bit_generator.state = state
    return render_voice(arr.parts["vocal"], vowels(lyrics), sr, beat_s, n_frames, rng, tick)
