"""What a lyrics provider plugin declares, and the registry of the `cassetted.lyrics` group.

An entry point names one LyricsPlugin: the provider's name, its capabilities, the model
of its `[lyrics.<section>]` table and a lazy factory. The chain builds providers through
it (lyrics/chain.py), so a new provider is one module plus one entry-point line (see
lyrics/_template.py). The entry points come from installed package metadata: a checkout
must be pip-installed (scripts/run and scripts/test do this) for the built-ins to be found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from pydantic import BaseModel

from cassetted.plugins import LYRICS_GROUP, Registry, load_factory

if TYPE_CHECKING:
    from cassetted.lyrics.base import LyricsProvider
    from cassetted.store.credentials import Secret

# Called at write time (in the worker thread): the requesting user's stored key, if any.
KeyLookup = Callable[[], "Secret | None"]


@dataclass(frozen=True)
class LyricsCapabilities:
    """- `needs_credentials`: it reads an API key stored under its name (`keys set NAME`).
    - `offline`: it writes without any network service.
    - `endpoints`: it also serves the named `[lyrics.endpoints.<name>]` tables (OpenAI-compatible)."""

    needs_credentials: bool = False
    offline: bool = False
    endpoints: bool = False


@dataclass(frozen=True)
class LyricsPlugin:
    """The descriptor an entry point of `cassetted.lyrics` names.

    `factory` is "module:function", imported on first use: factory(name, section, api_key)
    returns the LyricsProvider, `section` being the parsed `[lyrics.<settings_section>]`
    table (or an endpoint's table) or None for a provider without settings.
    """

    name: str
    factory: str
    capabilities: LyricsCapabilities = field(default_factory=LyricsCapabilities)
    settings_section: str | None = None
    settings_model: type[BaseModel] | None = None
    description: str = ""

    def create(self, name: str, section: BaseModel | None, api_key: KeyLookup) -> LyricsProvider:
        return cast("LyricsProvider", load_factory(self.factory)(name, section, api_key))


BUILTIN_PROVIDERS: tuple[str, ...] = ("builtin", "ollama", "openai")

LYRICS_PLUGINS: Registry[LyricsPlugin] = Registry(LYRICS_GROUP, "lyrics provider", LyricsPlugin,
                                                  BUILTIN_PROVIDERS)
