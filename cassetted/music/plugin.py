"""What an engine plugin declares: its name, capabilities, settings and a lazy factory.

An entry point in the `cassetted.engines` group names one EnginePlugin. Callers (the
pipeline, the lyrics timing, the job runner) read `capabilities` instead of probing the
engine object, so what an engine can do is visible in one place without loading it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from cassetted.plugins import load_factory

if TYPE_CHECKING:
    from cassetted.contract.schemas import SongSpec
    from cassetted.music.base import MusicEngine

# (start in seconds, text) of one sung line
TimedLine = tuple[float, str]


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine can do beyond plain text2music (all off by default).

    - `tasks`: the task kinds it renders ("text2music", "cover", "repaint").
    - `takes_task`: its `generate_variants(spec, progress, task)` takes an EngineTask (source
      audio, all variants in one batch); otherwise variants are renders with the next seeds.
    - `loras`: a request may name a LoRA style (`lora`) for it.
    - `writes_lyrics`: its own model may write a song's lyrics; it then has
      `writes_lyrics(spec, kind) -> bool` saying whether it will for this song.
    - `timed_lyrics`: it knows exactly when each line is sung (the plugin's `timing` hook);
      other engines get an estimate.
    - `vocals`: it sings the lyrics (rather than only composing to them).
    """

    tasks: frozenset[str] = frozenset({"text2music"})
    takes_task: bool = False
    loras: bool = False
    writes_lyrics: bool = False
    timed_lyrics: bool = False
    vocals: bool = False


@dataclass(frozen=True)
class EnginePlugin:
    """The descriptor an entry point of `cassetted.engines` names.

    `factory` and `timing` are "module:function" strings, imported on first use so that
    loading the descriptor never imports the engine (torch, SciPy). `factory(settings,
    credentials)` returns the MusicEngine; `timing(spec)` returns its exact TimedLines.
    `settings_model` is the model of the `[settings_section]` table it reads, if any.
    """

    name: str
    factory: str
    capabilities: EngineCapabilities = field(default_factory=EngineCapabilities)
    settings_section: str | None = None
    settings_model: type[BaseModel] | None = None
    timing: str | None = None
    description: str = ""

    def create(self, settings: Any, credentials: Any = None) -> MusicEngine:
        """A new engine (the EngineRegistry keeps one per process)."""
        return cast("MusicEngine", load_factory(self.factory)(settings, credentials))

    def timed_lines(self, spec: SongSpec) -> list[TimedLine] | None:
        """Exact timings of the sung lines, or None when the engine cannot tell."""
        if self.timing is None:
            return None
        timing = cast("Callable[[SongSpec], list[TimedLine]]", load_factory(self.timing))
        return timing(spec)
