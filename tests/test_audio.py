"""Loudness measurement against BS.1770 facts, normalisation, and encode/tag round trips."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import soundfile as sf

from cassetted.audio import (
    FORMATS,
    Tags,
    encode,
    integrated_loudness,
    k_weighting_filters,
    normalize_loudness,
    true_peak_dbtp,
)
from cassetted.music.base import Audio

SR = 48000


def _sine(freq: float, seconds: float, amp: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def test_k_weighting_matches_the_bs1770_table_at_48k() -> None:
    (b1, a1), (b2, a2) = k_weighting_filters(48000)
    np.testing.assert_allclose(b1, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-8)
    np.testing.assert_allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-8)
    np.testing.assert_allclose(b2, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-8)


def test_one_channel_full_scale_997hz_sine_reads_minus_3_01_lkfs() -> None:
    # BS.1770-4: a 0 dBFS 1 kHz sine applied to one channel reads -3.01 LKFS.
    s = _sine(997, 10, 1.0)
    stereo = np.stack([s, np.zeros_like(s)], axis=1)
    assert integrated_loudness(stereo, SR) == pytest.approx(-3.01, abs=0.02)


def test_both_channels_minus_20_dbfs_sine_reads_minus_20_lufs() -> None:
    # Two channels each at -3.01 LKFS-per-channel-equivalent sum to 0 LKFS at full scale;
    # at -20 dBFS peak that is -20 LUFS.
    s = _sine(997, 10, 10 ** (-20 / 20))
    assert integrated_loudness(np.stack([s, s], axis=1), SR) == pytest.approx(-20.0, abs=0.02)


def test_gating_ignores_silence() -> None:
    s = _sine(997, 10, 0.1)
    padded = np.concatenate([s, np.zeros(SR * 20)])
    # Blocks straddling the edge still count (partly silent), hence ~0.07 LU of slack.
    assert integrated_loudness(padded, SR) == pytest.approx(integrated_loudness(s, SR), abs=0.1)
    assert integrated_loudness(np.zeros((SR * 2, 2)), SR) == float("-inf")


def test_true_peak_sees_intersample_peaks() -> None:
    # fs/4 sine with 45 degree phase: samples sit at 0.707 of the true peak (-3 dB).
    n = np.arange(SR)
    x = np.sin(np.pi / 2 * n + np.pi / 4)
    sample_peak_db = 20 * np.log10(np.abs(x).max())
    assert sample_peak_db == pytest.approx(-3.01, abs=0.05)
    assert true_peak_dbtp(x, SR) == pytest.approx(0.0, abs=0.2)


def _music_like(sr: int = 44100, seconds: float = 15) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(int(sr * seconds)) / sr
    tone = 0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2
    clicks = np.zeros_like(t)
    clicks[:: sr // 2] = 0.9  # sharp transients that the limiter has to catch
    noise = 0.02 * rng.standard_normal(t.size)
    left = tone + clicks + noise
    right = tone + 0.5 * clicks - noise
    return np.stack([left, right], axis=1).astype(np.float32)


@pytest.mark.parametrize("scale", [0.05, 1.0])
def test_normalize_reaches_target_and_respects_true_peak(scale: float) -> None:
    sr = 44100
    out = normalize_loudness(Audio(_music_like(sr) * scale, sr))
    assert out.samples.dtype == np.float32
    assert out.samples.shape == (int(sr * 15), 2)
    assert integrated_loudness(out.samples, sr) == pytest.approx(-14.0, abs=0.5)
    assert true_peak_dbtp(out.samples, sr) <= -1.0


def test_normalize_leaves_silence_alone() -> None:
    silent = Audio(np.zeros((44100, 2), np.float32), 44100)
    assert normalize_loudness(silent) is silent


TAGS = Tags(title="Test Song", genre="jazz", lyrics="[Verse]\nla la la\n[Chorus]\noh oh",
            bpm=120, key="A minor", comment="a relaxing jazz song", date="2026-01-02T03:04:05")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_encode_round_trips_and_tags(fmt: str, tmp_path: pathlib.Path) -> None:
    import mutagen

    sr = 44100
    audio = Audio((_music_like(sr, 3) * 0.5).astype(np.float32), sr)
    out = encode(audio, tmp_path / "song", fmt, TAGS)
    assert out == tmp_path / f"song{FORMATS[fmt]}"
    assert out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left behind

    data, rate = sf.read(out, dtype="float32", always_2d=True)
    assert rate == sr and data.shape[1] == 2
    # Lossy codecs may pad a frame; the duration must still agree to within ~50 ms.
    assert abs(data.shape[0] - audio.samples.shape[0]) <= (0 if fmt in ("flac", "wav") else 0.05 * sr)

    f = mutagen.File(out)
    assert f is not None and f.tags is not None
    if fmt in ("flac", "ogg"):
        assert f["TITLE"] == ["Test Song"]
        assert f["LYRICS"] == [TAGS.lyrics]
        assert f["BPM"] == ["120"]
        assert f["INITIALKEY"] == ["A minor"] and f["KEY"] == ["A minor"]
        assert f["COMMENT"] == [TAGS.comment]
        assert f["ARTIST"] == ["cassetted"] and f["GENRE"] == ["jazz"]
    else:
        t = f.tags
        assert str(t["TIT2"]) == "Test Song"
        assert str(t["TPE1"]) == "cassetted" and str(t["TALB"]) == "cassetted"
        assert str(t["TCON"]) == "jazz"
        assert t.getall("USLT")[0].text == TAGS.lyrics
        assert str(t["TBPM"]) == "120" and str(t["TKEY"]) == "A minor"
        assert t.getall("COMM")[0].text == [TAGS.comment]


def test_encode_rejects_unknown_format(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="unknown format 'aiff'"):
        encode(Audio(np.zeros((100, 2), np.float32), 44100), tmp_path / "x", "aiff", TAGS)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("genre", "mood"), [("rock", "energetic"), ("ambient", "relaxing")])
def test_normalised_engine_render_meets_the_loudness_target(genre: str, mood: str) -> None:
    from cassetted.contract.schemas import SongSpec
    from cassetted.music.builtin.engine import BuiltinEngine

    spec = SongSpec(genre=genre, mood=mood, bpm=100, key="A minor", duration_s=20, seed=3)
    song = BuiltinEngine().generate(spec, lambda f, n: None)
    out = normalize_loudness(song)
    assert out.samples.shape == song.samples.shape and out.samples.dtype == np.float32
    assert integrated_loudness(out.samples, out.sample_rate) == pytest.approx(-14.0, abs=0.5)
    assert true_peak_dbtp(out.samples, out.sample_rate) <= -1.0


def test_encode_keeps_dots_in_names_and_swaps_known_extensions(tmp_path: pathlib.Path) -> None:
    audio = Audio(np.zeros((4410, 2), np.float32), 44100)
    assert encode(audio, tmp_path / "Song 1.5", "flac", TAGS).name == "Song 1.5.flac"
    assert encode(audio, tmp_path / "other.wav", "ogg", TAGS).name == "other.ogg"


# ----------------------------------------------------------------------------- fast true peak


def _reference_peaks(x: np.ndarray) -> np.ndarray:
    """Per-frame 4x-oversampled peak the plain way: every phase over every frame."""
    from cassetted.audio import _interpolation_phases

    x = np.asarray(x, dtype=np.float64)
    out = np.zeros(x.shape[0])
    for ch in range(x.shape[1]):
        for branch in _interpolation_phases():
            np.maximum(out, np.abs(np.convolve(x[:, ch], branch)[: x.shape[0]]), out=out)
    return out


@pytest.mark.parametrize("n", [1, 11, 12, 13, 1000, 44100])
def test_screened_true_peak_equals_full_oversampling(n: int) -> None:
    from cassetted.audio import _frame_peaks

    rng = np.random.default_rng(n)
    x = (rng.standard_normal((n, 2)) * 0.3).astype(np.float32)
    x[rng.integers(0, n, max(1, n // 500))] *= 3.0            # a few loud transients
    ref = _reference_peaks(x)
    assert true_peak_dbtp(x, SR) == pytest.approx(20 * np.log10(ref.max()), abs=1e-9)
    for threshold in (0.0, 0.5, float(np.median(ref)), 0.9 * float(ref.max())):
        got = _frame_peaks(x, threshold)
        over = ref > threshold
        np.testing.assert_allclose(got[over], ref[over], rtol=1e-12)   # exact wherever it can matter
        assert (got[~over] <= threshold).all()


def test_normalize_limits_peaks_at_high_gain() -> None:
    # A quiet tone with clicks 25 dB above it four times a second: reaching -14 LUFS needs
    # ~26 dB of gain, so every click is limited (several passes to restore the loudness).
    sr = 44100
    t = np.arange(sr * 30) / sr
    tone = 0.04 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2
    x = np.stack([tone, tone], axis=1).astype(np.float32)
    x[:: sr // 4] = 0.25
    out = normalize_loudness(Audio(x, sr))
    assert integrated_loudness(out.samples, sr) == pytest.approx(-14.0, abs=0.5)
    assert true_peak_dbtp(out.samples, sr) <= -1.0


def test_limited_loudness_refilters_only_where_the_limiter_acts() -> None:
    from cassetted.audio import _block_powers, _k_steps, _Limit, _limited_powers

    sr = 44100
    x = _music_like(sr, seconds=40)
    rng = np.random.default_rng(3)
    stretches = [(int(lo), int(lo) + 3000) for lo in sorted(rng.choice(x.shape[0] - 3000, 6, replace=False))]
    stretches.append((x.shape[0] - 500, x.shape[0]))                 # one at the very end
    limit = _Limit(np.array([lo for lo, _ in stretches]), np.array([hi for _, hi in stretches]),
                   [rng.uniform(0.3, 1.0, hi - lo).astype(np.float32) for lo, hi in stretches])
    dense = np.ones(x.shape[0], dtype=np.float32)
    for lo, hi, g in zip(limit.lo, limit.hi, limit.gains, strict=True):
        dense[lo:hi] = g
    want = _block_powers(x.astype(np.float64) * dense[:, None], sr)
    got = _limited_powers(x, sr, _k_steps(x, sr), limit)
    np.testing.assert_allclose(got, want, rtol=1e-7)
    assert np.array_equal(limit.over(0, x.shape[0]), dense)


def test_sparse_peaks_agree_with_the_dense_ones() -> None:
    from cassetted.audio import _frame_peaks, _sparse_peaks

    rng = np.random.default_rng(5)
    x = (rng.standard_normal((30000, 2)) * 0.2).astype(np.float32)
    x[rng.integers(0, 30000, 40)] *= 4.0
    dense = _frame_peaks(x, 0.6)
    frames, values = _sparse_peaks(x, 0.6)
    assert np.array_equal(np.flatnonzero(dense),
                          np.flatnonzero(np.isin(np.arange(30000), frames) & (dense > 0)))
    np.testing.assert_array_equal(dense[frames], values)
    blocks = np.array([0, 7, 8, 2499])
    f2, v2 = _sparse_peaks(x, 0.0, blocks=blocks)
    assert np.array_equal(f2, (blocks[:, None] * 12 + np.arange(12)).ravel())
    np.testing.assert_allclose(v2, _reference_peaks(x)[f2], rtol=1e-12)
