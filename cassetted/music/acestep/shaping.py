"""Audio shaping around ACE-Step: to and from the model's rate, exact lengths, tempo change.

The engine contract is float32 (frames, 2) at the daemon's sample rate with exactly
round(duration_s * rate) frames; ACE-Step speaks 48 kHz stereo (the VAE's own rate).
NumPy and SciPy only.
"""

from __future__ import annotations

from math import gcd

import numpy as np


def stereo(samples: np.ndarray) -> np.ndarray:
    """(frames,) or (frames, channels) -> float32 (frames, 2)."""
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    if data.shape[1] == 1:
        data = np.repeat(data, 2, axis=1)
    elif data.shape[1] > 2:
        data = data[:, :2]
    return np.ascontiguousarray(data)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling along the frame axis (band-limited, no phase shift)."""
    if rate_in == rate_out:
        return samples
    from scipy import signal

    divisor = gcd(int(rate_in), int(rate_out))
    up, down = int(rate_out) // divisor, int(rate_in) // divisor
    resampled: np.ndarray = signal.resample_poly(samples, up, down, axis=0)
    return resampled.astype(np.float32, copy=False)


def fit_length(samples: np.ndarray, frames: int, fade_s: float = 0.05, rate: int = 48000) -> np.ndarray:
    """Exactly `frames` frames: trim (with a short fade-out) or pad with silence."""
    have = samples.shape[0]
    if have > frames:
        samples = samples[:frames].copy()
        fade = min(frames, int(fade_s * rate))
        if fade > 1:
            samples[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
        return samples
    if have < frames:
        pad = np.zeros((frames - have, samples.shape[1]), dtype=np.float32)
        return np.concatenate([samples, pad], axis=0)
    return samples


def to_engine(samples: np.ndarray, rate_in: int, rate_out: int, duration_s: float) -> np.ndarray:
    """Model output (frames, channels) at `rate_in` -> the engine's exact float32 stereo."""
    data = resample(stereo(samples), rate_in, rate_out)
    data = fit_length(data, round(duration_s * rate_out), rate=rate_out)
    np.clip(data, -1.0, 1.0, out=data)
    return np.ascontiguousarray(data, dtype=np.float32)


def window_weights(total: int, start: int, end: int, fade: int) -> np.ndarray:
    """[total] float32: 1 inside start..end, 0 outside, linear ramps of `fade` frames just
    outside each edge (upstream's linspace(0, 1, n + 2)[1:-1], repaint_waveform_splice.py and
    _repaint_boundary_blend at 783bb36)."""
    weight = np.zeros(total, dtype=np.float32)
    weight[start:end] = 1.0
    if fade > 0:
        begin, finish = max(start - fade, 0), min(end + fade, total)
        if start > begin:
            weight[begin:start] = np.linspace(0.0, 1.0, start - begin + 2, dtype=np.float32)[1:-1]
        if finish > end:
            weight[end:finish] = np.linspace(1.0, 0.0, finish - end + 2, dtype=np.float32)[1:-1]
    return weight


def splice(generated: np.ndarray, source: np.ndarray, start_s: float, end_s: float, rate: int,
           crossfade_s: float = 0.01) -> np.ndarray:
    """A repaint's result: `generated` inside start_s..end_s, `source` itself outside, with
    10 ms ramps just outside the window's edges (upstream's repaint_waveform_splice.py).
    Both (frames, 2) at `rate`, same length."""
    frames = min(generated.shape[0], source.shape[0])
    start = max(0, min(int(start_s * rate), frames))
    end = max(start, min(int(end_s * rate), frames))
    weight = window_weights(frames, start, end, int(crossfade_s * rate))
    out = source[:frames].astype(np.float32, copy=True)
    inside = weight > 0
    w = weight[inside][:, None]
    out[inside] = w * generated[:frames][inside] + (1.0 - w) * source[:frames][inside]
    return np.ascontiguousarray(out)


def time_stretch(samples: np.ndarray, rate: float, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """Change tempo by `rate` (>1 faster, shorter) keeping pitch: a phase vocoder per channel.

    Good enough as a cover's *source*: ACE-Step re-synthesises it from semantic tokens, so
    the vocoder's smearing does not reach the output.
    """
    if abs(rate - 1.0) < 1e-3:
        return stereo(samples)
    data = stereo(samples)
    window = np.hanning(n_fft).astype(np.float32)
    out_channels = []
    for channel in data.T:
        padded = np.pad(channel, (n_fft // 2, n_fft // 2))
        frames = 1 + max(0, (len(padded) - n_fft) // hop)
        idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
        spectrum = np.fft.rfft(padded[idx] * window, axis=1)
        steps = np.arange(0, frames - 1, rate)
        expected = 2 * np.pi * hop * np.arange(spectrum.shape[1]) / n_fft
        phase = np.angle(spectrum[0])
        out = np.zeros((len(steps), spectrum.shape[1]), dtype=np.complex64)
        for i, step in enumerate(steps):
            left = int(step)
            a, b = spectrum[left], spectrum[left + 1]
            frac = step - left
            magnitude = (1 - frac) * np.abs(a) + frac * np.abs(b)
            out[i] = magnitude * np.exp(1j * phase)
            delta = np.angle(b) - np.angle(a) - expected
            delta -= 2 * np.pi * np.round(delta / (2 * np.pi))
            phase = phase + expected + delta
        frames_out = np.fft.irfft(out, n=n_fft, axis=1).astype(np.float32) * window
        length = n_fft + hop * (len(steps) - 1)
        signal_out = np.zeros(length, dtype=np.float32)
        norm = np.zeros(length, dtype=np.float32)
        for i, frame in enumerate(frames_out):
            signal_out[i * hop:i * hop + n_fft] += frame
            norm[i * hop:i * hop + n_fft] += window ** 2
        signal_out /= np.maximum(norm, 1e-3)
        out_channels.append(signal_out[n_fft // 2:n_fft // 2 + round(len(channel) / rate)])
    length = min(len(c) for c in out_channels)
    return np.ascontiguousarray(np.stack([c[:length] for c in out_channels], axis=1))
