"""An annotated template of a music engine plugin: copy it into your own package.

A plugin is this one module plus one line in your package's pyproject.toml:

    [project.entry-points."cassetted.engines"]
    myengine = "my_package.my_engine:PLUGIN"

then `pip install` your package next to cassetted; requests pick it with "engine":
"myengine" and `[generation] engine = "myengine"` makes it the default.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cassetted.contract.schemas import SongSpec
from cassetted.music.base import Audio, ProgressCallback
from cassetted.music.plugin import EngineCapabilities, EnginePlugin


class TemplateSettings(BaseModel):
    """The `[template]` table of the configuration file (settings_section below).

    `extra="forbid"` keeps the daemon's promise: an unknown key stops it with one line."""

    model_config = ConfigDict(extra="forbid")

    level: float = Field(0.1, ge=0.0, le=1.0, description="Loudness of the test tone.")


class TemplateEngine:
    """Implements cassetted.music.base.MusicEngine: a spec in, float32 stereo audio out.

    It runs in a worker thread, must be deterministic for a spec (seed included), must
    return round(duration_s * sample_rate) frames, and reports progress as it goes."""

    name = "template"

    def __init__(self, settings: TemplateSettings, sample_rate: int) -> None:
        self.settings = settings
        self.sample_rate = sample_rate

    def generate(self, spec: SongSpec, progress: ProgressCallback) -> Audio:
        frames = round(spec.duration_s * self.sample_rate)
        t = np.arange(frames, dtype=np.float32) / self.sample_rate
        tone = self.settings.level * np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
        progress(1.0, None)  # raises Cancelled when the job was cancelled: let it through
        return Audio(np.stack([tone, tone], axis=1), self.sample_rate)


def create(settings: Any, credentials: Any = None) -> TemplateEngine:
    """The factory: the daemon's Settings (read your own table with plugin_settings) and
    the CredentialStore (None in the CLI without a database)."""
    own = settings.plugin_settings(TemplateSettings)
    return TemplateEngine(own, settings.generation.sample_rate)


# What the entry point names. Keep the module cheap to import: the factory is a
# "module:function" string, so a heavy engine (torch) can live in another module.
PLUGIN = EnginePlugin(
    name="template",
    factory=f"{__name__}:create",
    capabilities=EngineCapabilities(),  # text2music only; no LoRAs, no own lyrics
    settings_section="template",
    settings_model=TemplateSettings,
    description="a sine tone: the smallest engine there is",
)
