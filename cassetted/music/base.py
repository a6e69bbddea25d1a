"""The music engine interface: a SongSpec in, audio out.

An engine never touches MQTT, the store or files: the pipeline hands it a fully resolved
spec (lyrics included) and a progress callback, and gets float32 stereo audio back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from cassetted.contract.schemas import SongSpec

if TYPE_CHECKING:
    from cassetted.music.task import EngineTask

# progress(fraction 0..1, optional note) — called from the engine's thread.
ProgressCallback = Callable[[float, str | None], None]


class Cancelled(Exception):
    """Raised inside an engine (by its progress callback) when the job was cancelled."""


@dataclass(frozen=True)
class Audio:
    """Float32 samples shaped (frames, 2) in -1..1, plus the sample rate.

    An engine MAY say which seed a take was really rendered with (`seed`: a remote server
    may not use the one asked for, and the song's stored seed must be the one that
    reproduces it) and add `notes` the household should see (a server that rendered a
    shorter song than asked); the pipeline records the first and publishes the second.
    `rendered` is the spec as the engine made it when it chose some of it itself (the
    ACE-Step LM's caption, lyrics, tempo, key and length in simple mode).
    """

    samples: np.ndarray
    sample_rate: int
    seed: int | None = None
    notes: tuple[str, ...] = ()
    rendered: SongSpec | None = None  # the spec as rendered, when the engine chose parts of it

    @property
    def duration_s(self) -> float:
        return float(self.samples.shape[0] / self.sample_rate)


class NeedsLyrics(Exception):
    """Raised by an engine that offered to write a song's lyrics itself (its `writes_lyrics`
    said so) and cannot after all, e.g. the server's LM is off: the pipeline writes them
    with the lyrics chain and asks again."""


class MusicEngine(Protocol):
    """What every engine MUST provide.

    `name` identifies it in requests (`engine`) and in the Song row. `generate` MUST be
    deterministic for a given spec (including `spec.seed`), MUST return exactly
    `round(spec.duration_s * sample_rate)` frames of stereo float32 (unless it cannot
    render that long: then what it rendered, said so in `Audio.notes`), and SHOULD call
    `progress` often enough that a job's ETA stays meaningful. It runs in a worker thread.

    What an engine can do beyond this is declared on its plugin (music.plugin
    EngineCapabilities), never probed on the object: an engine declaring `takes_task` is
    a TaskEngine, one declaring `writes_lyrics` a LyricsWritingEngine.
    """

    name: str

    def generate(self, spec: SongSpec, progress: ProgressCallback) -> Audio: ...


class TaskEngine(MusicEngine, Protocol):
    """An engine whose plugin declares `takes_task`: it renders a whole EngineTask (cover,
    repaint, all variants in one batch), one Audio per variant."""

    def generate_variants(self, spec: SongSpec, progress: ProgressCallback,
                          task: EngineTask) -> list[Audio]: ...


class LyricsWritingEngine(MusicEngine, Protocol):
    """An engine whose plugin declares `writes_lyrics`: its model may write a song's lyrics
    while composing; `writes_lyrics` says whether it will for this spec and task kind."""

    def writes_lyrics(self, spec: SongSpec, kind: str = "text2music") -> bool: ...
