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
    x = np.asarray(samples, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x


def integrated_loudness(samples: np.ndarray, sr: int) -> float:
    """Gated integrated loudness in LUFS of (frames,) or (frames, channels) audio.

    Channels are weighted 1.0 (left/right/centre; surround weights are not needed here).
    Returns -inf for silence or audio shorter than one 400 ms block.
    """
    x = _as_2d(samples)
    (b1, a1), (b2, a2) = k_weighting_filters(sr)
    y = signal.lfilter(b2, a2, signal.lfilter(b1, a1, x, axis=0), axis=0)

    block = int(round(_BLOCK_S * sr))
    step = int(round(_STEP_S * sr))
    if y.shape[0] < block:
        return float("-inf")
    n_blocks = 1 + (y.shape[0] - block) // step
    # Mean square per block via a cumulative sum: O(n), no per-block Python loop.
    csum = np.concatenate([np.zeros((1, y.shape[1])), np.cumsum(y * y, axis=0)])
    starts = np.arange(n_blocks) * step
    z = (csum[starts + block] - csum[starts]) / block           # (blocks, channels)
    power = z.sum(axis=1)
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(power)

    above_abs = block_lufs > _ABS_GATE_LUFS
    if not above_abs.any():
        return float("-inf")
    rel_gate = -0.691 + 10.0 * math.log10(power[above_abs].mean()) + _REL_GATE_LU
    gated = above_abs & (block_lufs > rel_gate)
    return float(-0.691 + 10.0 * math.log10(power[gated].mean()))


@lru_cache(maxsize=1)
def _interpolation_phases() -> tuple[np.ndarray, ...]:
    """The 4x interpolation low-pass (48 taps, 12 per phase, as in BS.1770-4 Annex 2),
    split into its four polyphase branches."""
    h = signal.firwin(48, 1.0 / _TRUE_PEAK_OVERSAMPLE, window=("kaiser", 6.0)) * _TRUE_PEAK_OVERSAMPLE
    return tuple(h[p::_TRUE_PEAK_OVERSAMPLE] for p in range(_TRUE_PEAK_OVERSAMPLE))


def _oversampled_peaks(x: np.ndarray) -> np.ndarray:
    """Per-input-frame maximum |sample| over all channels at 4x oversampling.

    Polyphase: each of the four interpolated phases is a short FIR over the input, so the
    4x signal is never materialised (a 10-minute song stays cheap in time and memory).
    """
    n = x.shape[0]
    out = np.zeros(n)
    for ch in range(x.shape[1]):
        col = np.ascontiguousarray(x[:, ch])
        for branch in _interpolation_phases():
            np.maximum(out, np.abs(np.convolve(col, branch)[:n]), out=out)
    return out


def true_peak_dbtp(samples: np.ndarray, sr: int) -> float:
    """True peak in dBTP, measured by 4x polyphase oversampling (BS.1770-4 Annex 2)."""
    return _true_peak(samples)


def _true_peak(samples: np.ndarray) -> float:
    x = _as_2d(samples)
    if x.shape[0] == 0:
        return float("-inf")
    peak = float(_oversampled_peaks(x).max())
    return 20.0 * math.log10(peak) if peak > 0 else float("-inf")


# --------------------------------------------------------------------------- normalisation

_LIMITER_LOOKAHEAD_S = 0.005
_LIMITER_RELEASE_S = 0.050


def _limit(x: np.ndarray, sr: int, ceiling: float) -> np.ndarray:
    """A look-ahead peak limiter, vectorised.

    The gain each frame needs is min-filtered over look-ahead + release, then smoothed by a
    moving average half that wide: every smoothed value is an average of values that are all
    below the frame's own requirement, so no frame exceeds the ceiling, and gain moves
    smoothly (no clicks).
    """
    peaks = _oversampled_peaks(x)
    need = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
    if need.min() >= 1.0:
        return x
    half = max(1, int(_LIMITER_LOOKAHEAD_S * sr))
    hold = max(2 * half + 1, int(_LIMITER_RELEASE_S * sr))
    gain = ndimage.minimum_filter1d(need, size=2 * hold + 1, mode="nearest")
    gain = ndimage.uniform_filter1d(gain, size=hold, mode="nearest")
    gain = np.minimum(gain, need)
    return x * gain[:, None]


def normalize_loudness(audio: Audio, target_lufs: float = -14.0,
                       true_peak_dbtp: float = -1.0) -> Audio:
    """Gain `audio` to `target_lufs` integrated loudness with true peak <= `true_peak_dbtp`.

    Peaks above the ceiling are tamed by the limiter rather than by lowering the whole song,
    so quiet dynamic material still reaches the target; limiting costs a little loudness,
    which a second pass restores. Silence is returned unchanged.
    """
    sr = audio.sample_rate
    x = _as_2d(audio.samples)
    measured = integrated_loudness(x, sr)
    if not math.isfinite(measured):
        return audio
    # Aim the limiter a hair below the ceiling: gain smoothing between samples must not
    # create a new inter-sample peak above the promised limit.
    ceiling = 10.0 ** ((true_peak_dbtp - 0.1) / 20.0)
    for _ in range(3):
        x = x * 10.0 ** ((target_lufs - measured) / 20.0)
        x = _limit(x, sr, ceiling)
        measured = integrated_loudness(x, sr)
        if abs(measured - target_lufs) < 0.1:
            break
    final_peak = _true_peak(x)
    if final_peak > true_peak_dbtp:  # belt and braces: never exceed the promise
        x = x * 10.0 ** ((true_peak_dbtp - 0.05 - final_peak) / 20.0)
    out = x.astype(np.float32)
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


def _id3_frames(tags: Tags) -> list:
    from mutagen import id3

    frames: list = [id3.TIT2(encoding=3, text=tags.title), id3.TPE1(encoding=3, text=tags.artist),
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
            f.add_tags()
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

        f = WAVE(path)
        if f.tags is None:
            f.add_tags()
        for frame in _id3_frames(tags):
            f.tags.add(frame)
        f.save()


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
