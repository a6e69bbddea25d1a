"""Vectorised synthesis: wavetable voices with envelopes, and the effects of the mix bus.

Oscillators read band-limited single-cycle wavetables (additive, so no aliasing) with an
integer phase lookup: one gather per sample and voice instead of one sine per harmonic,
which is what keeps a three-minute song well under real time on a small CPU. Loops run
per note or per hit, never per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import signal

from cassetted.music._theory import midi_to_hz

_TABLE_SIZE = 4096


@lru_cache(maxsize=256)
def wavetable(shape: str, harmonics: int) -> np.ndarray:
    """One cycle of `shape` built from at most `harmonics` partials (read-only, cached)."""
    k = np.arange(1, max(1, harmonics) + 1)
    if shape == "sine":
        amps = (k == 1).astype(float)
    elif shape == "saw":
        amps = 1.0 / k
    elif shape == "square":
        amps = np.where(k % 2 == 1, 1.0 / k, 0.0)
    elif shape == "tri":
        amps = np.where(k % 2 == 1, 1.0 / k**2, 0.0)
    elif shape == "organ":     # drawbar-ish: octaves and fifths
        amps = np.where(np.isin(k, (1, 2, 3, 4, 6, 8)), 1.0 / np.sqrt(k), 0.0)
    elif shape == "glottal":   # a voice's source: all harmonics, falling 12 dB per octave
        amps = 1.0 / k**2
    elif shape == "reed":      # hollow, odd-heavy but with some evens (sax/clarinet-ish)
        amps = np.where(k % 2 == 1, 1.0 / k, 0.35 / k)
    else:
        raise ValueError(shape)
    phase = np.arange(_TABLE_SIZE) / _TABLE_SIZE
    table = (amps[:, None] * np.sin(2 * np.pi * k[:, None] * phase[None, :])).sum(axis=0)
    table /= np.abs(table).max()
    table.setflags(write=False)
    return table


def _harmonics_for(freq: float, sr: int, limit: int) -> int:
    """Largest power-of-two partial count under Nyquist (few distinct tables to cache)."""
    n = max(1, min(limit, int(0.45 * sr / freq)))
    return 1 << (n.bit_length() - 1)


@dataclass(frozen=True)
class Layer:
    shape: str
    harmonics: int = 32
    gain: float = 1.0
    decay_s: float = 0.0       # 0 = sustains with the note envelope; else its own fade
    octave: int = 0


@dataclass(frozen=True)
class Patch:
    """An instrument: oscillator layers, detuned voices, ADSR and vibrato."""

    layers: tuple[Layer, ...]
    detune_cents: tuple[float, ...] = (0.0,)
    attack: float = 0.005
    decay: float = 0.3          # time constant of the fall from peak to sustain
    sustain: float = 0.7
    release: float = 0.15
    vibrato_hz: float = 0.0
    vibrato_cents: float = 0.0
    vibrato_delay: float = 0.25
    drive: float = 0.0          # tanh saturation (guitars)
    gain: float = 1.0


def _envelope(n_on: int, n_total: int, sr: int, p: Patch) -> np.ndarray:
    t = np.arange(n_total) / sr
    att = max(p.attack, 1e-4)
    env = np.where(t < att, t / att, p.sustain + (1 - p.sustain) * np.exp(-(t - att) / max(p.decay, 1e-4)))
    if n_total > n_on:  # release: fade from the level at note-off to zero
        level = env[min(n_on, n_total - 1)]
        rel = np.linspace(1.0, 0.0, n_total - n_on)
        env[n_on:] = level * rel
    return env


def render_notes(notes: list, patch: Patch, sr: int, beat_s: float, n_frames: int,
                 tick: Callable[[], None] | None = None) -> np.ndarray:
    """Mono render of `notes` (objects with start, dur in beats, pitch, vel) with `patch`.

    `tick()` is called every few dozen notes so the engine can report progress (and be
    cancelled) during long parts.
    """
    out = np.zeros(n_frames)
    rel_n = int(patch.release * sr)
    for i, note in enumerate(notes):
        start = int(round(note.start * beat_s * sr))
        if start >= n_frames:
            continue
        n_on = max(1, int(round(note.dur * beat_s * sr)))
        n = min(n_on + rel_n, n_frames - start)
        if n <= 0:
            continue
        t = np.arange(n) / sr
        env = _envelope(min(n_on, n), n, sr, patch) * note.vel
        f0 = midi_to_hz(note.pitch)
        vib = 0.0
        if patch.vibrato_cents:
            depth = np.clip((t - patch.vibrato_delay) / 0.3, 0.0, 1.0) * patch.vibrato_cents / 1200
            # Integrated frequency modulation: phase offset in cycles.
            vib = depth * f0 * np.log(2) * np.sin(2 * np.pi * patch.vibrato_hz * t) / (2 * np.pi * patch.vibrato_hz)
        x = np.zeros(n)
        for cents in patch.detune_cents:
            f = f0 * 2 ** (cents / 1200)
            for layer in patch.layers:
                fl = f * 2 ** layer.octave
                table = wavetable(layer.shape, _harmonics_for(fl, sr, layer.harmonics))
                phase = fl * t + vib
                idx = ((phase * _TABLE_SIZE).astype(np.int64)) & (_TABLE_SIZE - 1)
                y = table[idx] * layer.gain
                if layer.decay_s:
                    y = y * np.exp(-t / layer.decay_s)
                x += y
        x *= env / len(patch.detune_cents)
        if patch.drive:
            x = np.tanh(patch.drive * x) / np.tanh(patch.drive)
        out[start:start + n] += x * patch.gain
        if tick is not None and i % 64 == 63:
            tick()
    return out


def place_hits(sample: np.ndarray, starts_s: np.ndarray, vels: np.ndarray, sr: int,
               n_frames: int) -> np.ndarray:
    """Mono track of `sample` copied at each start time (seconds), scaled by velocity."""
    out = np.zeros(n_frames)
    for s, v in zip(np.round(starts_s * sr).astype(np.int64), vels):
        if 0 <= s < n_frames:
            n = min(sample.size, n_frames - s)
            out[s:s + n] += v * sample[:n]
    return out


# --------------------------------------------------------------------------- effects


def lowpass(x: np.ndarray, sr: int, cutoff: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, min(cutoff / (sr / 2), 0.99), btype="low", output="sos")
    return signal.sosfilt(sos, x, axis=-1)


def highpass(x: np.ndarray, sr: int, cutoff: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, cutoff / (sr / 2), btype="high", output="sos")
    return signal.sosfilt(sos, x, axis=-1)


def pan_gains(position: float) -> tuple[float, float]:
    """Constant-power pan law: -1 left, 0 centre, 1 right -> (left gain, right gain)."""
    angle = (position + 1) * np.pi / 4
    return float(np.cos(angle)), float(np.sin(angle))


def pan_into(dst: np.ndarray, mono: np.ndarray, position: float, gain: float = 1.0) -> None:
    """Add `mono` panned into the stereo bus `dst` in place (no stereo temporary).

    Buses are channel-major, shaped (2, frames): each channel is contiguous, which makes
    these adds several times faster than on interleaved (frames, 2) arrays.
    """
    left, right = pan_gains(position)
    dst[0] += mono * (gain * left)
    dst[1] += mono * (gain * right)


def widen_into(dst: np.ndarray, mono: np.ndarray, sr: int, gain: float = 1.0, delay_ms: float = 11.0) -> None:
    """Add `mono` as a Haas-widened pad: the right channel a few ms late reads as width."""
    d = int(sr * delay_ms / 1000)
    g = gain * np.sqrt(0.5)
    dst[0] += mono * g
    dst[1, d:] += mono[: mono.size - d] * g


def reverb_ir(sr: int, rng: np.random.Generator, rt60: float, brightness: float) -> np.ndarray:
    """A stereo impulse response, shaped (2, samples): decorrelated noise decaying 60 dB over `rt60` seconds,
    darkened over time (high frequencies die first, as in a real room)."""
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    env = np.exp(-6.9 * t / rt60) * np.minimum(1.0, t / 0.01)
    noise = rng.standard_normal((2, n))
    bright = lowpass(noise, sr, 2500 + 6000 * brightness)
    dark = lowpass(noise, sr, 900 + 1500 * brightness)
    mix = np.exp(-t / (0.25 * rt60))
    ir = (bright * mix + dark * (1 - mix)) * env
    predelay = int(0.015 * sr)
    ir = np.concatenate([np.zeros((2, predelay)), ir], axis=1)
    return ir / np.sqrt((ir ** 2).sum(axis=1, keepdims=True))


def reverb_into(dst: np.ndarray, x: np.ndarray, ir: np.ndarray, gain: float,
                chunk: int = 1 << 18) -> None:
    """Add the convolution reverb of bus `x` (2, frames; one IR per channel) into `dst`.

    Overlap-add over ~6 s chunks with FFT convolution: same result as one huge FFT, but
    memory stays bounded by the chunk instead of growing with the song.
    """
    n = x.shape[1]
    for start in range(0, n, chunk):
        seg = x[:, start:start + chunk]
        if not seg.any():
            continue
        y = signal.fftconvolve(seg, ir, axes=1)
        end = min(n, start + y.shape[1])
        dst[:, start:end] += gain * y[:, : end - start]


def echo_into(dst: np.ndarray, mono: np.ndarray, sr: int, delay_s: float, feedback: float,
              gain: float, taps: int = 4) -> None:
    """Add a ping-pong delay of `mono` (wet only) into stereo `dst`: each repeat swaps sides
    and is `feedback` quieter. Works on mono slices, so no stereo temporaries."""
    d = int(round(delay_s * sr))
    n = mono.size
    for k in range(1, taps + 1):
        shift = k * d
        if shift >= n:
            break
        ch = 1 if k % 2 else 0
        dst[ch, shift:] += mono[: n - shift] * (gain * feedback ** k)


def sidechain_gain(n_frames: int, sr: int, beat_s: float, depth: float, release_s: float = 0.12) -> np.ndarray:
    """Gain that dips on every beat and recovers: the "pumping" of electronic music."""
    t = np.arange(n_frames) / sr
    since = np.mod(t, beat_s)
    return 1.0 - depth * np.exp(-since / release_s)
