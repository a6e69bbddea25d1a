"""The `[lyrics]` configuration section: which providers write lyrics, in which order, and how.

Mounted by config.py as `Settings.lyrics`. The provider models (OllamaSettings,
OpenAISettings) are the settings models of their plugins (lyrics/plugins.py). API keys are
NOT configured here: they live Fernet-encrypted in the database (`cassetted keys set
PROVIDER`), one per provider name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from cassetted.lyrics.plugin import LyricsPlugin

_ENDPOINT_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OllamaSettings(_Section):
    """A local (or LAN) Ollama server, spoken to with the official `ollama` client."""

    host: str = Field("http://127.0.0.1:11434", description="Ollama server URL.")
    model: str = Field("llama3.2:3b", description="Model tag; it must already be pulled.")
    temperature: float = Field(0.8, ge=0.0, le=2.0, description="Sampling temperature.")
    timeout_s: float = Field(60.0, gt=0, le=600, description="Whole-request limit in seconds.")
    keep_alive: str | None = Field(None, description='How long Ollama keeps the model loaded, e.g. "10m".')
    stream: bool = Field(False, description="Ask for a streamed (NDJSON) reply; `timeout_s` then "
                                            "bounds the whole stream, not just each read.")


class OpenAISettings(_Section):
    """An endpoint speaking the OpenAI chat-completions protocol (OpenAI, Comet API, LM Studio,
    vLLM, llama.cpp server). Its API key, if any, is stored under the provider's name."""

    base_url: str = Field("https://api.openai.com/v1",
                          description="Up to and including /v1; /chat/completions is appended.")
    model: str = Field("gpt-4o-mini", description="Model name as the endpoint knows it.")
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    timeout_s: float = Field(60.0, gt=0, le=600, description="Whole-request limit in seconds.")
    max_tokens: int = Field(1500, ge=64, le=8192, description="Upper bound on the reply length.")
    json_mode: bool = Field(True, description='Send response_format {"type": "json_object"}; '
                                              "turn off for servers that reject it.")
    stream: bool = Field(False, description="Ask for an SSE stream (replies are streamed "
                                            "or not; both are understood either way).")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")


class LyricsSettings(_Section):
    """Which lyrics providers are tried, in order, and their settings.

    ```toml
    [lyrics]
    chain = ["ollama", "comet", "builtin"]

    [lyrics.ollama]
    model = "llama3.2:3b"

    [lyrics.endpoints.comet]          # any OpenAI-compatible endpoint, named by its table
    base_url = "https://api.cometapi.com/v1"
    model = "gpt-4o-mini"

    [lyrics.user_providers]           # who prefers which provider (before the chain)
    anna = "comet"
    ```

    The order for one song: the request's `lyrics_provider`, then the requesting user's entry
    in `user_providers`, then `chain` (and `builtin` last when `fallback_to_builtin`).
    """

    chain: list[str] = Field(
        default_factory=lambda: ["builtin"],
        description="Provider names tried in order: builtin, ollama, openai or an endpoint name.")
    fallback_to_builtin: bool = Field(
        True, description="Append `builtin` when the chain lacks it, so a song always gets lyrics.")
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    endpoints: dict[str, OpenAISettings] = Field(
        default_factory=dict,
        description="More OpenAI-compatible endpoints by name (comet, lmstudio, vllm, ...).")
    user_providers: dict[str, str] = Field(
        default_factory=dict,
        description="User name -> the provider tried first for that user's songs (builtin, "
                    "ollama, openai or an endpoint name). A request's own `lyrics_provider` "
                    "still goes before it; the configured chain follows.")

    @field_validator("endpoints")
    @classmethod
    def _endpoint_names(cls, endpoints: dict[str, OpenAISettings]) -> dict[str, OpenAISettings]:
        for name in endpoints:
            if name in _registered():
                raise ValueError(f"endpoint name {name!r} is reserved")
            if not re.fullmatch(_ENDPOINT_NAME, name):
                raise ValueError(f"endpoint name {name!r} must be lowercase letters, digits, _ or -")
        return endpoints

    @model_validator(mode="after")
    def _chain_names_known(self) -> LyricsSettings:
        unknown = [name for name in self.chain if name not in self.provider_names]
        if unknown:
            raise ValueError(f"chain: unknown provider(s) {', '.join(unknown)}; "
                             f"known: {', '.join(self.provider_names)}")
        wrong = [f"{user} = {name!r}" for user, name in self.user_providers.items()
                 if name not in self.provider_names]
        if wrong:
            raise ValueError(f"user_providers: unknown provider in {', '.join(wrong)}; "
                             f"known: {', '.join(self.provider_names)}")
        return self

    @property
    def provider_names(self) -> tuple[str, ...]:
        """Every name a chain, a request or a user preference may use."""
        return (*_registered(), *self.endpoints)

    def section(self, plugin: LyricsPlugin) -> BaseModel | None:
        """The parsed `[lyrics.<section>]` table of a provider plugin (None: it has none)."""
        if plugin.settings_section is None:
            return None
        section: BaseModel = getattr(self, plugin.settings_section)
        return section


def _registered() -> tuple[str, ...]:
    """The registered providers' names (imported here: the registry's module names this one)."""
    from cassetted.lyrics.plugin import LYRICS_PLUGINS

    return LYRICS_PLUGINS.names()
