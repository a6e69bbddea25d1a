"""What an engine is asked to do beyond plain text2music: cover, repaint, variations.

Engines that declare `takes_task` (EngineCapabilities) get one of these with the spec.

A task travels next to the SongSpec (the spec says *what* the song is; the task says what to
start from). The engine never reads files: whoever builds the task (the pipeline) decodes
the library song into an `Audio` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cassetted.contract import errors
from cassetted.music.base import Audio

TaskKind = Literal["text2music", "cover", "repaint"]
MAX_VARIANTS = 8


class TaskInvalid(errors.GenerationFailed):
    """The task cannot be run as given (message says which field)."""


@dataclass(frozen=True)
class EngineTask:
    """Keyword arguments of one generation beyond the spec.

    - ``text2music``: from the spec alone (``source`` must be empty).
    - ``cover``: re-performs ``source`` in the spec's genre/mood/caption/lyrics (a karaoke
      remix is a cover of a song with ``spec.instrumental``). ``source_bpm`` with a
      different ``spec.bpm`` time-stretches the source first (new tempo, same pitch).
      ``cover_strength`` 1.0 keeps the source's structure; lower drifts toward the caption.
      ``reference`` (optional) lends its timbre.
    - ``repaint``: regenerates ``repaint_start_s``..``repaint_end_s`` (None = to the end)
      of ``source`` and keeps the rest.
    - ``variants`` (any kind): N takes in one batch, seeds ``spec.seed + i``; take 0 is the
      song a single generation would give.
    - ``steps``/``shift``/``guidance_scale``: override the engine's configured defaults.
    - ``lora``: a LoRA style by its configured name (an engine that takes LoRAs has `loras`).
    """

    kind: TaskKind = "text2music"
    source: Audio | None = None
    source_bpm: float | None = None
    reference: Audio | None = None
    cover_strength: float = 1.0
    repaint_start_s: float = 0.0
    repaint_end_s: float | None = None
    variants: int = 1
    steps: int | None = None
    shift: float | None = None
    guidance_scale: float | None = None
    lora: str | None = None

    def validate(self, duration_s: float, max_variants: int = MAX_VARIANTS,
                 section: str = "acestep") -> None:
        """Raise TaskInvalid naming the field when the task cannot be run (by an engine that
        takes at most `max_variants` at once, configured in `[section]`)."""
        if self.kind not in ("text2music", "cover", "repaint"):
            raise TaskInvalid(f"task kind {self.kind!r} is not one of text2music, cover, repaint",
                              "task")
        if self.kind in ("cover", "repaint") and self.source is None:
            raise TaskInvalid(f"a {self.kind} needs the source song's audio", "source_song_id")
        if self.kind == "text2music" and self.source is not None:
            raise TaskInvalid("text2music takes no source audio (use cover or repaint)", "task")
        if not 1 <= self.variants <= MAX_VARIANTS:
            raise TaskInvalid(f"variants must be 1..{MAX_VARIANTS}", "variants")
        if self.variants > max_variants:
            raise TaskInvalid(f"at most {max_variants} variants ([{section}] max_variants)",
                              "variants")
        if not 0.0 <= self.cover_strength <= 1.0:
            raise TaskInvalid("cover_strength must be within 0..1", "cover_strength")
        if self.source_bpm is not None and not 20 <= self.source_bpm <= 400:
            raise TaskInvalid("source_bpm must be within 20..400", "source_bpm")
        if self.steps is not None and not 1 <= self.steps <= 200:
            raise TaskInvalid("steps must be within 1..200", "steps")
        if self.shift is not None and not 0.1 <= self.shift <= 10:
            raise TaskInvalid("shift must be within 0.1..10", "shift")
        if self.kind == "repaint":
            end = duration_s if self.repaint_end_s is None else self.repaint_end_s
            if not 0 <= self.repaint_start_s < end <= duration_s + 1e-6:
                raise TaskInvalid(
                    f"repaint needs 0 <= repaint_start_s < repaint_end_s <= {duration_s:g} s",
                    "repaint_start_s")
        for name in ("source", "reference"):
            audio = getattr(self, name)
            if audio is not None and (audio.samples.ndim not in (1, 2) or audio.samples.shape[0] == 0):
                raise TaskInvalid(f"{name} audio is empty or not (frames, channels)", name)


TEXT2MUSIC = EngineTask()
