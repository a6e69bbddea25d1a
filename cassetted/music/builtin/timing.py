"""Exact timed lyrics of the built-in engine (its plugin's `timing` hook).

Its arrangement is deterministic for a spec, so the same arranger the engine runs tells
where the voice sings: each section with lyric lines is sung in two-bar phrases, phrase k
on line k of the section's lines (cycling); a line starts at its phrase's first sung note.
"""

from __future__ import annotations

import numpy as np

from cassetted.contract.schemas import SongSpec
from cassetted.music.builtin.arrange import arrange
from cassetted.music.builtin.form import sung_phrases
from cassetted.music.plugin import TimedLine


def timed_lines(spec: SongSpec) -> list[TimedLine]:
    """The engine's own arrangement, and the first vocal note of every phrase."""
    # The arrangement's generator, seeded as BuiltinEngine.generate seeds it (the first of
    # four streams spawned from the spec's seed).
    arrangement_seed = np.random.SeedSequence(spec.seed).spawn(4)[0]
    arr = arrange(spec.genre, spec.mood, spec.bpm, spec.key, spec.time_signature, spec.duration_s,
                  spec.lyrics, spec.instrumental, np.random.default_rng(arrangement_seed))
    beat_s = 60.0 / spec.bpm
    return [(float(notes[0].start) * beat_s, line) for line, notes in sung_phrases(arr, spec.lyrics)]
