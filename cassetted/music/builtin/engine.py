"""The built-in engine: a CPU-only, weight-free song generator in plain numpy.

It arranges (form, chords, drums, bass, comping, pads, melody — `_arrange`), synthesises
each part (`_synth`, `_drums`) and mixes them with panning, filters and a convolution
reverb. A seed fixes everything: the generator is seeded from `spec.seed` only, so the same
spec renders bit-identical audio on every run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cassetted.contract.schemas import SongSpec
from cassetted.music.base import Audio, ProgressCallback
from cassetted.music.builtin import drums as _drums
from cassetted.music.builtin import synth as _synth
from cassetted.music.builtin import voice as _voice
from cassetted.music.builtin.arrange import MOODS, Arrangement, arrange
from cassetted.music.builtin.synth import Layer, Patch
from cassetted.music.builtin.theory import parse_key

L = Layer

# --------------------------------------------------------------------------- instruments

PIANO = Patch((L("tri", 8, 1.0), L("saw", 24, 0.5, decay_s=0.12),
               L("sine", 1, 0.3, decay_s=0.4, octave=1)),
              attack=0.002, decay=0.5, sustain=0.25, release=0.25)
E_PIANO = Patch((L("sine", 1, 1.0), L("sine", 1, 0.45, decay_s=0.25, octave=1),
                 L("tri", 8, 0.25, decay_s=0.6)),
                attack=0.003, decay=0.7, sustain=0.35, release=0.3)
GUITAR_POWER = Patch((L("saw", 32, 1.0), L("square", 16, 0.5)), attack=0.003, decay=0.5, sustain=0.75,
                     release=0.05, drive=3.0, detune_cents=(-4.0, 4.0))
GUITAR_ACOUSTIC = Patch((L("saw", 24, 0.8, decay_s=0.12), L("tri", 12, 1.0)), attack=0.002, decay=0.3,
                        sustain=0.12, release=0.15)
STAB = Patch((L("saw", 32, 1.0),), detune_cents=(-9.0, 9.0), attack=0.002, decay=0.12, sustain=0.15,
             release=0.08)
GLASS = Patch((L("sine", 1, 1.0), L("sine", 1, 0.4, decay_s=0.5, octave=1),
               L("tri", 4, 0.2, decay_s=0.2, octave=2)),
              attack=0.002, decay=0.9, sustain=0.1, release=1.0)

PAD_SAW = Patch((L("saw", 16, 1.0),), detune_cents=(-11.0, 0.0, 11.0), attack=0.35, decay=1.0, sustain=0.85,
                release=0.9)
PAD_WARM = Patch((L("tri", 8, 1.0), L("sine", 1, 0.5, octave=-1)), detune_cents=(-7.0, 7.0), attack=0.9,
                 decay=2.0, sustain=0.9, release=1.8)
STRINGS = Patch((L("saw", 24, 1.0),), detune_cents=(-6.0, 6.0), attack=0.18, decay=1.0, sustain=0.85,
                release=0.5, vibrato_hz=5.2, vibrato_cents=12, vibrato_delay=0.2)
ORGAN = Patch((L("organ", 8, 1.0),), attack=0.02, decay=1.0, sustain=0.9, release=0.1)

BASS_ELECTRIC = Patch((L("sine", 1, 1.0), L("saw", 12, 0.45, decay_s=0.25)), attack=0.004, decay=0.4,
                      sustain=0.6, release=0.06)
BASS_ROCK = Patch((L("sine", 1, 1.0), L("saw", 16, 0.6, decay_s=0.3)), attack=0.003, decay=0.4, sustain=0.7,
                  release=0.05, drive=1.8)
BASS_UPRIGHT = Patch((L("sine", 1, 1.0), L("tri", 8, 0.5, decay_s=0.12)), attack=0.006, decay=0.35,
                     sustain=0.3, release=0.08)
BASS_SYNTH = Patch((L("saw", 16, 0.8), L("square", 8, 0.5)), attack=0.003, decay=0.15,
                   sustain=0.4, release=0.05)
BASS_808 = Patch((L("sine", 1, 1.0), L("tri", 4, 0.2)), attack=0.003, decay=1.2, sustain=0.6, release=0.1,
                 drive=1.6)
BASS_CELLO = Patch((L("saw", 24, 1.0),), attack=0.06, decay=1.0, sustain=0.8, release=0.25,
                   vibrato_hz=5.0, vibrato_cents=10)
BASS_DRONE = Patch((L("sine", 1, 1.0), L("tri", 4, 0.3)), attack=0.8, decay=2.0, sustain=0.9, release=1.5)

LEAD_SYNTH = Patch((L("square", 16, 0.6), L("saw", 16, 0.5)), attack=0.01, decay=0.3, sustain=0.7,
                   release=0.12, vibrato_hz=5.5, vibrato_cents=15, vibrato_delay=0.3)
LEAD_GUITAR = Patch((L("saw", 32, 1.0),), attack=0.005, decay=0.6, sustain=0.7, release=0.1, drive=3.0,
                    vibrato_hz=5.5, vibrato_cents=25, vibrato_delay=0.25)
LEAD_SAX = Patch((L("reed", 24, 1.0),), attack=0.03, decay=0.5, sustain=0.8, release=0.1,
                 vibrato_hz=5.0, vibrato_cents=20, vibrato_delay=0.2)
LEAD_SAW = Patch((L("saw", 32, 1.0),), detune_cents=(-7.0, 7.0), attack=0.005, decay=0.3, sustain=0.6,
                 release=0.1)
LEAD_FLUTE = Patch((L("sine", 1, 1.0), L("tri", 8, 0.3)), attack=0.05, decay=0.6, sustain=0.85, release=0.12,
                   vibrato_hz=5.0, vibrato_cents=14, vibrato_delay=0.2)
LEAD_BELL = Patch((L("sine", 1, 1.0), L("sine", 1, 0.35, decay_s=0.3, octave=2)), attack=0.002, decay=0.6,
                  sustain=0.3, release=0.3)
LEAD_FIDDLE = Patch((L("saw", 24, 1.0),), attack=0.04, decay=0.6, sustain=0.8, release=0.1,
                    vibrato_hz=6.0, vibrato_cents=20, vibrato_delay=0.15)

# Per genre: patch for each part, mix gain, pan, low-pass cutoff (Hz at full brightness) and
# reverb send; plus the room (RT60 seconds) and how wet the whole song is.
_PartMix = tuple[Patch, float, float, float, float]
GENRE_SOUND: dict[str, dict[str, _PartMix]] = {
    "rock": {"bass": (BASS_ROCK, 0.75, 0.0, 2500, 0.0), "comp": (GUITAR_POWER, 0.32, -0.35, 5000, 0.15),
             "pad": (ORGAN, 0.16, 0.3, 3000, 0.3), "lead": (LEAD_GUITAR, 0.3, 0.25, 5000, 0.3)},
    "pop": {"bass": (BASS_ELECTRIC, 0.75, 0.0, 2000, 0.0), "comp": (PIANO, 0.35, -0.25, 6000, 0.25),
            "pad": (PAD_SAW, 0.2, 0.0, 4000, 0.4), "lead": (LEAD_SYNTH, 0.3, 0.15, 6000, 0.3)},
    "jazz": {"bass": (BASS_UPRIGHT, 0.85, 0.1, 1500, 0.05), "comp": (E_PIANO, 0.4, -0.3, 4000, 0.25),
             "pad": (PAD_WARM, 0.0, 0.0, 2000, 0.3), "lead": (LEAD_SAX, 0.3, 0.25, 4500, 0.3)},
    "electronic": {"bass": (BASS_SYNTH, 0.36, 0.0, 1200, 0.0), "comp": (STAB, 0.3, -0.2, 5000, 0.3),
                   "pad": (PAD_SAW, 0.36, 0.0, 3500, 0.5), "lead": (LEAD_SAW, 0.25, 0.15, 6000, 0.35)},
    "classical": {"bass": (BASS_CELLO, 0.5, -0.2, 1800, 0.3), "comp": (PIANO, 0.45, 0.2, 5000, 0.35),
                  "pad": (STRINGS, 0.14, 0.0, 3500, 0.5), "lead": (LEAD_FLUTE, 0.3, -0.1, 6000, 0.45)},
    "hip-hop": {"bass": (BASS_808, 0.55, 0.0, 900, 0.0), "comp": (E_PIANO, 0.45, -0.2, 3500, 0.25),
                "pad": (PAD_WARM, 0.22, 0.0, 2500, 0.4), "lead": (LEAD_BELL, 0.22, 0.2, 6000, 0.35)},
    "country": {"bass": (BASS_ELECTRIC, 0.7, 0.0, 2000, 0.0),
                "comp": (GUITAR_ACOUSTIC, 0.38, -0.3, 6000, 0.2),
                "pad": (PAD_WARM, 0.0, 0.0, 2000, 0.3), "lead": (LEAD_FIDDLE, 0.28, 0.3, 6000, 0.3)},
    "ambient": {"bass": (BASS_DRONE, 0.55, 0.0, 1000, 0.2), "comp": (GLASS, 0.3, 0.2, 5000, 0.6),
                "pad": (PAD_WARM, 0.35, 0.0, 2500, 0.7), "lead": (LEAD_FLUTE, 0.18, -0.2, 4000, 0.7)},
}
ROOM: dict[str, tuple[float, float]] = {  # rt60 seconds, master wet level
    "rock": (1.2, 0.18), "pop": (1.4, 0.2), "jazz": (1.5, 0.22), "electronic": (1.8, 0.2),
    "classical": (2.4, 0.35), "hip-hop": (1.0, 0.15), "country": (1.2, 0.18), "ambient": (4.0, 0.5),
}
DRUM_GAIN: dict[str, float] = {
    "rock": 0.95, "pop": 0.85, "jazz": 0.6, "electronic": 0.85, "classical": 0.0, "hip-hop": 1.0,
    "country": 0.75, "ambient": 0.4,
}
VOICE_GAIN = 0.7
_PEAK = 0.89   # about -1 dBFS of sample peak before the loudness stage takes over
# The send bus is mono: a centred source used to reach each ear's reverb at sqrt(1/2).
_SEND_LEVEL = float(np.sqrt(0.5))


def _master_sos(sr: int, brightness: float) -> np.ndarray:
    """The master bus filter: a rumble cut, and a mood tilt (calm moods are darker)."""
    top = 5000.0 + 15000.0 * brightness
    sos = _synth.highpass_sos(sr, 25.0)
    if top < 0.4 * sr:
        sos = np.vstack([sos, _synth.lowpass_sos(sr, top, order=1)])
    return sos


class _Progress:
    """Turns stage-local progress into one monotonic 0..1 stream for the callback."""

    def __init__(self, callback: ProgressCallback) -> None:
        self._cb = callback
        self._last = 0.0

    def __call__(self, fraction: float, note: str | None = None) -> None:
        fraction = min(1.0, max(self._last, fraction))
        self._last = fraction
        self._cb(fraction, note)

    def ticker(self, start: float, end: float, total: int, note: str) -> Callable[[], None]:
        """A tick() for a loop of `total` items mapped onto [start, end]."""
        count = [0]
        step = 64

        def tick() -> None:
            count[0] += step
            self(start + (end - start) * min(1.0, count[0] / max(1, total)), note)
        return tick


class BuiltinEngine:
    """Arranges and synthesises a full song on the CPU; see the module docstring."""

    name = "builtin"
    # A cover is a render of the source's spec with what the request changed (a karaoke
    # remix at a new tempo: same seed, key and lyrics); repainting needs a model.
    tasks = frozenset({"text2music", "cover"})

    # Whether the master filter may move into the sources (see generate); False filters the
    # finished mix, as a sung song does: the same sound, for comparison.
    fold_master = True

    def __init__(self, sample_rate: int = 44100) -> None:
        self.sample_rate = sample_rate

    def generate(self, spec: SongSpec, progress: ProgressCallback) -> Audio:
        sr = self.sample_rate
        report = _Progress(progress)
        report(0.0, "arranging")
        arr_seed, kit_seed, fx_seed, voice_seed = np.random.SeedSequence(spec.seed).spawn(4)
        n_frames = round(spec.duration_s * sr)
        beat_s = 60.0 / spec.bpm
        mood = MOODS[spec.mood]

        arr = arrange(spec.genre, spec.mood, spec.bpm, spec.key, spec.time_signature, spec.duration_s,
                      spec.lyrics, spec.instrumental, np.random.default_rng(arr_seed))
        report(0.05, "arranged")
        # The master filter is linear and time-invariant, and comes before anything that is
        # not (saturation): applied to each drum sample and each distinct note (which the
        # parts filter anyway) instead of to the finished mix, it costs the sounds, not the
        # song length. The reverb then hears filtered sends, as the room's output would be.
        # A sung song adds the voice unfiltered, so there the mix is filtered as a whole.
        master_sos = _master_sos(sr, mood.brightness)
        fold = self.fold_master and not arr.parts["vocal"]

        # Channel-major buses (2, frames): contiguous channels make the many adds cheap;
        # float32 halves the memory of a 10-minute song. The reverb send is mono (one room
        # for the whole band; the stereo IR gives it width). Parts render into one reused
        # buffer: every fresh song-length array costs page faults as well as memory.
        mix = np.zeros((2, n_frames), dtype=np.float32)
        send = np.zeros(n_frames, dtype=np.float32)
        part = np.empty(n_frames, dtype=np.float32)

        # Drums.
        tonic_pc, _ = parse_key(spec.key)
        self._drums(mix, send, arr, spec.genre, tonic_pc, beat_s, mood.punch, np.random.default_rng(kit_seed),
                    report, master_sos if fold else None)
        report(0.25, "drums")

        # Pitched parts: each rendered, filtered by the mood's brightness, panned.
        sound = GENRE_SOUND[spec.genre]
        stages = [("bass", 0.25, 0.38), ("comp", 0.38, 0.55), ("pad", 0.55, 0.7), ("lead", 0.7, 0.78)]
        for name, p0, p1 in stages:
            patch, gain, position, cutoff, rev = sound[name]
            notes = arr.parts[name]
            if gain <= 0 or not notes:
                report(p1, name)
                continue
            tick = report.ticker(p0, p1, len(notes), name)
            sos = _synth.lowpass_sos(sr, cutoff * (0.2 + 0.8 * mood.brightness))
            if name == "bass":
                sos = np.vstack([sos, _synth.highpass_sos(sr, 30.0)])
            ducked = spec.genre == "electronic" and name in ("bass", "pad")
            if fold and not ducked:
                sos = np.vstack([sos, master_sos])
            mono = _synth.render_notes(notes, patch, sr, beat_s, n_frames, tick, out=part, sos=sos)
            if ducked:
                _synth.sidechain_inplace(mono, sr, beat_s, depth=0.35 if name == "pad" else 0.3)
                if fold:                                  # ducking is time-varying: filter after it
                    _synth.filter_inplace(mono, master_sos)
            send_gain = gain * rev * mood.space * _SEND_LEVEL
            if name == "pad":
                _synth.widen_into(mix, mono, sr, gain)
                _synth.axpy(send, mono, send_gain)
            else:
                _synth.pan_into(mix, mono, position, gain, send=send, send_gain=send_gain)
                if name == "lead" and spec.genre in ("ambient", "electronic", "pop"):
                    # Echoes on the beat: a dotted-eighth delay would add a competing 3:2 pulse.
                    _synth.echo_into(mix, mono, sr, beat_s, 0.45, 0.35 * gain)
                    _synth.echo_into(send, mono, sr, beat_s, 0.45, 0.35 * send_gain)
            report(p1, name)
        del part

        # Voice: sings the melody of the sections that have lyrics, on their words (a Piper
        # voice, when installed) or on their vowels.
        if arr.parts["vocal"]:
            tick = report.ticker(0.78, 0.86, len(arr.parts["vocal"]), "vocal")
            voice = _voice.sing(arr, spec.lyrics, spec.language, sr, beat_s, n_frames,
                                np.random.default_rng(voice_seed), tick)
            _synth.pan_into(mix, voice, 0.0, VOICE_GAIN)
            _synth.axpy(send, voice, VOICE_GAIN * 0.35 * mood.space * _SEND_LEVEL)
            del voice
        report(0.86, "vocal")

        # Room.
        rt60, wet = ROOM[spec.genre]
        fx_rng = np.random.default_rng(fx_seed)
        ir = _synth.reverb_ir(sr, fx_rng, rt60 * (0.8 + 0.3 * mood.space), mood.brightness)
        _synth.reverb_into(mix, send, ir, wet * 4.0)
        del send
        report(0.93, "reverb")

        out = self._master(mix, sr, None if fold else master_sos)
        report(1.0, "done")
        return Audio(samples=out, sample_rate=sr)

    def _drums(self, mix: np.ndarray, send: np.ndarray, arr: Arrangement, genre: str, tonic_pc: int,
               beat_s: float, punch: float, rng: np.random.Generator, report: _Progress,
               sos: np.ndarray | None = None) -> None:
        """Add every drum hit, panned, to the mix and the reverb send.

        Each hit is its drum's sample added at an exact offset, straight into the buses:
        no song-length track per drum, so the cost follows the hits, not the song length.
        `sos`, when given, filters every sample once (with its ringing tail).
        """
        sr = self.sample_rate
        n_frames = mix.shape[1]
        kit = _drums.kit(sr, rng, punch=1.0 if genre != "jazz" else 0.5, tonic_pc=tonic_pc)
        names = sorted({h.drum for h in arr.hits})
        for i, name in enumerate(names):
            sample = kit[name].astype(np.float32)
            if sos is not None:
                sample = _synth.filter_with_tail(sample, sos)
            gain = DRUM_GAIN[genre] * punch * (0.7 if name in ("hat", "open_hat", "shaker") else 1.0)
            left, right = _synth.pan_gains(_drums.PAN[name])
            # A drum plays at a handful of velocities: each is scaled (panned, and for the
            # send) once, and every hit at it is then two plain adds.
            scaled: dict[float, tuple[np.ndarray, np.ndarray]] = {}
            for hit in arr.hits:
                if hit.drum != name:
                    continue
                start = round(hit.start * beat_s * sr)
                if not 0 <= start < n_frames:
                    continue
                n = min(sample.size, n_frames - start)
                pair = scaled.get(hit.vel)
                if pair is None:
                    g = gain * hit.vel
                    pair = scaled[hit.vel] = (
                        sample * np.array([[g * left], [g * right]], dtype=np.float32),
                        sample * np.float32(g * 0.08 * _SEND_LEVEL))
                mix[:, start:start + n] += pair[0][:, :n]
                send[start:start + n] += pair[1][:n]
            report(0.05 + 0.2 * (i + 1) / len(names), "drums")

    @staticmethod
    def _master(mix: np.ndarray, sr: int, sos: np.ndarray | None) -> np.ndarray:
        """The master filter `sos` (None where the sources carry it already), gentle
        saturation, fades, and a fixed sample-peak ceiling. Works in place on the bus, then
        interleaves it."""
        x = mix                                                   # (2, frames), float32
        if sos is not None:
            for ch in range(2):
                _synth.filter_inplace(x[ch], sos)
        n = x.shape[1]
        fade_in = min(n, int(0.005 * sr))
        x[:, :fade_in] *= np.linspace(0.0, 1.0, fade_in, dtype=np.float32)
        fade_out = min(n, int(min(2.0, 0.1 * n / sr) * sr))
        x[:, n - fade_out:] *= (np.cos(np.linspace(0.0, np.pi / 2, fade_out)) ** 2).astype(np.float32)
        hi, lo = float(x.max()), float(x.min())
        if max(hi, -lo) <= 0:
            return np.ascontiguousarray(x.T)
        drive = np.float32(1.2 / max(hi, -lo))
        # tanh is monotonic: the extremes after it are the images of those before, so the
        # ceiling's scale is known before the pass, and saturation, scaling and interleaving
        # run as one chunked pass into the (frames, 2) output.
        ends = np.tanh(np.array([hi, lo], dtype=np.float32) * drive)
        scale = np.float32(_PEAK / max(1e-12, float(ends[0]), -float(ends[1])))
        out = np.empty((n, 2), dtype=np.float32)
        chunk = 1 << 16
        buf = np.empty((2, chunk), dtype=np.float32)
        for start in range(0, n, chunk):
            b = buf[:, :min(chunk, n - start)]
            np.multiply(x[:, start:start + b.shape[1]], drive, out=b)
            np.tanh(b, out=b)                                     # peaks compressed, not clipped
            np.multiply(b.T, scale, out=out[start:start + b.shape[1]])
        return out                                                # (frames, 2) float32


def create(settings: Any, credentials: Any = None) -> BuiltinEngine:
    """Registry factory (cassetted.music.ENGINES): needs only the sample rate."""
    return BuiltinEngine(settings.generation.sample_rate)
