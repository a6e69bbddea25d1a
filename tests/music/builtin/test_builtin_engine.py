"""The built-in engine, judged by what can be measured in its audio.

Tempo is checked with librosa's beat tracker at its default tempo prior (no start_bpm
hint), key with a Krumhansl-Schmuckler estimate over CQT chroma, form with section RMS.
Songs are kept short (20 s) so the whole module runs in about a minute on 2 cores.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cassetted.contract.schemas import GENRES, SongSpec
from cassetted.music.base import Audio, Cancelled
from cassetted.music.builtin.arrange import arrange
from cassetted.music.builtin.engine import BuiltinEngine
from cassetted.music.builtin.form import lyric_sections, plan_form
from cassetted.music.styles import GENRE_BPM

librosa = pytest.importorskip("librosa")

SR = 44100
ANALYSIS_SR = 22050
ENGINE = BuiltinEngine(SR)


def _spec(**kw) -> SongSpec:
    base = {"genre": "pop", "mood": "uplifting", "bpm": 110, "key": "C major", "duration_s": 20.0, "seed": 7}
    base.update(kw)
    return SongSpec(**base)


def _render(spec: SongSpec) -> Audio:
    return ENGINE.generate(spec, lambda fraction, note: None)


def _mono(audio: Audio) -> np.ndarray:
    return librosa.resample(audio.samples.mean(axis=1).astype(np.float64), orig_sr=audio.sample_rate,
                            target_sr=ANALYSIS_SR)


# ----------------------------------------------------------------------------- basic contract


@pytest.mark.parametrize(("duration", "genre", "ts"), [
    (10.0, "rock", "4/4"), (37.3, "jazz", "3/4"), (90.0, "electronic", "4/4"),
    (12.5, "classical", "6/8"), (10.0, "country", "2/4"), (37.3, "ambient", "4/4"),
])
def test_shape_dtype_and_peak(duration: float, genre: str, ts: str) -> None:
    audio = _render(_spec(genre=genre, duration_s=duration, time_signature=ts))
    x = audio.samples
    assert audio.sample_rate == SR
    assert x.shape == (round(duration * SR), 2)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()
    assert 0.1 < np.abs(x).max() < 1.0


@pytest.mark.parametrize("bpm", [30, 300])
def test_extreme_tempi_render(bpm: int) -> None:
    audio = _render(_spec(bpm=bpm, duration_s=10.0, genre="hip-hop"))
    assert audio.samples.shape == (10 * SR, 2)
    assert np.abs(audio.samples).max() < 1.0


def test_deterministic_for_a_seed() -> None:
    spec = _spec(genre="jazz", lyrics="[Verse]\nla la la la\n[Chorus]\noh yeah oh yeah")
    a = _render(spec).samples
    b = BuiltinEngine(SR).generate(spec, lambda f, n: None).samples
    assert np.array_equal(a, b)
    c = _render(spec.model_copy(update={"seed": 8})).samples
    assert not np.array_equal(a, c)


def test_progress_is_monotonic_and_ends_at_one() -> None:
    seen: list[float] = []
    ENGINE.generate(_spec(duration_s=30.0), lambda f, n: seen.append(f))
    assert len(seen) >= 10
    assert all(b >= a for a, b in itertools.pairwise(seen))
    assert seen[0] >= 0.0 and seen[-1] == 1.0


def test_cancel_from_progress_aborts() -> None:
    calls = []

    def progress(fraction: float, note: str | None) -> None:
        calls.append(fraction)
        if len(calls) == 4:
            raise Cancelled()

    with pytest.raises(Cancelled):
        ENGINE.generate(_spec(duration_s=30.0), progress)
    assert len(calls) == 4


# ----------------------------------------------------------------------------- tempo


def _tracked_bpm(y: np.ndarray) -> tuple[float, float]:
    """(librosa's global tempo estimate, bpm of the tracked beat grid).

    The beat grid is fitted by least squares over the beat indices (gaps from dropped beats
    are bridged by rounding to the median interval), which avoids the ~1-2 % lag
    quantisation of the global estimate; no tempo hint is given to the tracker.
    """
    tempo, beats = librosa.beat.beat_track(y=y, sr=ANALYSIS_SR, hop_length=256, units="time")
    beats = np.asarray(beats)
    assert beats.size >= 8, "beat tracker found no pulse"
    period = np.median(np.diff(beats))
    index = np.round((beats - beats[0]) / period)
    slope = np.polyfit(index, beats, 1)[0]
    return float(np.atleast_1d(tempo)[0]), 60.0 / slope


_TEMPO_CASES = [
    (genre, bpm, mood)
    for genre in GENRES
    for bpm, mood in zip(
        (GENRE_BPM[genre][0], sum(GENRE_BPM[genre]) // 2, GENRE_BPM[genre][1]),
        ("relaxing", "uplifting", "energetic"), strict=True,
    )
]


@pytest.mark.parametrize(("genre", "bpm", "mood"), _TEMPO_CASES)
def test_beat_tracker_recovers_bpm(genre: str, bpm: int, mood: str) -> None:
    y = _mono(_render(_spec(genre=genre, bpm=bpm, mood=mood, seed=bpm)))
    estimate, grid = _tracked_bpm(y)
    # The global estimate is on a lag grid (~1-2 % steps) but must not be an octave off.
    assert estimate == pytest.approx(bpm, rel=0.03)
    assert grid == pytest.approx(bpm, rel=0.02)


def test_off_range_tempo_has_no_octave_error() -> None:
    # Electronic at 80 bpm: off-beat bass and hats would invite a 160 bpm reading.
    _estimate, grid = _tracked_bpm(_mono(_render(_spec(genre="electronic", bpm=80))))
    assert grid == pytest.approx(80, rel=0.02)


# ----------------------------------------------------------------------------- key

_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_KS_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KS_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _estimate_key(y: np.ndarray) -> str:
    """Krumhansl-Schmuckler: the key profile best correlated with the mean chroma.

    Drums are first removed by harmonic/percussive separation, as key detectors do: a
    kick's pitch sweep is pitched noise that says nothing about the key.
    """
    harmonic = librosa.effects.harmonic(y)
    chroma = librosa.feature.chroma_cqt(y=harmonic, sr=ANALYSIS_SR).mean(axis=1)
    scores = {}
    for tonic in range(12):
        for mode, profile in (("major", _KS_MAJOR), ("minor", _KS_MINOR)):
            scores[f"{_NAMES[tonic]} {mode}"] = np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]
    return max(scores, key=scores.get)


_KEY_CASES = [
    ("rock", "E minor", "energetic"), ("rock", "G major", "uplifting"),
    ("pop", "C major", "uplifting"), ("pop", "F# minor", "melancholic"),
    ("jazz", "Bb major", "relaxing"), ("jazz", "D minor", "melancholic"),
    ("electronic", "A minor", "energetic"), ("electronic", "Eb major", "uplifting"),
    ("classical", "D major", "uplifting"), ("classical", "C minor", "melancholic"),
    ("hip-hop", "G minor", "relaxing"), ("hip-hop", "Ab major", "energetic"),
    ("country", "A major", "uplifting"), ("country", "B minor", "melancholic"),
    ("ambient", "F major", "relaxing"), ("ambient", "C# minor", "melancholic"),
]


@pytest.mark.parametrize(("genre", "key", "mood"), _KEY_CASES)
def test_key_is_detectable(genre: str, key: str, mood: str) -> None:
    spec = _spec(genre=genre, key=key, mood=mood, bpm=sum(GENRE_BPM[genre]) // 2, seed=11)
    assert _estimate_key(_mono(_render(spec))) == key


# ----------------------------------------------------------------------------- form

_LYRICS = """[Intro]
[Verse]
Morning light across the kitchen floor
Coffee steaming like it did before
[Chorus]
Sing it loud, sing it proud
Every voice above the crowd
[Verse]
Keys are jingling by the door
Shoes are waiting like before
[Chorus]
Sing it loud, sing it proud
Every voice above the crowd
[Outro]
"""


def test_form_follows_lyrics_and_choruses_are_louder() -> None:
    spec = _spec(genre="pop", mood="energetic", bpm=120, duration_s=64.0, lyrics=_LYRICS)
    arr = arrange(spec.genre, spec.mood, spec.bpm, spec.key, spec.time_signature, spec.duration_s,
                  spec.lyrics, spec.instrumental, np.random.default_rng(0))
    assert [s.kind for s in arr.sections] == ["intro", "verse", "chorus", "verse", "chorus", "outro"]

    x = _render(spec).samples
    bar_s = 60.0 / spec.bpm * arr.meter.beats_per_bar

    def rms_db(kind: str) -> float:
        chunks = [x[int(s.start_bar * bar_s * SR):int((s.start_bar + s.bars) * bar_s * SR)]
                  for s in arr.sections if s.kind == kind]
        sig = np.concatenate(chunks)
        return 10 * np.log10(np.mean(sig.astype(np.float64) ** 2))

    assert rms_db("chorus") > rms_db("verse") + 1.0
    assert rms_db("verse") > rms_db("intro")


def test_lyric_tags_parse() -> None:
    secs = lyric_sections("[Verse 1]\na\nb\n[Pre-Chorus]\nc\n[Hook]\nd\n[Bridge]\ne\n[Outro]")
    assert [k for k, _ in secs] == ["verse", "verse", "chorus", "bridge", "outro"]
    assert secs[0][1] == ["a", "b"]
    assert lyric_sections("just words\nno tags") == [("verse", ["just words", "no tags"])]


@pytest.mark.parametrize("bars", [1, 3, 5, 12, 40, 97, 300])
def test_plan_form_fills_exactly(bars: int) -> None:
    form = plan_form(["verse", "chorus", "verse", "chorus", "bridge", "chorus"], bars)
    assert sum(s.bars for s in form) == bars
    assert all(s.bars >= 1 for s in form)
    assert [s.start_bar for s in form] == list(np.cumsum([0] + [s.bars for s in form[:-1]]))


def test_instrumental_lyrics_give_the_default_form() -> None:
    spec = _spec(lyrics="[Instrumental]", duration_s=60.0)
    arr = arrange(spec.genre, spec.mood, spec.bpm, spec.key, spec.time_signature, spec.duration_s,
                  spec.lyrics, spec.instrumental, np.random.default_rng(0))
    kinds = [s.kind for s in arr.sections]
    assert kinds[0] == "intro" and kinds[-1] == "outro" and "chorus" in kinds and "bridge" in kinds


# ----------------------------------------------------------------------------- mood


@pytest.mark.parametrize("genre", GENRES)
def test_mood_changes_brightness_and_density(genre: str) -> None:
    def features(mood: str) -> tuple[float, int]:
        y = _mono(_render(_spec(genre=genre, mood=mood, bpm=110, seed=5)))
        centroid = float(librosa.feature.spectral_centroid(y=y, sr=ANALYSIS_SR).mean())
        return centroid, len(librosa.onset.onset_detect(y=y, sr=ANALYSIS_SR))

    calm_centroid, calm_onsets = features("relaxing")
    lively_centroid, lively_onsets = features("energetic")
    assert lively_centroid > calm_centroid * (1.2 if genre not in ("classical", "ambient") else 1.05)
    if genre in ("rock", "pop", "country", "hip-hop"):     # hats and comping thin out when calm
        assert lively_onsets > calm_onsets


# ----------------------------------------------------------------------------- voice


def test_lyrics_are_sung_and_instrumental_is_not() -> None:
    from cassetted.music.builtin.voice import vowels

    assert vowels("[Verse]\nMorning light\n\n[Chorus]\nSing it") == ["o", "i", "i", "i", "i"]
    args = ("pop", "uplifting", 110, "C major", "4/4", 40.0, _LYRICS)
    sung = arrange(*args, False, np.random.default_rng(0))
    played = arrange(*args, True, np.random.default_rng(0))
    assert sung.parts["vocal"] and not played.parts["vocal"]
    # Only sections with lyric lines are sung.
    bpb = sung.meter.beats_per_bar
    for note in sung.parts["vocal"]:
        assert sung.section_of_bar[int(note.start // bpb)].kind in ("verse", "chorus")

    a = _render(_spec(lyrics=_LYRICS, duration_s=20.0)).samples
    b = _render(_spec(lyrics=_LYRICS, duration_s=20.0, instrumental=True)).samples
    assert not np.array_equal(a, b)


# ----------------------------------------------------------------------------- render shortcuts


@pytest.mark.parametrize(("genre", "mood"), [("electronic", "relaxing"), ("rock", "uplifting"),
                                         ("classical", "melancholic")])
def test_master_filter_moved_into_the_sources_sounds_the_same(genre: str, mood: str) -> None:
    # Filtering each drum sample and distinct note instead of the finished mix is the same
    # linear filter; what differs is float32 rounding (the song-length float32 high-pass
    # itself is only ~-68 dB from a float64 one).
    spec = _spec(genre=genre, mood=mood, duration_s=15.0)
    folded = _render(spec).samples
    engine = BuiltinEngine(SR)
    engine.fold_master = False
    whole = engine.generate(spec, lambda f, n: None).samples
    err = np.sqrt(np.mean((folded - whole) ** 2)) / np.sqrt(np.mean(whole ** 2))
    assert 20 * np.log10(err) < -60


def test_sidechain_follows_the_beat_exactly() -> None:
    from cassetted.music.builtin.synth import sidechain_inplace

    sr, beat_s, depth, release = 44100, 60 / 127, 0.35, 0.12
    x = np.ones(5 * sr, dtype=np.float32)
    sidechain_inplace(x, sr, beat_s, depth, release)
    t = np.arange(x.size) / sr
    want = 1.0 - depth * np.exp(-np.mod(t, beat_s) / release)
    # Equal to float32 precision, except where a sample sits within rounding of a beat.
    off_beat = np.abs((t + beat_s / 2) % beat_s - beat_s / 2) > 1e-9
    np.testing.assert_allclose(x[off_beat], want[off_beat], atol=1e-6)


def test_notes_match_the_direct_oscillator_formula() -> None:
    from cassetted.music.builtin.engine import STRINGS
    from cassetted.music.builtin.synth import _TABLE_SIZE, _envelope, _note_wave, _oscillators, wavetable

    sr, pitch, n_on, n = 44100, 62, 30000, 40000
    wave = _note_wave(_oscillators(pitch, n + 5000, STRINGS, sr), n_on, n, 0.8, STRINGS, sr)
    t = np.arange(n) / sr
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    depth = np.clip((t - STRINGS.vibrato_delay) / 0.3, 0, 1) * STRINGS.vibrato_cents / 1200
    vib = (depth * f0 * np.log(2) * np.sin(2 * np.pi * STRINGS.vibrato_hz * t)
           / (2 * np.pi * STRINGS.vibrato_hz))
    want = np.zeros(n)
    for cents in STRINGS.detune_cents:
        f = f0 * 2 ** (cents / 1200)
        table = wavetable("saw", 1 << (min(24, int(0.45 * sr / f)).bit_length() - 1))
        want += table[((f * t + vib) * _TABLE_SIZE).astype(np.int64) & (_TABLE_SIZE - 1)]
    want *= _envelope(n_on, n, sr, STRINGS) * 0.8 / len(STRINGS.detune_cents)
    # A phase landing exactly on a table step may round either way: a few lone samples.
    close = np.abs(wave - want) < 1e-5
    assert close.mean() > 0.999
