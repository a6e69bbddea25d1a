"""Loudness normalisation (ITU-R BS.1770-4 / EBU R128 style), encoding and tagging.

Every song in the library is brought to the same integrated loudness so that a playlist
mixing engines does not jump in volume, and is limited to a true-peak ceiling so that
lossy encoders (MP3, Vorbis) do not clip on inter-sample peaks. Files are written
atomically (temp file + os.replace) so a player or MPD never sees half a file.
"""

from __future__ import annotations

import math
import os
import pathlib
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import numpy as np
import soundfile as sf
from scipy import ndimage, signal

from cassetted.music.base import Audio

# --------------------------------------------------------------------------- measurement

_BLOCK_S = 0.400         # gating block length (BS.1770-4 §2.8)
_STEP_S = 0.100          # 75 % overlap
_ABS_GATE_LUFS = -70.0
_REL_GATE_LU = -10.0
_TRUE_PEAK_OVERSAMPLE = 4

# K-weighting filter prototypes (BS.1770-4 Annex 1), expressed as analog parameters so that
# the biquads can be derived for any sample rate, not just the 48 kHz table in the standard.
_SHELF_F0 = 1681.974450955533
_SHELF_GAIN_DB = 3.999843853973347
_SHELF_Q = 0.7071752369554196
_HP_F0 = 38.13547087602444
_HP_Q = 0.5003270373238773


