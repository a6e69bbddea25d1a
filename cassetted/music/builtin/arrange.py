"""The arranger: turns a spec into notes and drum hits, bar by bar, for every part.

Everything here is in beats (floats) on the song's tempo grid; the synthesiser converts to
samples. Beats themselves are never humanised: only the off-beat subdivisions move (swing),
so the pulse a listener (or a beat tracker) follows sits exactly on the requested bpm.
Randomness comes only from the generator passed in, so a seed fixes the whole song.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from cassetted.music.builtin.form import DEFAULT_FORM, Section, is_instrumental, lyric_sections, plan_form
from cassetted.music.builtin.theory import Chord, chord_on, parse_key, progression, scale_notes, voice


@dataclass(frozen=True)
class Note:
    start: float   # beats from the start of the song
    dur: float     # beats
    pitch: int     # MIDI
    vel: float     # 0..1


@dataclass(frozen=True)
class Hit:
    start: float
    drum: str
    vel: float


@dataclass(frozen=True)
class Meter:
    beats_per_bar: int
    subdiv: int            # subdivisions of a beat: 2 (simple metre) or 3 (compound, 6/8)


def meter_of(time_signature: str) -> Meter:
    """bpm counts the felt beat: a quarter in x/4, a dotted quarter in 6/8 (two per bar)."""
    return {"2/4": Meter(2, 2), "3/4": Meter(3, 2), "4/4": Meter(4, 2), "6/8": Meter(2, 3)}[time_signature]


@dataclass(frozen=True)
class MoodProfile:
    brightness: float   # 0..1: filter cutoffs, harmonic content
    density: float      # 0..1: notes per bar in melody, comping and hats
    dynamics: float     # 0..1: how much quieter verses are than choruses
    space: float        # reverb send multiplier
    punch: float        # drum level relative to the band


MOODS: dict[str, MoodProfile] = {
    "uplifting": MoodProfile(brightness=0.85, density=0.7, dynamics=0.8, space=1.0, punch=0.9),
    "relaxing": MoodProfile(brightness=0.45, density=0.35, dynamics=0.5, space=1.3, punch=0.6),
    "energetic": MoodProfile(brightness=1.0, density=1.0, dynamics=1.0, space=0.8, punch=1.0),
    "melancholic": MoodProfile(brightness=0.4, density=0.45, dynamics=0.6, space=1.4, punch=0.65),
}


@dataclass
class Arrangement:
    sections: list[Section]
    meter: Meter
    bars: int
    total_beats: float                    # the song's length in beats (covers the tail too)
    parts: dict[str, list[Note]] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    section_of_bar: list[Section] = field(default_factory=list)


# ----------------------------------------------------------------------------- helpers


def _syllables(line: str) -> int:
    """Rough syllable count: vowel groups per word (good enough to size a phrase)."""
    words = re.findall(r"[A-Za-zÀ-ÿ']+", line)
    return sum(max(1, len(re.findall(r"[aeiouyäöüéèàáíóú]+", w.lower()))) for w in words)


def _energy(section: Section, mood: MoodProfile) -> float:
    """Velocity scale for a section: choruses at 1, quieter sections scaled by the mood."""
    return 1.0 - 0.85 * mood.dynamics * (1.0 - section.energy)


def _bass_pitch(pc: int, low: int = 33) -> int:
    return low + (pc - low) % 12


def _steady(bpm: int) -> bool:
    """Tempi at which off-beats must stay quiet (see `_drum_bar`)."""
    return bpm < 100 or bpm > 145


def _swing(pos: float, amount: float, subdiv: int) -> float:
    """Delay the off-beat eighth of a simple-metre beat; on-beats never move."""
    beat, frac = divmod(pos, 1.0)
    if subdiv == 2 and amount and abs(frac - 0.5) < 1e-9:
        return beat + 0.5 + amount * (2.0 / 3.0 - 0.5)
    if subdiv == 2 and amount and abs(frac - 0.75) < 1e-9:
        return beat + 0.75 + amount * 0.5 * (5.0 / 6.0 - 0.75)
    return pos


# ----------------------------------------------------------------------------- drums


def _drum_bar(genre: str, sec: Section, bar_in_sec: int, meter: Meter, mood: MoodProfile,
              bpm: int, rng: np.random.Generator) -> list[tuple[float, str, float]]:
    """Hits (beat offset in bar, drum, velocity) for one bar of `genre`."""
    bpb, sub = meter.beats_per_bar, meter.subdiv
    hits: list[tuple[float, str, float]] = []
    kind = sec.kind
    last_bar = bar_in_sec == sec.bars - 1
    light = kind in ("intro", "outro")
    steady = _steady(bpm)
    # Off-beat subdivisions are kept soft at slow and very fast tempi so the pulse is heard
    # on the beat: loud eighths at 80 bpm read as 160, and an even eighth-note texture at
    # 165 lets a 3:2 reading (110) win.
    off = 0.35 if steady else 0.6
    dense = mood.density >= 0.7 and kind in ("chorus", "instrumental")
    sparse = mood.density < 0.5 and kind in ("intro", "verse", "outro")   # calm moods breathe
    subs = [k / sub for k in range(1, sub)]

    if genre in ("rock", "pop", "country"):
        for b in range(bpb):
            backbeat = (b % 2 == 1) if bpb != 3 else b > 0     # 3/4: kick on one, snare two and three
            if not backbeat:
                hits.append((b, "kick", 1.0 if b == 0 else 0.85))
            if backbeat and not light:
                hits.append((b, "rim" if genre == "country" and kind == "verse" else "snare",
                             0.9 if bpb != 3 else 0.6))
            cym = ("ride" if genre == "rock" and kind == "chorus"
                   else "shaker" if genre == "country" else "hat")
            hits.append((b, cym, 0.6))
            if not sparse:
                hits.extend((b + s, cym, 0.5 * off) for s in subs)
            if dense and genre != "country" and sub == 2:       # sixteenths when it's lively
                hits += [(b + 0.25, cym, 0.2 * off), (b + 0.75, cym, 0.2 * off)]
            if dense and not steady and genre == "rock" and b == bpb - 1:
                hits.append((b + 0.5, "kick", 0.3))            # a push into the next bar
    elif genre == "electronic":
        breakdown = kind == "bridge" and bar_in_sec < sec.bars // 2
        for b in range(bpb):
            if not breakdown:
                hits.append((b, "kick", 1.0))
            if b % 2 == 1 and not light:
                hits.append((b, "clap", 0.8))
            hits.append((b, "hat", 0.45))
            # The open hat is bright and long: a loud one on the off-beat can steal the
            # beat's phase, so it stays well under the closed hat on the beat.
            for s in subs:
                hits.append((b + s, "open_hat" if abs(s - 0.5) < 1e-9 and not steady else "hat",
                             0.25 * off + 0.05))
            if dense:
                hits.append((b + 0.25, "hat", 0.12))
                hits.append((b + 0.75, "hat", 0.12))
    elif genre == "hip-hop":
        half_time = kind == "bridge"
        for b in range(bpb):
            if b == 0 or (b == 2 and not half_time):
                hits.append((b, "kick", 1.0))
            if not light and ((half_time and b == 2) or (not half_time and b % 2 == 1)):
                hits.append((b, "snare", 1.0))
            hits.append((b, "hat", 0.55))
            for s in subs if not sparse else ():
                hits.append((b + s, "hat", 0.3 * off))
        if bpb >= 4 and not light:
            hits.append((2.5, "kick", 0.45))
    elif genre == "jazz":
        brushes = mood.density < 0.5
        # Above ~130 bpm the two-beat "ding, ding-a" cycle is heard as one slow beat, so
        # fast tempi get an even quarter-note pulse and only a whisper of the skip note.
        even = bpm >= 130
        skip = 0.12 if even else 0.3
        for b in range(bpb):
            hits.append((b, "pulse", 0.35 if not even else 0.45))   # feathered bass drum
            accent = b % 2 == 1 and not even
            if brushes:
                hits.append((b, "brush", 0.75 if accent else 0.6))
                if b % 2 == 1:
                    hits.append((b + 0.5, "brush", skip))
            else:
                hits.append((b, "ride", 0.7 if accent else 0.6))
                if b % 2 == 1 and sub == 2:
                    hits.append((b + 0.5, "ride", skip + 0.05))      # the swung "skip" note
            if b % 2 == 1:
                hits.append((b, "foot_hat", 0.6 if not even else 0.35))
        if not light and rng.random() < 0.5 * mood.density:  # a comping snare ghost
            hits.append((float(rng.integers(0, bpb)) + 0.5, "snare", 0.18))
    elif genre == "ambient":
        for b in range(bpb):
            hits.append((b, "pulse", 0.55 if b == 0 else 0.42))
            if not light:
                hits.append((b, "shaker", 0.3))
    # classical: no drums; the accompaniment carries the pulse.

    if genre not in ("classical", "ambient") and bar_in_sec == 0 and kind in ("chorus", "instrumental") \
            and sec.start_bar > 0:
        hits.append((0.0, "crash", 0.7))
    if last_bar and genre in ("rock", "pop", "country", "hip-hop", "electronic") \
            and kind in ("verse", "bridge") and mood.density >= 0.4 and bpb >= 3 and not steady:
        hits.append((bpb - 1 + 0.5, "snare", 0.55))          # a small fill into the next section
    return hits


# ----------------------------------------------------------------------------- pitched parts


_BASS_STYLE = {"rock": "eighths", "pop": "pop", "jazz": "walking", "electronic": "offbeat",
               "classical": "half", "hip-hop": "sub", "country": "root_fifth", "ambient": "drone"}
_COMP_STYLE = {"rock": "power", "pop": "block", "jazz": "charleston", "electronic": "stabs",
               "classical": "arpeggio", "hip-hop": "keys", "country": "strum", "ambient": "arp"}
_PAD = {"rock": ("chorus",), "pop": ("chorus", "bridge"), "jazz": (), "classical": ("all",),
        "electronic": ("all",), "hip-hop": ("chorus", "bridge"), "country": (), "ambient": ("all",)}


def _bass_bar(style: str, chord: Chord, next_chord: Chord, bar_beat: float, bpb: int, sub: int,
              e: float, steady: bool, rng: np.random.Generator) -> list[Note]:
    # Electronic's short off-beat notes sit an octave higher: very short notes in the
    # lowest octave smear over neighbouring semitones and blur the key.
    low = 40 if style == "offbeat" else 33
    r = _bass_pitch(chord.root, low)
    fifth = _bass_pitch(chord.pcs[2], low) if len(chord.pcs) > 2 else r + 7
    fifth = fifth if fifth > r else fifth + 12
    notes: list[Note] = []
    if style == "eighths":
        step = 1.0 if steady else 1.0 / sub
        for k in range(int(bpb / step)):
            pos = k * step
            notes.append(Note(bar_beat + pos, step * 0.85, r, e * (0.9 if pos % 1 == 0 else 0.65)))
    elif style == "pop":
        pattern = [(0, 1.4, r, 0.95), (1.5, 0.45, r, 0.6), (2, 0.9, fifth, 0.8), (3, 0.9, r + 12, 0.7)]
        notes += [Note(bar_beat + p, d, n, e * v) for p, d, n, v in pattern if p < bpb]
    elif style == "walking":
        target = _bass_pitch(next_chord.root)
        line = [r, _bass_pitch(chord.pcs[1]), fifth if fifth - r < 12 else fifth - 12,
                target + (1 if rng.random() < 0.5 else -1)]
        notes += [Note(bar_beat + b, 0.9, line[b % 4], e * (0.85 if b == 0 else 0.7)) for b in range(bpb)]
    elif style == "offbeat" and steady:      # loud off-beats mislead the ear at these tempi
        notes += [Note(bar_beat + b, 0.6, r if b % 2 == 0 else fifth, e * 0.8) for b in range(bpb)]
    elif style == "offbeat":
        for b in range(bpb):
            notes.append(Note(bar_beat + b + 0.5, 0.4, r, e * 0.75))
        notes.append(Note(bar_beat, 0.3, r, e * 0.5))
    elif style == "half":
        if bpb == 3:
            notes.append(Note(bar_beat, 2.9, r, e * 0.9))
        else:
            for b in range(0, bpb, 2):
                notes.append(Note(bar_beat + b, 1.9, r if b == 0 else r + 12, e * 0.85))
    elif style == "sub":
        notes.append(Note(bar_beat, min(2.4, bpb) - 0.1, r, e * 1.0))
        if bpb >= 4:
            notes.append(Note(bar_beat + 2.5, 1.4, r, e * 0.8))
    elif style == "root_fifth":
        for b in range(bpb):
            if b % 2 == 0 or (bpb == 3 and b == 0):
                pitch = r if b % 4 == 0 else fifth - 12 if fifth - 12 >= 28 else fifth
                notes.append(Note(bar_beat + b, 0.9, pitch, e * 0.9))
    elif style == "drone":
        notes.append(Note(bar_beat, bpb, r, e * 0.7))
    return notes


def _comp_bar(style: str, chord: Chord, voicing: tuple[int, ...], bar_beat: float, bpb: int,
              sub: int, e: float, kind: str, mood: MoodProfile, swing: float, steady: bool) -> list[Note]:
    notes: list[Note] = []

    def block(pos: float, dur: float, vel: float, pitches: tuple[int, ...] = voicing,
              strum: float = 0.0) -> None:
        for i, p in enumerate(pitches):
            notes.append(Note(bar_beat + pos + i * strum, dur, p, vel * e))

    if style == "power":
        root = 40 + (chord.root - 40) % 12
        third = root + 12 + (chord.pcs[1] - chord.root) % 12
        # Power chord plus the third on top: distortion's 5th harmonic (a major third) would
        # otherwise make every minor song sound major.
        pitches = (root, root + 7, root + 12, third)
        step = 1.0 if (steady or kind == "verse") else 1.0 / sub
        for k in range(round(bpb / step)):
            pos = k * step
            # Legato: staccato distorted chords are the loudest onsets in the song and would
            # outshout the drums, leaving a beat tracker nothing else to follow.
            block(pos, step * 0.92, (0.8 if pos % 1 == 0 else 0.55) * (0.8 if kind == "verse" else 1.0),
                  pitches)
    elif style == "block":
        step = 2 if mood.density < 0.5 and bpb % 2 == 0 else 1     # calm: half-note chords
        for b in range(0, bpb, step):
            block(b, 0.9 * step, 0.75 if b == 0 else 0.55)
    elif style == "charleston":
        block(0, 0.75, 0.6)
        if bpb >= 3:
            block(_swing(1.5, swing, sub), 0.5, 0.5)
        if mood.density > 0.6 and bpb >= 4:
            block(3, 0.5, 0.4)
    elif style == "stabs":
        loud = kind in ("chorus", "instrumental")
        for b in range(bpb):   # off-beat stabs; on the beat at steady tempi
            block(b + (0.0 if steady else 0.5), 0.25, 0.5 if loud else 0.3)
    elif style == "arpeggio":
        if bpb == 3:      # waltz: bass note on one, chord on two and three
            block(1, 0.8, 0.55)
            block(2, 0.8, 0.5)
        else:
            # Broken chord that returns to the third: it carries the mode (major or minor).
            order = [voicing[0], voicing[1], voicing[2], voicing[1]] if len(voicing) >= 3 else list(voicing)
            step = 1.0 if steady else 1.0 / sub
            for k in range(round(bpb / step)):
                pos = k * step
                p = order[k % len(order)]
                notes.append(Note(bar_beat + pos, step * 1.5, p, e * (0.75 if pos % 1 == 0 else 0.4)))
    elif style == "keys":
        block(0, 1.8, 0.6)
        if bpb >= 4:
            block(2.5 if not steady else 2, 1.2, 0.45)
    elif style == "strum":
        for b in range(bpb):
            if (bpb == 3 and b > 0) or (bpb != 3 and b % 2 == 1):
                block(b, 0.45, 0.7, strum=0.02)
            if kind in ("chorus", "instrumental") and not steady:
                block(b + 0.5, 0.3, 0.35, strum=0.015)
    elif style == "arp":
        order = [*voicing, voicing[0] + 12]
        notes.extend(Note(bar_beat + b, 1.8, order[b % len(order)] + 12, e * (0.6 if b == 0 else 0.45))
                     for b in range(bpb))
    return notes


def _phrase(rng: np.random.Generator, chords: list[Chord], bpb: int, sub: int, n_notes: int,
            scale: np.ndarray, tonic: int, final: bool, swing: float) -> list[Note]:
    """A two-bar melodic phrase (beats relative to its start) over `chords` (one per bar).

    Onsets favour strong beats; pitches walk stepwise through the scale and land on chord
    tones on the beat, so the line agrees with the harmony; phrases end on a chord tone,
    the last of a section on the tonic.
    """
    slots = 2 * bpb * sub
    usable = slots - sub                      # leave the last beat to breathe
    weights = np.array([3.0 if k % (bpb * sub) == 0 else 2.0 if k % sub == 0 else 1.0
                        for k in range(usable)])
    n = int(np.clip(n_notes, 2, usable))
    onsets = np.sort(rng.choice(usable, size=n, replace=False, p=weights / weights.sum()))
    idx = len(scale) // 2 + int(rng.integers(-2, 3))
    notes: list[Note] = []
    for j, slot in enumerate(onsets):
        pos = slot / sub
        chord = chords[min(int(pos // bpb), len(chords) - 1)]
        idx = int(np.clip(idx + rng.choice([-2, -1, -1, 1, 1, 2, 0, 3, -3]), 0, len(scale) - 1))
        pitch = int(scale[idx])
        on_beat = slot % sub == 0
        last = j == n - 1
        if on_beat or last:
            targets = [p for p in scale if p % 12 in chord.pcs]
            if last and final:
                targets = [p for p in scale if p % 12 == tonic] or targets
            pitch = int(min(targets, key=lambda p: (abs(p - pitch), p)))
            idx = int(np.searchsorted(scale, pitch))
        nxt = onsets[j + 1] / sub if not last else 2 * bpb - 0.5
        dur = max(0.2, min(2.0, nxt - pos) * 0.92)
        vel = 0.9 if slot % (bpb * sub) == 0 else 0.8 if on_beat else 0.7
        notes.append(Note(_swing(pos, swing, sub), dur, pitch, vel))
    return notes


# ----------------------------------------------------------------------------- arranger


_SWING = {"jazz": 1.0, "hip-hop": 0.25}
_LEAD_RANGE = {"rock": (57, 79), "pop": (62, 81), "jazz": (58, 79), "electronic": (62, 84),
               "classical": (64, 86), "hip-hop": (62, 81), "country": (60, 79), "ambient": (64, 86)}


def arrange(genre: str, mood_name: str, bpm: int, key: str, time_signature: str, duration_s: float,
            lyrics: str, instrumental: bool, rng: np.random.Generator) -> Arrangement:
    """Every note and hit of the song."""
    mood = MOODS[mood_name]
    meter = meter_of(time_signature)
    bpb, sub = meter.beats_per_bar, meter.subdiv
    beat_s = 60.0 / bpm
    total_beats = duration_s / beat_s
    # Whole bars that fit, keeping at least ~1.5 s for the last chord to ring out.
    bars = max(1, int((duration_s - min(1.5, 0.1 * duration_s)) / (beat_s * bpb)))
    tonic, minor = parse_key(key)

    lyr = lyric_sections(lyrics)
    instr = is_instrumental(lyrics, instrumental)
    kinds = [k for k, _ in lyr] if (lyr and not instr) else list(DEFAULT_FORM)
    sections = plan_form(kinds, bars)
    lines_by_kind: dict[str, list[list[str]]] = {}
    if not instr:
        for kind, section_lines in lyr:
            lines_by_kind.setdefault(kind, []).append(section_lines)

    arr = Arrangement(sections=sections, meter=meter, bars=bars, total_beats=total_beats)
    parts: dict[str, list[Note]] = {"bass": [], "comp": [], "pad": [], "lead": [], "vocal": []}
    hits: list[Hit] = []
    swing = _SWING.get(genre, 0.0)
    slow = bpm < 100
    steady = _steady(bpm)
    seventh = genre == "jazz" or (genre in ("hip-hop", "ambient") and mood.brightness < 0.6)
    lo, hi = _LEAD_RANGE[genre]
    lead_scale = scale_notes(tonic, minor, lo, hi, pentatonic=genre in ("rock", "country", "hip-hop"))

    # The chords of each bar, so parts can look one bar ahead (walking bass).
    chords: list[Chord] = []
    for sec in sections:
        prog = progression(genre, minor, sec.kind)
        for b in range(sec.bars):
            arr.section_of_bar.append(sec)
            degree = prog[b % len(prog)]
            if sec is sections[-1] and b == sec.bars - 1:
                degree = 0                                    # the song ends home
            raise_lt = genre in ("classical", "jazz", "pop", "country")  # rock: natural minor
            chords.append(chord_on(degree, tonic, minor, seventh=seventh, raise_leading_tone=raise_lt))

    # (section kind, phrase shape, final phrase, chord degree, next degree) -> the phrase
    phrase_cache: dict[tuple[str, int, bool, int, int], list[Note]] = {}
    prev_voicing: tuple[int, ...] | None = None
    for bar in range(bars):
        sec = arr.section_of_bar[bar]
        bar_in_sec = bar - sec.start_bar
        e = _energy(sec, mood)
        bar_beat = float(bar * bpb)
        chord = chords[bar]
        nxt = chords[bar + 1] if bar + 1 < bars else chords[0]
        final_bar = bar == bars - 1

        # Drums.
        if final_bar:
            if genre not in ("classical", "ambient"):
                hits += [Hit(bar_beat, "kick", e), Hit(bar_beat, "crash", 0.6 * e)]
        else:
            for pos, drum, vel in _drum_bar(genre, sec, bar_in_sec, meter, mood, bpm, rng):
                hits.append(Hit(bar_beat + _swing(pos, swing, sub), drum, vel * (0.6 + 0.4 * e)))

        voicing = voice(chord, 53 if genre != "classical" else 55, prev_voicing)
        prev_voicing = voicing
        tail = total_beats - bar_beat                          # to the very end of the song
        if final_bar:
            parts["bass"].append(Note(bar_beat, tail, _bass_pitch(chord.root), 0.8 * e))
            parts["comp"] += [Note(bar_beat, tail, p, 0.6 * e) for p in voicing]
            parts["pad"] += [Note(bar_beat, tail, p + 12, 0.5 * e) for p in voicing]
            parts["lead"].append(Note(bar_beat, min(tail, 2 * bpb),
                                      int(min((p for p in lead_scale if p % 12 == tonic),
                                              key=lambda p: abs(p - (lo + hi) / 2))), 0.6))
            continue

        if not (genre == "electronic" and sec.kind == "intro"):   # the drop brings the bass in
            parts["bass"] += _bass_bar(_BASS_STYLE[genre], chord, nxt, bar_beat, bpb, sub, e,
                                       steady, rng)
        if not (sec.kind == "intro" and bar_in_sec == 0 and genre == "ambient"):
            parts["comp"] += _comp_bar(_COMP_STYLE[genre], chord, voicing, bar_beat, bpb, sub, e,
                                       sec.kind, mood, swing, steady)
        pad_when = _PAD[genre]
        if "all" in pad_when or sec.kind in pad_when:
            parts["pad"] += [Note(bar_beat, bpb, p + 12 if genre != "ambient" else p, 0.55 * e)
                             for p in voicing]

        # Melody: two-bar phrases, the same for every section of a kind (so a chorus is
        # recognisably the chorus), shaped A B A C.
        if sec.kind in ("verse", "chorus", "bridge", "instrumental") and bar_in_sec % 2 == 0:
            k = bar_in_sec // 2
            shape = (0, 1, 0, 2)[k % 4]
            final = bar_in_sec + 2 >= sec.bars
            nxt_degree = chords[bar + 1].degree if bar + 1 < bars else chord.degree
            cache_key = (sec.kind, shape, final, chord.degree, nxt_degree)
            if cache_key not in phrase_cache:
                lines = lines_by_kind.get(sec.kind, [])
                lyric_lines = lines[sec.index % len(lines)] if lines else []
                if lyric_lines:
                    n_notes = _syllables(lyric_lines[k % len(lyric_lines)])
                else:
                    dens = mood.density * (1.3 if sec.kind == "instrumental" else 1.0)
                    n_notes = round(2 * bpb * sub * (0.2 + 0.35 * dens))
                if slow and genre in ("ambient", "classical"):
                    n_notes = min(n_notes, 2 * bpb)
                phrase_chords = [chord, chords[bar + 1] if bar + 1 < bars else chord]
                phrase_cache[cache_key] = _phrase(rng, phrase_chords, bpb, sub, n_notes, lead_scale,
                                                  tonic, final, swing)
            lead_vel = (0.8 if sec.kind in ("chorus", "instrumental") else 0.65) * e
            # Sections with lyric lines are sung (the voice takes the melody); others played.
            lines = lines_by_kind.get(sec.kind, [])
            target = "vocal" if lines and lines[sec.index % len(lines)] else "lead"
            for n in phrase_cache[cache_key]:
                if n.start < (sec.bars - bar_in_sec) * bpb:
                    parts[target].append(Note(bar_beat + n.start, n.dur, n.pitch, n.vel * lead_vel))

    arr.parts = parts
    arr.hits = hits
    return arr
