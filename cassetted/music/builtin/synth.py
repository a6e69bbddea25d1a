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
from typing import TYPE_CHECKING, cast

import numpy as np
from scipy import fft as sp_fft
from scipy import signal

from cassetted.music.builtin.theory import midi_to_hz

if TYPE_CHECKING:
    from cassetted.music.builtin.arrange import Note

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
    table: np.ndarray = (amps[:, None] * np.sin(2 * np.pi * k[:, None] * phase[None, :])).sum(axis=0)
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
    """ADSR gain of a note `n_total` samples long with note-off at `n_on`, as float32.

    The decay's exponential is evaluated only up to note-off: the release that follows
    is a straight fade from the level there."""
    att = max(p.attack, 1e-4)
    n_held = min(n_total, n_on + 1)                   # through the note-off sample
    t = np.arange(n_held, dtype=np.float32) / np.float32(sr)
    env = np.empty(n_total, dtype=np.float32)
    held = env[:n_held]
    np.subtract(t, np.float32(att), out=held)
    held *= np.float32(-1.0 / max(p.decay, 1e-4))
    np.exp(held, out=held)
    held *= np.float32(1 - p.sustain)
    held += np.float32(p.sustain)
    n_att = int(np.count_nonzero(t < att))            # the attack ramp: t / att
    np.multiply(t[:n_att], np.float32(1.0 / att), out=held[:n_att])
    if n_total > n_on:  # release: fade from the level at note-off to zero
        level = env[min(n_on, n_total - 1)]
        env[n_on:] = level * np.linspace(1.0, 0.0, n_total - n_on, dtype=np.float32)
    return env


@lru_cache(maxsize=256)
def _voice_table(shape: str, harmonics: int, gain: float) -> np.ndarray:
    """`wavetable` times `gain`, as float32 (read-only, cached)."""
    table = (wavetable(shape, harmonics) * gain).astype(np.float32)
    table.setflags(write=False)
    return table


def _oscillators(pitch: int, n: int, patch: Patch, sr: int) -> np.ndarray:
    """The sum of `patch`'s detuned voices and layers at `pitch` for `n` samples, before
    the note envelope (layers' own decays included), as float32.

    It depends on the pitch only, not on the note's length: notes of one pitch share the
    longest render. The phase is computed in float64, in table units (a float32 phase
    drifts audibly within seconds); the table lookups and the sum are float32.
    """
    i = np.arange(n, dtype=np.float64)
    f0 = midi_to_hz(pitch)
    vib: np.ndarray | None = None
    if patch.vibrato_cents:
        t = i / sr
        depth = np.clip((t - patch.vibrato_delay) / 0.3, 0.0, 1.0) * patch.vibrato_cents / 1200
        # Integrated frequency modulation: phase offset in cycles, here in table steps.
        vib = depth * (f0 * np.log(2) * _TABLE_SIZE / (2 * np.pi * patch.vibrato_hz)) \
            * np.sin((2 * np.pi * patch.vibrato_hz / sr) * i)
    decays = [np.exp(np.arange(n, dtype=np.float32) * np.float32(-1.0 / (layer.decay_s * sr)))
              if layer.decay_s else None for layer in patch.layers]
    x = np.zeros(n, dtype=np.float32)
    phase = np.empty(n)
    idx = np.empty(n, dtype=np.int64)
    y = np.empty(n, dtype=np.float32)
    voices = len(patch.detune_cents)
    for cents in patch.detune_cents:
        f = f0 * 2 ** (cents / 1200)
        for layer, decay in zip(patch.layers, decays, strict=True):
            fl = f * 2 ** layer.octave
            table = _voice_table(layer.shape, _harmonics_for(fl, sr, layer.harmonics), layer.gain / voices)
            np.multiply(i, fl * _TABLE_SIZE / sr, out=phase)
            if vib is not None:
                phase += vib
            np.copyto(idx, phase, casting="unsafe")   # truncation, as astype
            np.bitwise_and(idx, _TABLE_SIZE - 1, out=idx)
            np.take(table, idx, out=y, mode="clip")
            if decay is not None:
                y *= decay
            x += y
    return x


def _note_wave(osc: np.ndarray, n_on: int, n: int, vel: float, patch: Patch, sr: int) -> np.ndarray:
    """One note of `patch`, `n` samples long with note-off at `n_on`, as float32, from its
    pitch's oscillators `osc` (at least `n` samples of `_oscillators`)."""
    x: np.ndarray = osc[:n] * _envelope(min(n_on, n), n, sr, patch)
    if vel != 1.0:
        x *= np.float32(vel)
    if patch.drive:
        x *= np.float32(patch.drive)
        np.tanh(x, out=x)
        x *= np.float32(1.0 / np.tanh(patch.drive))
    if patch.gain != 1.0:
        x *= np.float32(patch.gain)
    return x


