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
from scipy import fft as sp_fft
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


def _note_wave(pitch: int, n_on: int, n: int, vel: float, patch: Patch, sr: int) -> np.ndarray:
    """One note of `patch`, `n` samples long with note-off at `n_on`, as float32.

    The phase is computed in float64 (a float32 phase drifts audibly within seconds); the
    finished note is float32 like the buses it is added to.
    """
    t = np.arange(n) / sr
    env = _envelope(min(n_on, n), n, sr, patch) * vel
    f0 = midi_to_hz(pitch)
    vib: np.ndarray | float = 0.0
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
    return (x * patch.gain).astype(np.float32)


def ring_samples(sos: np.ndarray, floor: float = 1e-6) -> int:
    """How long the filter `sos` rings after its input stops, until its slowest pole has
    decayed below `floor` (-120 dB)."""
    radius = max(float(np.abs(np.roots(section[3:])).max()) for section in sos)
    return 1 if radius <= 0 else int(np.ceil(np.log(floor) / np.log(min(radius, 1 - 1e-9))))


def render_notes(notes: list, patch: Patch, sr: int, beat_s: float, n_frames: int,
                 tick: Callable[[], None] | None = None, out: np.ndarray | None = None,
                 sos: np.ndarray | None = None) -> np.ndarray:
    """Mono float32 render of `notes` (objects with start, dur in beats, pitch, vel) with `patch`.

    A song repeats its bars, so the same note (pitch and length in samples) recurs dozens
    of times: each distinct one is synthesised once and then placed, scaled by velocity.
    Only a driven (saturated) patch depends on velocity non-linearly; it keys on it too.
    `tick()` is called every few dozen notes so the engine can report progress (and be
    cancelled) during long parts. `out`, when given, is a float32 buffer to reuse (every
    fresh song-length array costs page faults as well as memory).

    `sos`, when given, is the part's filter. Filtering is linear and time-invariant, so
    filtering each distinct note once (with its ringing tail, down to -120 dB) and summing
    gives the filtered part, for the cost of the distinct notes instead of the whole song.
    """
    if out is None:
        out = np.zeros(n_frames, dtype=np.float32)
    else:
        out[:] = 0.0
    rel_n = int(patch.release * sr)
    ring = ring_samples(sos) if sos is not None else 0
    cache: dict[tuple[int, int, int, float], np.ndarray] = {}
    for i, note in enumerate(notes):
        start = int(round(note.start * beat_s * sr))
        if start >= n_frames:
            continue
        n_on = max(1, int(round(note.dur * beat_s * sr)))
        n = min(n_on + rel_n, n_frames - start)
        if n <= 0:
            continue
        vel = float(note.vel) if patch.drive else 1.0
        key = (int(note.pitch), n_on, n, vel)
        wave = cache.get(key)
        if wave is None:
            wave = _note_wave(note.pitch, n_on, n, vel, patch, sr)
            if sos is not None:
                wave = signal.sosfilt(_sos_for(wave, sos), np.concatenate([wave, np.zeros(ring, wave.dtype)]))
            cache[key] = wave
        m = min(wave.size, n_frames - start)
        axpy(out[start:start + m], wave[:m], 1.0 if patch.drive else float(note.vel))
        if tick is not None and i % 64 == 63:
            tick()
    return out


# --------------------------------------------------------------------------- effects


def _sos_for(x: np.ndarray, sos: np.ndarray) -> np.ndarray:
    """Coefficients in the signal's precision: sosfilt computes in the wider of the two, and
    a float32 bus must not come back as float64 (twice the memory and time downstream)."""
    return sos.astype(np.float32) if x.dtype == np.float32 else sos


def axpy(dst: np.ndarray, src: np.ndarray, a: float, chunk: int = 1 << 16) -> None:
    """dst += a * src in place, a chunk at a time.

    Buses are long: a temporary the length of a song is tens of MB of fresh pages, and
    faulting those in costs more than the arithmetic; chunk-sized temporaries are reused
    by the allocator. (Not BLAS saxpy: its worker threads spin-wait and, on a busy
    machine, made the engine several times slower.)
    """
    scale = np.asarray(a, dtype=dst.dtype)
    for start in range(0, src.size, chunk):
        dst[start:start + chunk] += src[start:start + chunk] * scale


