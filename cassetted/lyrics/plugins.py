"""The built-in lyrics providers' descriptors (entry points of `cassetted.lyrics`)."""

from __future__ import annotations

from cassetted.lyrics.plugin import LyricsCapabilities, LyricsPlugin
from cassetted.lyrics.settings import OllamaSettings, OpenAISettings

BUILTIN = LyricsPlugin(
    name="builtin",
    factory="cassetted.lyrics.builtin:create",
    capabilities=LyricsCapabilities(offline=True),
    description="rule-based, offline, no model",
)

OLLAMA = LyricsPlugin(
    name="ollama",
    factory="cassetted.lyrics.ollama:create",
    # A key is optional: for an Ollama behind an authenticating proxy, or ollama.com.
    capabilities=LyricsCapabilities(needs_credentials=True),
    settings_section="ollama",
    settings_model=OllamaSettings,
    description="a local or LAN Ollama server",
)

OPENAI = LyricsPlugin(
    name="openai",
    factory="cassetted.lyrics.openai:create",
    capabilities=LyricsCapabilities(needs_credentials=True, endpoints=True),
    settings_section="openai",
    settings_model=OpenAISettings,
    description="the OpenAI chat API, or any compatible endpoint",
)