def filter_with_tail(x: np.ndarray, sos: np.ndarray, ring: int | None = None,
                     floor: float = 1e-6) -> np.ndarray:
    """`x` through the filter `sos`, followed by its ringing once `x` stops: up to `ring`
    samples (`ring_samples(sos)` by default), without the end of that tail that stays below
    `floor` times the peak (a high-pass rings long, but mostly at a level nobody hears)."""
    if ring is None:
        ring = ring_samples(sos)
    y: np.ndarray = signal.sosfilt(_sos_for(x, sos), np.concatenate([x, np.zeros(ring, x.dtype)]))
    peak = max(float(y.max(initial=0.0)), -float(y.min(initial=0.0)))
    loud = np.flatnonzero(np.abs(y[x.size:]) > floor * peak)
    return y[:x.size + (int(loud[-1]) + 1 if loud.size else 0)]


def ring_samples(sos: np.ndarray, floor: float = 1e-6) -> int:
    """How long the filter `sos` rings after its input stops, until its slowest pole has
    decayed below `floor` (-120 dB)."""
    radius = max(pole_radius(section) for section in sos)
    return 1 if radius <= 0 else int(np.ceil(np.log(floor) / np.log(min(radius, 1 - 1e-9))))


def pole_radius(section: np.ndarray) -> float:
    """Largest |pole| of one biquad section (b0, b1, b2, a0, a1, a2), in closed form (no
    LAPACK eigenvalue call, whose BLAS threads spin on a busy machine)."""
    a1, a2 = section[4] / section[3], section[5] / section[3]
    disc = a1 * a1 - 4.0 * a2
    if disc < 0:                                      # a complex pair: |z|^2 = a2
        return float(np.sqrt(a2))
    return float(max(abs(-a1 + np.sqrt(disc)), abs(-a1 - np.sqrt(disc))) / 2.0)


# A distinct synthesised note: (pitch, samples until note-off, samples, velocity or 1.0).
_NoteKey = tuple[int, int, int, float]


