"""Synthesised drum sounds, one short sample per instrument, rendered once per song.

Each hit of the song is then a scaled copy of its sample added at an exact sample offset,
which keeps beats on the tempo grid and costs one slice-add per hit. Noise comes from the
song's seeded generator, so a song's kit is as reproducible as its notes.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from scipy import signal

# Pan position (-1 left .. 1 right) and bus gain per drum.
PAN: dict[str, float] = {
    "kick": 0.0, "snare": 0.05, "clap": -0.05, "rim": 0.1, "hat": 0.3, "open_hat": 0.3,
    "ride": -0.35, "crash": -0.3, "brush": 0.1, "shaker": 0.4, "pulse": 0.0, "foot_hat": 0.3,
}


def _t(seconds: float, sr: int) -> np.ndarray:
    return np.arange(int(seconds * sr)) / sr


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, n)


def _band(x: np.ndarray, sr: int, lo: float | None, hi: float | None, order: int = 2) -> np.ndarray:
    nyq = sr / 2
    if lo and hi:
        sos = signal.butter(order, [lo / nyq, min(hi / nyq, 0.99)], btype="band", output="sos")
    elif lo:
        sos = signal.butter(order, lo / nyq, btype="high", output="sos")
    elif hi:
        sos = signal.butter(order, min(hi / nyq, 0.99), btype="low", output="sos")
    else:
        raise ValueError("a band needs a low or a high edge")
    return cast(np.ndarray, signal.sosfilt(sos, x))


def kick(sr: int, rng: np.random.Generator, punch: float = 1.0, tune_hz: float = 48.0) -> np.ndarray:
    """A short downward pitch sweep (the punch) over a steady sine body, plus a click.

    The body sits exactly on `tune_hz` (the song's tonic, as producers tune their kicks).
    The sweep is kept apart and dies within ~30 ms: a body that glides down to its pitch
    lingers a semitone above the tonic and, on every beat, blurs the key.
    """
    t = _t(0.4, sr)
    sweep_f = tune_hz * (1.0 + 2.5 * np.exp(-t / 0.012))
    sweep = np.sin(2 * np.pi * np.cumsum(sweep_f) / sr) * np.exp(-t / 0.02) * punch
    body = np.sin(2 * np.pi * tune_hz * t + 0.5) * np.exp(-t / 0.11) * np.minimum(1.0, t / 0.003)
    click = _band(_noise(rng, t.size), sr, 1500, 6000) * np.exp(-t / 0.004) * 0.6 * punch
    return cast(np.ndarray, np.tanh(1.6 * (body + sweep + click)) / np.tanh(1.6))


def soft_pulse(sr: int, rng: np.random.Generator, tune_hz: float = 55.0) -> np.ndarray:
    """A felted, heartbeat-like kick for ambient and classical-adjacent textures."""
    t = _t(0.5, sr)
    freq = tune_hz + 40.0 * np.exp(-t / 0.05)
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.18)
    attack = np.minimum(1.0, t / 0.004)
    thud = _band(_noise(rng, t.size), sr, 200, 900) * np.exp(-t / 0.01) * 0.25
    return (body + thud) * attack


def snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _t(0.3, sr)
    tone = (np.sin(2 * np.pi * 185 * t) + 0.5 * np.sin(2 * np.pi * 330 * t)) * np.exp(-t / 0.05)
    noise = _band(_noise(rng, t.size), sr, 1200, 9000) * np.exp(-t / 0.09)
    return 0.5 * tone + 0.9 * noise


def clap(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _t(0.3, sr)
    env = np.exp(-t / 0.07)
    for offset in (0.0, 0.011, 0.022):  # three hands, slightly apart
        env = env + 0.8 * ((t >= offset) & (t < offset + 0.008)) * np.exp(-(t - offset) / 0.003)
    return _band(_noise(rng, t.size), sr, 900, 3500) * env


def rim(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _t(0.08, sr)
    return (np.sin(2 * np.pi * 480 * t) + 0.6 * np.sin(2 * np.pi * 1650 * t)) * np.exp(-t / 0.012)


def hat(sr: int, rng: np.random.Generator, decay: float = 0.035) -> np.ndarray:
    t = _t(max(0.08, decay * 6), sr)
    return _band(_noise(rng, t.size), sr, 7000, None, order=3) * np.exp(-t / decay)


def ride(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Inharmonic partials (a struck plate) with a wash of noise and a bright ping."""
    t = _t(1.4, sr)
    freqs = np.array([3150.0, 4270.0, 5130.0, 6420.0, 7390.0, 8120.0]) * rng.uniform(0.98, 1.02, 6)
    ping = np.sin(2 * np.pi * freqs[:, None] * t[None, :]).sum(axis=0) / len(freqs)
    wash = _band(_noise(rng, t.size), sr, 5000, None)
    ring = 0.7 * ping * np.exp(-t / 0.35) + 0.5 * wash * np.exp(-t / 0.6)
    return cast(np.ndarray, ring * np.minimum(1, t / 0.001))


def crash(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _t(1.8, sr)
    return _band(_noise(rng, t.size), sr, 3500, None) * np.exp(-t / 0.55)


def brush(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A brush tap: band-passed noise with a soft attack (the slap) and a short sweep."""
    t = _t(0.25, sr)
    env = np.minimum(1.0, t / 0.006) * np.exp(-t / 0.07)
    return cast(np.ndarray, _band(_noise(rng, t.size), sr, 1800, 7000) * env)


def shaker(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _t(0.12, sr)
    env = np.minimum(1.0, t / 0.012) * np.exp(-t / 0.03)
    return cast(np.ndarray, _band(_noise(rng, t.size), sr, 5000, None) * env)


def kit(sr: int, rng: np.random.Generator, punch: float = 1.0, tonic_pc: int = 7) -> dict[str, np.ndarray]:
    """Every drum sound of one song, peak-normalised so velocities mean the same across drums.

    Kick and pulse are tuned to the tonic (pitch class `tonic_pc`) between A1 and G#2.
    """
    tune = 440.0 * 2 ** ((33 + (tonic_pc - 33) % 12 - 69) / 12)
    sounds = {
        "kick": kick(sr, rng, punch, tune), "pulse": soft_pulse(sr, rng, tune), "snare": snare(sr, rng),
        "clap": clap(sr, rng), "rim": rim(sr, rng), "hat": hat(sr, rng, 0.03),
        "open_hat": hat(sr, rng, 0.22), "foot_hat": hat(sr, rng, 0.02) * 0.5,
        "ride": ride(sr, rng), "crash": crash(sr, rng), "brush": brush(sr, rng),
        "shaker": shaker(sr, rng),
    }
    return {k: _tail_fade(v) / max(1e-9, np.abs(v).max()) for k, v in sounds.items()}


def _tail_fade(x: np.ndarray, fraction: float = 0.3) -> np.ndarray:
    """Fade the last part of a sample to zero so a cut-off tail never clicks."""
    n = max(1, int(x.size * fraction))
    out = x.copy()
    out[-n:] *= np.cos(np.linspace(0.0, np.pi / 2, n)) ** 2
    return out
