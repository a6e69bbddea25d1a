"""Pitch material for the built-in engine: keys, scales, chords and voicings.

Progressions are written as scale degrees so one table serves all twelve keys. Every
progression starts on the tonic and returns to it, and minor keys use the raised leading
tone on V where the style allows: both make the requested key unambiguous to a listener
(and to a key detector), rather than drifting to the relative major.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast, overload

import numpy as np

_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)   # natural minor; V is raised separately


def parse_key(key: str) -> tuple[int, bool]:
    """"F# minor" -> (6, True). The spec's pattern guarantees the format."""
    name, mode = key.split()
    pc = _PITCH_CLASS[name[0].upper()]
    if len(name) > 1:
        pc += 1 if name[1] == "#" else -1
    return pc % 12, mode == "minor"


@dataclass(frozen=True)
class Chord:
    """A chord as the scale degree it is built on and its pitch classes (root first)."""

    degree: int
    root: int                 # pitch class
    pcs: tuple[int, ...]      # pitch classes, root first, then third, fifth (seventh)


def chord_on(degree: int, tonic: int, minor: bool, seventh: bool = False,
             raise_leading_tone: bool = True) -> Chord:
    """The diatonic chord on `degree` (0 = I), stacking scale thirds.

    In minor the seventh degree is raised inside V (and vii°) when `raise_leading_tone`,
    giving the dominant its pull back to the tonic (harmonic minor).
    """
    scale = list(MINOR_SCALE if minor else MAJOR_SCALE)
    if minor and raise_leading_tone and degree in (4, 6):
        scale[6] = 11
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
    pcs = tuple((tonic + scale[(degree + s) % 7]) % 12 for s in steps)
    return Chord(degree=degree, root=pcs[0], pcs=pcs)


# Progressions per genre and section: lists of degrees, one chord per bar (jazz: two per bar
# is handled by the arranger through `harmonic_rhythm`). "M"/"m" keys pick major/minor.
_PROGRESSIONS: dict[str, dict[str, dict[str, tuple[int, ...]]]] = {
    "pop": {
        "M": {"verse": (0, 5, 3, 4), "chorus": (0, 4, 5, 3), "bridge": (5, 3, 0, 4), "intro": (0, 3, 0, 4)},
        "m": {"verse": (0, 5, 3, 4), "chorus": (0, 3, 4, 0), "bridge": (5, 3, 4, 4), "intro": (0, 5, 0, 4)},
    },
    "rock": {
        "M": {"verse": (0, 0, 3, 4), "chorus": (0, 4, 3, 0), "bridge": (5, 3, 4, 4), "intro": (0, 3, 0, 4)},
        "m": {"verse": (0, 0, 5, 4), "chorus": (0, 3, 4, 0), "bridge": (5, 6, 4, 4), "intro": (0, 5, 4, 0)},
    },
    "jazz": {
        "M": {"verse": (0, 5, 1, 4), "chorus": (1, 4, 0, 0), "bridge": (3, 3, 1, 4), "intro": (1, 4, 0, 0)},
        "m": {"verse": (0, 5, 1, 4), "chorus": (3, 4, 0, 0), "bridge": (5, 5, 1, 4), "intro": (1, 4, 0, 0)},
    },
    "electronic": {
        "M": {"verse": (0, 0, 3, 4), "chorus": (0, 4, 5, 3), "bridge": (5, 3, 4, 4), "intro": (0, 0, 3, 3)},
        "m": {"verse": (0, 0, 5, 4), "chorus": (0, 5, 6, 4), "bridge": (3, 5, 4, 4), "intro": (0, 0, 5, 5)},
    },
    "classical": {
        "M": {"verse": (0, 3, 4, 0), "chorus": (0, 5, 1, 4), "bridge": (5, 1, 4, 4), "intro": (0, 4, 0, 4)},
        "m": {"verse": (0, 3, 4, 0), "chorus": (0, 5, 3, 4), "bridge": (3, 6, 4, 4), "intro": (0, 3, 0, 4)},
    },
    "hip-hop": {
        "M": {"verse": (0, 0, 5, 5), "chorus": (0, 3, 0, 4), "bridge": (5, 5, 3, 4), "intro": (0, 0, 5, 5)},
        "m": {"verse": (0, 0, 5, 5), "chorus": (0, 3, 0, 4), "bridge": (5, 5, 3, 4), "intro": (0, 0, 5, 5)},
    },
    "country": {
        "M": {"verse": (0, 3, 0, 4), "chorus": (3, 0, 4, 0), "bridge": (5, 3, 0, 4), "intro": (0, 4, 0, 0)},
        "m": {"verse": (0, 3, 0, 4), "chorus": (5, 0, 4, 0), "bridge": (3, 5, 4, 4), "intro": (0, 4, 0, 0)},
    },
    "ambient": {
        "M": {"verse": (0, 0, 3, 3), "chorus": (0, 0, 5, 3), "bridge": (3, 3, 0, 0), "intro": (0, 0, 0, 0)},
        "m": {"verse": (0, 0, 5, 5), "chorus": (0, 0, 3, 3), "bridge": (5, 5, 0, 0), "intro": (0, 0, 0, 0)},
    },
}

_SECTION_ALIAS = {"outro": "intro", "instrumental": "chorus"}


def progression(genre: str, minor: bool, section: str) -> tuple[int, ...]:
    """Scale degrees, one chord per bar, for a section of `genre` (cycled by the arranger)."""
    table = _PROGRESSIONS[genre]["m" if minor else "M"]
    return table[_SECTION_ALIAS.get(section, section)]


def voice(chord: Chord, low: int, prev: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """MIDI notes of `chord` in the octave above `low`, closest to the previous voicing.

    Of the chord's inversions in range, the one moving least from `prev` wins: smooth voice
    leading without a search tree.
    """
    n = len(chord.pcs)
    candidates = []
    for inv in range(n):
        pcs = chord.pcs[inv:] + chord.pcs[:inv]
        notes, last = [], low - 1
        for pc in pcs:
            note = last + 1 + (pc - (last + 1)) % 12
            notes.append(note)
            last = note
        candidates.append(tuple(notes))
    if prev is None:
        return candidates[0]
    # Every inversion has the chord's size; `prev` may be another chord's (strict=False).
    return min(candidates,
               key=lambda c: sum(abs(a - b) for a, b in zip(sorted(c), sorted(prev), strict=False)))


def scale_notes(tonic: int, minor: bool, low: int, high: int, pentatonic: bool = False) -> np.ndarray:
    """All MIDI notes of the key's scale in [low, high] (pentatonic: five notes per octave)."""
    degrees: tuple[int, ...]
    if pentatonic:
        degrees = (0, 3, 5, 7, 10) if minor else (0, 2, 4, 7, 9)
    else:
        degrees = MINOR_SCALE if minor else MAJOR_SCALE
    return np.array([n for n in range(low, high + 1) if (n - tonic) % 12 in degrees])


@overload
def midi_to_hz(note: float) -> float: ...
@overload
def midi_to_hz(note: np.ndarray) -> np.ndarray: ...
def midi_to_hz(note: float | np.ndarray) -> float | np.ndarray:
    """Equal-tempered frequency of MIDI `note` (69 = A4 = 440 Hz), elementwise on an array."""
    return cast("float | np.ndarray", 440.0 * 2.0 ** ((note - 69) / 12.0))