def render_notes(notes: list[Note], patch: Patch, sr: int, beat_s: float, n_frames: int,
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
    # What to place: (start, key, scale) per note; a key is a distinct synthesised note.
    placements: list[tuple[int, _NoteKey, float]] = []
    longest: dict[int, int] = {}                      # per pitch, the longest note
    for note in notes:
        start = round(note.start * beat_s * sr)
        if start >= n_frames:
            continue
        n_on = max(1, round(note.dur * beat_s * sr))
        n = min(n_on + rel_n, n_frames - start)
        if n <= 0:
            continue
        vel = float(note.vel) if patch.drive else 1.0
        key = (int(note.pitch), n_on, n, vel)
        placements.append((start, key, 1.0 if patch.drive else float(note.vel)))
        longest[key[0]] = max(longest.get(key[0], 0), n)
    # A (key, scale) pair placed more than once is scaled once and then just added; each
    # is dropped after its last placement, so the cache holds what is still to come.
    last_use = {(key, scale): i for i, (_, key, scale) in enumerate(placements)}
    uses: dict[tuple[_NoteKey, float], int] = {}
    for _, key, scale in placements:
        uses[(key, scale)] = uses.get((key, scale), 0) + 1
    oscs: dict[int, np.ndarray] = {}
    waves: dict[_NoteKey, np.ndarray] = {}
    scaled: dict[tuple[_NoteKey, float], np.ndarray] = {}
    for i, (start, key, scale) in enumerate(placements):
        wave = waves.get(key)
        if wave is None:
            pitch, n_on, n, vel = key
            osc = oscs.get(pitch)
            if osc is None:
                osc = oscs[pitch] = _oscillators(pitch, longest[pitch], patch, sr)
            wave = _note_wave(osc, n_on, n, vel, patch, sr)
            if sos is not None:
                wave = filter_with_tail(wave, sos, ring)
            waves[key] = wave
        m = min(wave.size, n_frames - start)
        combo = (key, scale)
        if scale == 1.0:
            out[start:start + m] += wave[:m]
        elif uses[combo] > 1:
            w = scaled.get(combo)
            if w is None:
                w = scaled[combo] = wave * np.float32(scale)
            out[start:start + m] += w[:m]
            if last_use[combo] == i:
                del scaled[combo]
        else:
            axpy(out[start:start + m], wave[:m], scale)
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
    return cast(np.ndarray, signal.butter(order, min(cutoff / (sr / 2), 0.99), btype="low", output="sos"))


def highpass_sos(sr: int, cutoff: float, order: int = 2) -> np.ndarray:
    return cast(np.ndarray, signal.butter(order, cutoff / (sr / 2), btype="high", output="sos"))


def lowpass(x: np.ndarray, sr: int, cutoff: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, min(cutoff / (sr / 2), 0.99), btype="low", output="sos")
    return cast(np.ndarray, signal.sosfilt(_sos_for(x, sos), x, axis=-1))


def highpass(x: np.ndarray, sr: int, cutoff: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, cutoff / (sr / 2), btype="high", output="sos")
    return cast(np.ndarray, signal.sosfilt(_sos_for(x, sos), x, axis=-1))


def pan_gains(position: float) -> tuple[float, float]:
    """Constant-power pan law: -1 left, 0 centre, 1 right -> (left gain, right gain)."""
    angle = (position + 1) * np.pi / 4
    return float(np.cos(angle)), float(np.sin(angle))


def pan_into(dst: np.ndarray, mono: np.ndarray, position: float, gain: float = 1.0,
             send: np.ndarray | None = None, send_gain: float = 0.0, chunk: int = 1 << 16) -> None:
    """Add `mono` panned into the stereo bus `dst` in place (no stereo temporary), and, when
    given, `send_gain` times it into the mono bus `send`.

    Buses are channel-major, shaped (2, frames): each channel is contiguous, which makes
    these adds several times faster than on interleaved (frames, 2) arrays. One pass over
    `mono`, a cache-sized chunk at a time, feeds every bus (the same sums as one `axpy`
    per bus, without reading a song-length `mono` once per bus).
    """
    left, right = pan_gains(position)
    targets = [(dst[0], gain * left), (dst[1], gain * right)]
    if send is not None:
        targets.append((send, send_gain))
    scales = [(bus, np.asarray(a, dtype=bus.dtype)) for bus, a in targets]
    tmp = np.empty(min(chunk, mono.size), dtype=mono.dtype)
    for start in range(0, mono.size, chunk):
        src = mono[start:start + chunk]
        t = tmp[:src.size]
        for bus, a in scales:
            np.multiply(src, a, out=t)
            bus[start:start + src.size] += t


def widen_into(dst: np.ndarray, mono: np.ndarray, sr: int, gain: float = 1.0, delay_ms: float = 11.0) -> None:
    """Add `mono` as a Haas-widened pad: the right channel a few ms late reads as width."""
    d = int(sr * delay_ms / 1000)
    g = gain * np.sqrt(0.5)
    axpy(dst[0], mono, g)
    axpy(dst[1, d:], mono[: mono.size - d], g)


def reverb_ir(sr: int, rng: np.random.Generator, rt60: float, brightness: float) -> np.ndarray:
    """A stereo impulse response, shaped (2, samples): decorrelated noise decaying 60 dB over
    `rt60` seconds, darkened over time (high frequencies die first, as in a real room)."""
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
    return cast(np.ndarray, ir / np.sqrt((ir ** 2).sum(axis=1, keepdims=True)))


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
    d = round(delay_s * sr)
    n = mono.size
    for k in range(1, taps + 1):
        shift = k * d
        if shift >= n:
            break
        target = dst if dst.ndim == 1 else dst[1 if k % 2 else 0]
        axpy(target[shift:], mono[: n - shift], gain * feedback ** k)


def sidechain_inplace(mono: np.ndarray, sr: int, beat_s: float, depth: float,
                      release_s: float = 0.12) -> None:
    """Duck `mono` on every beat and let it recover: the "pumping" of electronic music.

    The gain is 1 - depth * exp(-(time since the beat) / release). Within a beat that is
    one decaying exponential, scaled by where the beat falls between two samples, so one
    table serves every beat: a loop per beat, no song-length gain array and no exp per
    sample.
    """
    beat_n = beat_s * sr
    n_beats = int(np.ceil(mono.size / beat_n))
    decay = np.exp(-np.arange(int(np.ceil(beat_n)) + 1) / (release_s * sr)).astype(mono.dtype)
    one = mono.dtype.type(1.0)
    g = np.empty(decay.size, dtype=mono.dtype)
    for k in range(n_beats):
        first = int(np.ceil(k * beat_n))              # the beat's first sample
        last = min(mono.size, int(np.ceil((k + 1) * beat_n)))
        if first >= last:
            break
        m = last - first
        lag = (first - k * beat_n) / sr               # the beat falls this long before it
        np.multiply(decay[:m], mono.dtype.type(depth * np.exp(-lag / release_s)), out=g[:m])
        np.subtract(one, g[:m], out=g[:m])
        mono[first:last] *= g[:m]