def k_weighting_filters(sr: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting biquads (pre-filter shelf, RLB high-pass) as (b, a) for `sr`.

    At 48 kHz these reproduce the coefficient table of BS.1770-4 to ~1e-8.
    """
    k = math.tan(math.pi * _SHELF_F0 / sr)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf_b = np.array([(vh + vb * k / _SHELF_Q + k * k) / a0,
                        2.0 * (k * k - vh) / a0,
                        (vh - vb * k / _SHELF_Q + k * k) / a0])
    shelf_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _SHELF_Q + k * k) / a0])

    k = math.tan(math.pi * _HP_F0 / sr)
    a0 = 1.0 + k / _HP_Q + k * k
    hp_b = np.array([1.0, -2.0, 1.0])
    hp_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HP_Q + k * k) / a0])
    return (shelf_b, shelf_a), (hp_b, hp_a)


def _as_2d(samples: np.ndarray) -> np.ndarray:
    """(frames, channels) view of the samples; float32 and float64 pass through uncopied."""
    x = np.asarray(samples)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return x[:, None] if x.ndim == 1 else x


@lru_cache(maxsize=8)
def _k_weighting_sos(sr: int) -> np.ndarray:
    """Both K-weighting biquads as one two-section cascade (one filter pass per channel)."""
    (b1, a1), (b2, a2) = k_weighting_filters(sr)
    return np.array([np.concatenate([b1, a1]), np.concatenate([b2, a2])])


_CHUNK_STEPS = 8        # K-weighting is filtered in chunks of this many 100 ms steps


@lru_cache(maxsize=8)
def _k_ring(sr: int, floor: float = 1e-9) -> int:
    """Samples after which the K-weighting filter's response to a stopped input has decayed
    below `floor` (its slowest pole is the RLB high-pass, near the unit circle)."""
    radius = 0.0
    for section in _k_weighting_sos(sr):             # largest |pole|, in closed form
        a1, a2 = section[4] / section[3], section[5] / section[3]
        disc = a1 * a1 - 4.0 * a2
        radius = max(radius, math.sqrt(a2) if disc < 0 else (abs(a1) + math.sqrt(disc)) / 2.0)
    return int(np.ceil(np.log(floor) / np.log(radius)))


@dataclass
class _KSteps:
    """The K-weighted energy of a signal per 100 ms step, per channel, with the filter state
    at the start of every chunk (so any stretch can be filtered again without the rest)."""

    steps: np.ndarray       # (channels, m): sum of squares per step
    states: np.ndarray      # (channels, chunks, sections, 2)
    step: int
    q: int                  # steps per gating block


def _k_steps(x: np.ndarray, sr: int) -> _KSteps | None:
    """`_KSteps` of (frames, channels) `x`, or None where the block is not a whole number of
    steps (odd rates) or `x` is shorter than one block.

    One channel at a time in float64 (bounded memory for a 10-minute song; float64 because
    the RLB high-pass has poles within 0.005 of the unit circle). Each step is summed once
    and blocks add their steps: cheaper than a running cumulative sum and free of its drift.
    """
    block = round(_BLOCK_S * sr)
    step = round(_STEP_S * sr)
    n = x.shape[0]
    if n < block or block % step:
        return None
    q = block // step
    m = 1 + (n - block) // step + q - 1               # whole steps that blocks cover
    sos = _k_weighting_sos(sr)
    chunk = _CHUNK_STEPS * step
    n_chunks = -(-m // _CHUNK_STEPS)
    steps = np.empty((x.shape[1], m))
    states = np.empty((x.shape[1], n_chunks, sos.shape[0], 2))
    for ch in range(x.shape[1]):
        zi = np.zeros((sos.shape[0], 2))
        for c in range(n_chunks):
            states[ch, c] = zi
            start = c * chunk
            seg = np.asarray(x[start:min(start + chunk, m * step), ch], dtype=np.float64)
            y, zi = signal.sosfilt(sos, seg, zi=zi)
            y *= y
            steps[ch, c * _CHUNK_STEPS:c * _CHUNK_STEPS + y.size // step] = y.reshape(-1, step).sum(axis=1)
    return _KSteps(steps, states, step, q)


def _powers_from_steps(k: _KSteps) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(k.steps, k.q, axis=1)
    return cast(np.ndarray, windows.sum(axis=2).sum(axis=0) / (k.q * k.step))


def _block_powers(x: np.ndarray, sr: int) -> np.ndarray:
    """Mean square of the K-weighted signal per 400 ms gating block, summed over channels."""
    k = _k_steps(x, sr)
    if k is not None:
        return _powers_from_steps(k)
    block = round(_BLOCK_S * sr)
    step = round(_STEP_S * sr)
    n = x.shape[0]
    if n < block:
        return np.zeros(0)
    n_blocks = 1 + (n - block) // step
    sos = _k_weighting_sos(sr)
    power = np.zeros(n_blocks)
    for ch in range(x.shape[1]):                      # odd rates: running sum, whole song
        y = signal.sosfilt(sos, np.asarray(x[:, ch], dtype=np.float64))
        csum = np.concatenate([[0.0], np.cumsum(y * y)])
        starts = np.arange(n_blocks) * step
        power += csum[starts + block] - csum[starts]
    return power / block


def _limited_powers(x: np.ndarray, sr: int, k: _KSteps, limit: _Limit) -> np.ndarray:
    """`_block_powers` of `x` through the limiter `limit`, given `k = _k_steps(x, sr)`,
    refiltering only the chunks where `limit` differs from 1 (or its effect still rings): a limiter touches a
    few stretches of a song, and everywhere else the steps are those of `x`.

    A chunk after a refiltered one starts from the carried state; one after an untouched
    chunk from `x`'s saved state, which differs from the limited signal's by less than
    1e-9 of its ringing (chunks are marked through the filter's ring time).
    """
    sos = _k_weighting_sos(sr)
    chunk = _CHUNK_STEPS * k.step
    end = k.steps.shape[1] * k.step
    n_chunks = k.states.shape[1]
    touched = np.zeros(n_chunks + 1, dtype=bool)
    for lo, hi in zip(limit.lo, limit.hi, strict=True):
        if lo < end:
            touched[lo // chunk:min(hi + _k_ring(sr), end) // chunk + 1] = True
    steps = k.steps.copy()
    for ch in range(x.shape[1]):
        prev, zi = -2, None
        for c in np.flatnonzero(touched[:n_chunks]).tolist():
            start = c * chunk
            stop = min(start + chunk, end)
            seg = np.multiply(x[start:stop, ch], limit.over(start, stop), dtype=np.float64)
            y, zi = signal.sosfilt(sos, seg, zi=zi if c == prev + 1 else k.states[ch, c])
            y *= y
            steps[ch, c * _CHUNK_STEPS:c * _CHUNK_STEPS + y.size // k.step] = (
                y.reshape(-1, k.step).sum(axis=1))
            prev = c
    return _powers_from_steps(_KSteps(steps, k.states, k.step, k.q))


def _gated_loudness(power: np.ndarray) -> float:
    """BS.1770-4 two-stage gating over per-block powers; -inf when nothing passes."""
    if power.size == 0:
        return float("-inf")
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(power)
    above_abs = block_lufs > _ABS_GATE_LUFS
    if not above_abs.any():
        return float("-inf")
    rel_gate = -0.691 + 10.0 * math.log10(power[above_abs].mean()) + _REL_GATE_LU
    gated = above_abs & (block_lufs > rel_gate)
    return float(-0.691 + 10.0 * math.log10(power[gated].mean()))


def integrated_loudness(samples: np.ndarray, sr: int) -> float:
    """Gated integrated loudness in LUFS of (frames,) or (frames, channels) audio.

    Channels are weighted 1.0 (left/right/centre; surround weights are not needed here).
    Returns -inf for silence or audio shorter than one 400 ms block.
    """
    return _gated_loudness(_block_powers(_as_2d(samples), sr))


@lru_cache(maxsize=1)
def _interpolation_phases() -> tuple[np.ndarray, ...]:
    """The 4x interpolation low-pass (48 taps, 12 per phase, as in BS.1770-4 Annex 2),
    split into its four polyphase branches."""
    h = signal.firwin(48, 1.0 / _TRUE_PEAK_OVERSAMPLE, window=("kaiser", 6.0)) * _TRUE_PEAK_OVERSAMPLE
    return tuple(h[p::_TRUE_PEAK_OVERSAMPLE] for p in range(_TRUE_PEAK_OVERSAMPLE))


_PEAK_BLOCK = 12   # frames per screening block; at least the 11 a phase looks back


@lru_cache(maxsize=1)
def _phase_bound() -> float:
    """Largest gain any interpolated phase can apply to a window of samples (sum of |taps|):
    no interpolated sample exceeds this times the largest |sample| it is computed from."""
    return float(max(np.abs(p).sum() for p in _interpolation_phases()))


def _block_maxima(x: np.ndarray, b: int) -> np.ndarray:
    """max |sample| over all channels per block of `b` frames (the last one may be short).

    A C-ordered (frames, channels) array holds each block contiguously, so this is one
    reduction along a long axis and no |x| temporary.
    """
    n = x.shape[0]
    full = n // b
    flat = x[: full * b].reshape(full, b * x.shape[1])
    out: np.ndarray = np.maximum(flat.max(axis=1, initial=0.0), -flat.min(axis=1, initial=0.0))
    if n > full * b:
        out = np.append(out, np.abs(x[full * b:]).max())
    return out


_COARSE = 16       # fine blocks per coarse screening block


def _candidate_blocks(x: np.ndarray, threshold: float) -> np.ndarray:
    """Sorted indices of the `_PEAK_BLOCK`-frame blocks whose interpolated values may exceed
    `threshold`: each frame's four interpolated values are 12-tap FIRs over the frame and
    the 11 before it, so |value| <= `_phase_bound()` x the largest |sample| in the block or
    the one before.

    Screened twice: first blocks of 16 x 12 frames (long rows reduce fast), then the
    12-frame blocks only inside the coarse blocks that pass, or follow one that does.
    """
    n, channels = x.shape
    b = _PEAK_BLOCK
    limit = threshold / _phase_bound() * (1.0 - 1e-12)    # rounding: never screen out a frame
    coarse = _block_maxima(x, b * _COARSE) > limit
    coarse[1:] |= coarse[:-1]                         # a block's window reaches into the one before
    n_blocks = -(-n // b)
    fine = np.zeros(n_blocks)                         # 0 where not measured: under the limit
    whole = n // (b * _COARSE)                        # coarse blocks without a short end
    rows = np.flatnonzero(coarse[:whole])
    if rows.size:
        v = x[:whole * b * _COARSE].reshape(whole, _COARSE, b * channels)[rows]
        fine[(rows[:, None] * _COARSE + np.arange(_COARSE)).ravel()] = \
            np.maximum(v.max(axis=2), -v.min(axis=2)).ravel()
    if coarse.size > whole and coarse[-1]:
        fine[whole * _COARSE:] = _block_maxima(x[whole * b * _COARSE:], b)
    window_max = np.maximum(fine, np.r_[0.0, fine[:-1]])
    return np.flatnonzero(window_max > limit)


def _peaks_of_blocks(x: np.ndarray, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact 4x-oversampled peak (max over channels and phases) of every frame of the
    sorted `blocks`: (frames, peaks).

    Consecutive blocks are gathered as runs, each with the 11 frames before it, into one
    float64 signal per channel; the four 12-tap phase FIRs then run over that signal
    (outputs whose taps would reach into the previous run are dropped). Plain numpy, not a
    BLAS matmul: BLAS worker threads spin-wait, which on a busy machine costs far more
    than these few multiply-adds.
    """
    n, channels = x.shape
    b = _PEAK_BLOCK
    phases = _interpolation_phases()
    lookback = phases[0].size - 1
    breaks = np.flatnonzero(np.diff(blocks) != 1) + 1
    starts = blocks[np.r_[0, breaks]] * b
    ends = np.minimum(n, (blocks[np.r_[breaks - 1, blocks.size - 1]] + 1) * b)
    lengths = ends - starts + lookback
    seg_first = np.cumsum(lengths) - lengths        # where each run starts in the gathered signal
    total = int(lengths.sum())
    src = np.arange(total) + np.repeat(starts - lookback - seg_first, lengths)
    outside = src < 0                                 # lookback before the song: zeros
    np.maximum(src, 0, out=src)
    keep = np.ones(total, dtype=bool)                 # outputs of whole windows
    keep[(seg_first[:, None] + np.arange(lookback)).ravel()] = False
    best = np.zeros(total - lookback)
    acc = np.empty(total - lookback)
    tmp = np.empty(total - lookback)
    for ch in range(channels):
        g = x[src, ch].astype(np.float64)
        g[outside] = 0.0
        for h in phases:
            np.multiply(g[lookback:], h[0], out=acc)
            for k in range(1, lookback + 1):
                np.multiply(g[lookback - k:total - k], h[k], out=tmp)
                acc += tmp
            np.abs(acc, out=acc)
            np.maximum(best, acc, out=best)
    return src[lookback:][keep[lookback:]], best[keep[lookback:]]


def _frame_peaks(x: np.ndarray, threshold: float, blocks: np.ndarray | None = None) -> np.ndarray:
    """Per-frame maximum |sample| over all channels at 4x oversampling, wherever it may
    exceed `threshold`; frames that provably cannot (reported as 0) are not computed.

    Blocks of 12 frames whose bound stays under the threshold are skipped
    (`_candidate_blocks`): near a -1 dBTP ceiling that is ~95 % of a song, so this costs a
    fraction of oversampling everything, yet is exact wherever it matters. `blocks`, when
    given, limits the work to those blocks (sorted indices); frames elsewhere read 0.
    """
    x = np.ascontiguousarray(x)
    frames, values = _sparse_peaks(x, threshold, blocks)
    peaks = np.zeros(x.shape[0])
    peaks[frames] = values
    return peaks


def _sparse_peaks(x: np.ndarray, threshold: float,
                  blocks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`_frame_peaks` as (frames, peaks) of the frames computed, without a song-length array."""
    x = np.ascontiguousarray(x)
    n = x.shape[0]
    if blocks is None:
        blocks = _candidate_blocks(x, threshold) if n else np.zeros(0, dtype=np.int64)
    else:
        blocks = blocks[blocks < -(-n // _PEAK_BLOCK)]
    if blocks.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    step = 16384                                      # bounded temporaries
    found = [_peaks_of_blocks(x, blocks[i:i + step]) for i in range(0, blocks.size, step)]
    return np.concatenate([f for f, _ in found]), np.concatenate([v for _, v in found])


def true_peak_dbtp(samples: np.ndarray, sr: int) -> float:
    """True peak in dBTP, measured by 4x polyphase oversampling (BS.1770-4 Annex 2)."""
    return _true_peak(samples)


def _true_peak(samples: np.ndarray) -> float:
    """Exact 4x-oversampled peak, computed only where it can be the maximum.

    The block with the largest bound is measured first; its peak is a lower bound on the
    answer, so every block whose upper bound stays below it can be skipped.
    """
    x = _as_2d(samples)
    if x.shape[0] == 0:
        return float("-inf")
    head = int(np.abs(x).max(axis=1).argmax())
    lo, hi = max(0, head - 2 * _PEAK_BLOCK), head + 2 * _PEAK_BLOCK
    near = _frame_peaks(x[lo:hi], 0.0)
    # Frames whose window reaches before the slice saw zeros there: not a valid bound.
    floor = float(near[11 if lo > 0 else 0:].max())
    peak = max(floor, float(_frame_peaks(x, floor).max()))
    return 20.0 * math.log10(peak) if peak > 0 else float("-inf")


# --------------------------------------------------------------------------- normalisation

_LIMITER_LOOKAHEAD_S = 0.005
_LIMITER_RELEASE_S = 0.050


@dataclass
class _Limit:
    """A look-ahead limiter's gain as the stretches where it acts: `gains[i]` (float32)
    covers frames `lo[i]:hi[i]`; everywhere else the gain is exactly 1."""

    lo: np.ndarray
    hi: np.ndarray
    gains: list[np.ndarray]

    def over(self, start: int, stop: int) -> np.ndarray:
        """The gain of frames `start:stop` (float32)."""
        out = np.ones(stop - start, dtype=np.float32)
        first = int(np.searchsorted(self.hi, start, side="right"))
        last = int(np.searchsorted(self.lo, stop, side="left"))
        for i in range(first, last):
            lo, hi = max(start, int(self.lo[i])), min(stop, int(self.hi[i]))
            out[lo - start:hi - start] = self.gains[i][lo - self.lo[i]:hi - self.lo[i]]
        return out


def _limiter_gain(frames: np.ndarray, peaks: np.ndarray, n: int, sr: int, ceiling: float) -> _Limit | None:
    """The gain of a look-ahead peak limiter over `n` frames whose 4x-oversampled peaks are
    `peaks` at the sorted `frames` (0 elsewhere), or None if nothing is over `ceiling`.

    The gain each frame needs is min-filtered over look-ahead + release, then smoothed by a
    moving average half that wide: every smoothed value is an average of values that are all
    below the frame's own requirement, so no frame exceeds the ceiling, and gain moves
    smoothly (no clicks). Only the stretches around frames that are over are computed: the
    filters reach `2 * hold` frames at most, and beyond that the gain is exactly 1.
    """
    over = frames[peaks > ceiling]
    if over.size == 0:
        return None
    half = max(1, int(_LIMITER_LOOKAHEAD_S * sr))
    hold = max(2 * half + 1, int(_LIMITER_RELEASE_S * sr))
    reach = 2 * hold + 2
    cuts = np.flatnonzero(np.diff(over) > 2 * reach)
    los, his, gains = [], [], []
    for first, last in zip(over[np.r_[0, cuts + 1]], over[np.r_[cuts, over.size - 1]], strict=True):
        lo, hi = max(0, int(first) - reach), min(n, int(last) + reach + 1)
        seg = np.zeros(hi - lo)
        i, j = np.searchsorted(frames, [lo, hi])
        seg[frames[i:j] - lo] = peaks[i:j]
        need = np.minimum(1.0, ceiling / np.maximum(seg, 1e-12))
        g = ndimage.minimum_filter1d(need, size=2 * hold + 1, mode="nearest")
        g = ndimage.uniform_filter1d(g, size=hold, mode="nearest")
        los.append(lo)
        his.append(hi)
        gains.append(np.minimum(g, need).astype(np.float32))
    return _Limit(np.array(los), np.array(his), gains)


def _apply_limit(x: np.ndarray, gain: float, limit: _Limit | None) -> np.ndarray:
    """`x` times `gain` and the limiter's per-frame gain, as a new float32 array."""
    out: np.ndarray = np.multiply(x, gain, dtype=np.float32)
    if limit is not None:
        for lo, hi, g in zip(limit.lo, limit.hi, limit.gains, strict=True):
            np.multiply(x[lo:hi], (gain * g)[:, None], out=out[lo:hi], dtype=np.float32)
    return out


def normalize_loudness(audio: Audio, target_lufs: float = -14.0,
                       true_peak_dbtp: float = -1.0) -> Audio:
    """Gain `audio` to `target_lufs` integrated loudness with true peak <= `true_peak_dbtp`.

    Peaks above the ceiling are tamed by the limiter rather than by lowering the whole song,
    so quiet dynamic material still reaches the target; limiting costs a little loudness,
    which the next pass restores (each pass limits the original at a new gain, never a
    limited signal again). A pure gain changes every block power by the same factor, so
    without limiting the target is met exactly without measuring again. Silence is returned
    unchanged.
    """
    sr = audio.sample_rate
    x = _as_2d(audio.samples)
    k = _k_steps(x, sr)
    power = _block_powers(x, sr) if k is None else _powers_from_steps(k)
    measured = _gated_loudness(power)
    if not math.isfinite(measured):
        return audio
    # Aim the limiter a hair below the ceiling: gain smoothing between samples must not
    # create a new inter-sample peak above the promised limit.
    ceiling = 10.0 ** ((true_peak_dbtp - 0.1) / 20.0)
    gain = 10.0 ** ((target_lufs - measured) / 20.0)
    limit: _Limit | None = None
    for attempt in range(3):
        frames, peaks = _sparse_peaks(x, ceiling / gain)
        limit = _limiter_gain(frames, peaks * gain, x.shape[0], sr, ceiling)
        if limit is None:
            break
        limited_power = (_block_powers(_apply_limit(x, 1.0, limit), sr) if k is None
                         else _limited_powers(x, sr, k, limit))
        limited = _gated_loudness(limited_power) + 20.0 * math.log10(gain)
        if abs(limited - target_lufs) < 0.1 or attempt == 2:
            break
        gain *= 10.0 ** ((target_lufs - limited) / 20.0)
    out = _apply_limit(x, gain, limit)
    if limit is not None:
        # Belt and braces: never exceed the promise. (Without limiting every frame was
        # measured under the ceiling at this very gain, 0.1 dB below the promise.) The
        # same holds for every frame whose 12-frame window has no limited frame: there
        # `out` is `x` at this gain, which the limiter saw under the ceiling. So only the
        # blocks in or just after a limited stretch are measured again.
        promise = 10.0 ** (true_peak_dbtp / 20.0)
        blocks = np.unique(np.concatenate([np.arange(lo // _PEAK_BLOCK, hi // _PEAK_BLOCK + 2)
                                           for lo, hi in zip(limit.lo, limit.hi, strict=True)]))
        _, final = _sparse_peaks(out, promise, blocks=blocks)
        final_peak = float(final.max(initial=0.0))
        if final_peak > promise:
            out *= np.float32(promise / final_peak * 10.0 ** (-0.05 / 20.0))
    return Audio(samples=out if audio.samples.ndim == 2 else out[:, 0], sample_rate=sr)


# --------------------------------------------------------------------------- encode + tag

FORMATS: dict[str, str] = {"flac": ".flac", "ogg": ".ogg", "mp3": ".mp3", "wav": ".wav"}

# soundfile (libsndfile >= 1.1) container and subtype per format.
_SF_FORMAT: dict[str, tuple[str, str]] = {
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "wav": ("WAV", "PCM_16"),
}


@dataclass
class Tags:
    """What every player shows about a song (written as Vorbis comments or ID3)."""

    title: str
    artist: str = "cassetted"
    album: str = "cassetted"
    genre: str = ""
    lyrics: str = ""
    bpm: int = 0
    key: str = ""
    comment: str = ""   # the prompt
    date: str = ""      # ISO 8601


def _vorbis_comments(tags: Tags) -> dict[str, str]:
    fields = {
        "TITLE": tags.title, "ARTIST": tags.artist, "ALBUM": tags.album, "GENRE": tags.genre,
        "LYRICS": tags.lyrics, "BPM": str(tags.bpm) if tags.bpm else "", "KEY": tags.key,
        "INITIALKEY": tags.key, "COMMENT": tags.comment, "DATE": tags.date,
    }
    return {k: v for k, v in fields.items() if v}


def _id3_frames(tags: Tags) -> list[Any]:
    from mutagen import id3

    frames: list[Any] = [id3.TIT2(encoding=3, text=tags.title), id3.TPE1(encoding=3, text=tags.artist),
                    id3.TALB(encoding=3, text=tags.album)]
    if tags.genre:
        frames.append(id3.TCON(encoding=3, text=tags.genre))
    if tags.lyrics:
        frames.append(id3.USLT(encoding=3, lang="eng", desc="", text=tags.lyrics))
    if tags.bpm:
        frames.append(id3.TBPM(encoding=3, text=str(tags.bpm)))
    if tags.key:
        frames.append(id3.TKEY(encoding=3, text=tags.key))
    if tags.comment:
        frames.append(id3.COMM(encoding=3, lang="eng", desc="", text=tags.comment))
    if tags.date:
        frames.append(id3.TDRC(encoding=3, text=tags.date))
    return frames


def _write_tags(path: pathlib.Path, fmt: str, tags: Tags) -> None:
    if fmt in ("flac", "ogg"):
        from mutagen.flac import FLAC
        from mutagen.oggvorbis import OggVorbis

        f = FLAC(path) if fmt == "flac" else OggVorbis(path)
        if f.tags is None:
            f.add_tags()  # type: ignore[no-untyped-call]  # mutagen; the exclude misses calls on a union
        for k, v in _vorbis_comments(tags).items():
            f[k] = v
        f.save()
    elif fmt == "mp3":
        from mutagen.id3 import ID3, ID3NoHeaderError

        try:
            id3tags = ID3(path)
        except ID3NoHeaderError:
            id3tags = ID3()
        for frame in _id3_frames(tags):
            id3tags.add(frame)
        id3tags.save(path)
    elif fmt == "wav":
        from mutagen.wave import WAVE

        wav = WAVE(path)
        if wav.tags is None:
            wav.add_tags()
        for frame in _id3_frames(tags):
            wav.tags.add(frame)  # type: ignore[attr-defined]  # mutagen types WAVE.tags as None; add_tags() set it
        wav.save()


def encode(audio: Audio, path: pathlib.Path, fmt: str = "flac", tags: Tags | None = None) -> pathlib.Path:
    """Write `audio` to `path` (with the format's extension) and tag it; returns the final path.

    The file is encoded and tagged under a temporary name in the same directory and then
    renamed into place, so a reader sees either no file or the complete, tagged file.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
    path = pathlib.Path(path)
    # Replace a known audio extension, otherwise append: "Song 1.5" must not lose its ".5".
    if path.suffix.lower() in FORMATS.values():
        path = path.with_suffix(FORMATS[fmt])
    elif path.suffix.lower() != FORMATS[fmt]:
        path = path.with_name(path.name + FORMATS[fmt])
    path.parent.mkdir(parents=True, exist_ok=True)
    container, subtype = _SF_FORMAT[fmt]
    samples = np.clip(np.asarray(audio.samples, dtype=np.float32), -1.0, 1.0)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=FORMATS[fmt] + ".part",
                                    dir=path.parent)
    os.close(fd)
    tmp = pathlib.Path(tmp_name)
    try:
        sf.write(tmp, samples, audio.sample_rate, format=container, subtype=subtype)
        if tags is not None:
            _write_tags(tmp, fmt, tags)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the library is read by MPD and others
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