def filter_inplace(x: np.ndarray, sos: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """Run the cascade `sos` over mono `x` in place, a chunk at a time with carried state:
    the same numbers as one sosfilt call, without a song-length output array."""
    sos = _sos_for(x, sos)
    zi = np.zeros((sos.shape[0], 2), dtype=sos.dtype)
    for start in range(0, x.size, chunk):
        x[start:start + chunk], zi = signal.sosfilt(sos, x[start:start + chunk], zi=zi)
    return x


def lowpass_sos(sr: int, cutoff: float, order: int = 2) -> np.ndarray:
    return signal.butter(order, min(cutoff / (sr / 2), 0.99), btype="low", output="sos")


def highpass_sos(sr: int, cutoff: float, order: int = 2) -> np.ndarray:
    return signal.butter(order, cutoff / (sr / 2), btype="high", output="sos")


def lowpass(x: np.ndarray, sr: int, cutoff: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, min(cutoff / (sr / 2), 0.99), btype="low", output="sos")
    return signal.sosfilt(_sos_for(x, sos), x, axis=-1)


def highpass(x: np.ndarray, sr: int, cutoff: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, cutoff / (sr / 2), btype="high", output="sos")
    return signal.sosfilt(_sos_for(x, sos), x, axis=-1)


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
    axpy(dst[0], mono, gain * left)
    axpy(dst[1], mono, gain * right)


def widen_into(dst: np.ndarray, mono: np.ndarray, sr: int, gain: float = 1.0, delay_ms: float = 11.0) -> None:
    """Add `mono` as a Haas-widened pad: the right channel a few ms late reads as width."""
    d = int(sr * delay_ms / 1000)
    g = gain * np.sqrt(0.5)
    axpy(dst[0], mono, g)
    axpy(dst[1, d:], mono[: mono.size - d], g)


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


def reverb_into(dst: np.ndarray, send: np.ndarray, ir: np.ndarray, gain: float,
                chunk: int = 1 << 18) -> None:
    """Add the convolution reverb of the mono `send` bus through the stereo `ir` (2, taps)
    into the stereo bus `dst`: one room, heard differently by each ear.

    Overlap-add over ~6 s chunks: memory stays bounded by the chunk instead of growing
    with the song. The IR's spectrum is computed once (not once per chunk, as a plain
    fftconvolve per chunk would), the FFTs run in single precision on both cores, and
    silent chunks are skipped.
    """
    n = send.size
    taps = ir.shape[1]
    nfft = sp_fft.next_fast_len(chunk + taps - 1, real=True)
    spectrum = sp_fft.rfft(ir.astype(np.float32), nfft, axis=1, workers=2)
    spectrum *= np.float32(gain)
    for start in range(0, n, chunk):
        seg = send[start:start + chunk]
        if not seg.any():
            continue
        y = sp_fft.irfft(sp_fft.rfft(seg, nfft) * spectrum, nfft, axis=1, workers=2)
        end = min(n, start + seg.size + taps - 1)
        dst[:, start:end] += y[:, : end - start]


def echo_into(dst: np.ndarray, mono: np.ndarray, sr: int, delay_s: float, feedback: float,
              gain: float, taps: int = 4) -> None:
    """Add a delay of `mono` (wet only) into `dst`: each repeat `feedback` quieter. Into a
    stereo bus the repeats ping-pong (each swaps sides); into a mono bus they just add."""
    d = int(round(delay_s * sr))
    n = mono.size
    for k in range(1, taps + 1):
        shift = k * d
        if shift >= n:
            break
        target = dst if dst.ndim == 1 else dst[1 if k % 2 else 0]
        axpy(target[shift:], mono[: n - shift], gain * feedback ** k)


def sidechain_inplace(mono: np.ndarray, sr: int, beat_s: float, depth: float, release_s: float = 0.12,
                      chunk: int = 1 << 18) -> None:
    """Duck `mono` on every beat and let it recover: the "pumping" of electronic music.

    Applied chunk by chunk, so no song-length gain array is built.
    """
    for start in range(0, mono.size, chunk):
        t = np.arange(start, min(mono.size, start + chunk)) / sr
        mono[start:start + t.size] *= (1.0 - depth * np.exp(-np.mod(t, beat_s) / release_s)).astype(mono.dtype)
