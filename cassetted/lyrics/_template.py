"""An annotated template of a lyrics provider plugin: copy it into your own package.

A plugin is this one module plus one line in your package's pyproject.toml:

    [project.entry-points."cassetted.lyrics"]
    myprovider = "my_package.my_provider:PLUGIN"

then `pip install` your package next to cassetted; `[lyrics] chain` and requests
("lyrics_provider") may name it, and its settings live in `[lyrics.<settings_section>]`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cassetted.contract.schemas import SongSpec
from cassetted.lyrics.base import LyricsError, LyricsResult
from cassetted.lyrics.plugin import KeyLookup, LyricsCapabilities, LyricsPlugin


class TemplateLyricsSettings(BaseModel):
    """The provider's table, `[lyrics.template]` (unknown keys stop the daemon)."""

    model_config = ConfigDict(extra="forbid")

    chorus: str = Field("la la la", min_length=1, description="The line every chorus sings.")


class TemplateLyrics:
    """Implements cassetted.lyrics.base.LyricsProvider. `write` blocks (it runs in a worker
    thread) and raises on failure: the chain then tries the next provider."""

    def __init__(self, name: str, settings: TemplateLyricsSettings, api_key: KeyLookup) -> None:
        self.name = name
        self.settings = settings
        self._api_key = api_key  # call it at write time: the user may `keys set` meanwhile

    def write(self, spec: SongSpec) -> LyricsResult:
        if spec.instrumental:
            return LyricsResult(title="", lyrics="[Instrumental]", style="", provider=self.name)
        if not spec.prompt.strip():
            raise LyricsError("nothing to write about")
        lyrics = f"[Verse]\n{spec.prompt.strip()[:80]}\n\n[Chorus]\n{self.settings.chorus}"
        return LyricsResult(title="", lyrics=lyrics, style=spec.genre, provider=self.name)


def create(name: str, section: TemplateLyricsSettings | None, api_key: KeyLookup) -> TemplateLyrics:
    """The factory: its name, its parsed table and the requesting user's key lookup."""
    return TemplateLyrics(name, section or TemplateLyricsSettings(), api_key)


PLUGIN = LyricsPlugin(
    name="template",
    factory=f"{__name__}:create",
    capabilities=LyricsCapabilities(offline=True),
    settings_section="template",
    settings_model=TemplateLyricsSettings,
    description="verse from the prompt, a fixed chorus",
)
