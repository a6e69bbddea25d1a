"""The provider chain: try each provider in order; the first usable lyrics win.

A provider fails by raising (timeout, HTTP error, refusal, unusable output); any exception
moves on to the next one, so one broken provider never costs a song. The result says which
provider wrote the lyrics, and its notes say which ones were skipped and why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import BaseModel

from cassetted.contract.schemas import MAX_LYRICS_CHARS, SongSpec
from cassetted.lyrics._structure import INSTRUMENTAL
from cassetted.lyrics.base import LyricsError, LyricsProvider, LyricsResult
from cassetted.lyrics.plugin import LYRICS_PLUGINS
from cassetted.lyrics.safety import is_child_safe
from cassetted.lyrics.settings import LyricsSettings

if TYPE_CHECKING:
    from cassetted.store.credentials import CredentialStore, Secret

log = logging.getLogger(__name__)


class UnknownProviderError(ValueError):
    """A request or preference names a provider that is not configured."""


class LyricsChain:
    """Providers in the order they are tried."""

    def __init__(self, providers: Sequence[LyricsProvider]) -> None:
        if not providers:
            raise ValueError("a chain needs at least one provider")
        self.providers = tuple(providers)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.providers)

    def __repr__(self) -> str:
        return f"LyricsChain({' -> '.join(self.names)})"

    def write(self, spec: SongSpec) -> LyricsResult:
        """Blocking: the first provider's usable result, or LyricsError when all failed."""
        failures: list[str] = []
        for provider in self.providers:
            try:
                result = provider.write(spec)
                _final_check(result, spec)
            except Exception as error:  # noqa: BLE001 - any failure of one provider is the next one's turn
                reason = str(error) if isinstance(error, LyricsError) else type(error).__name__
                log.warning("lyrics provider %s failed: %s", provider.name, reason)
                failures.append(f"{provider.name} skipped: {reason}")
                continue
            if failures:
                result = replace(result, notes=(*failures, *result.notes))
            log.info("lyrics written by %s", result.provider)
            return result
        raise LyricsError("no lyrics provider succeeded: " + "; ".join(failures))


def _final_check(result: LyricsResult, spec: SongSpec) -> None:
    """What holds for every provider, even one written later without `_validate`."""
    if spec.instrumental:
        if result.lyrics != INSTRUMENTAL:
            raise LyricsError("instrumental song got lyrics")
        return
    if not result.lyrics.strip() or len(result.lyrics) > MAX_LYRICS_CHARS:
        raise LyricsError("lyrics empty or too long")
    if spec.child_safe and not is_child_safe(f"{result.title}\n{result.lyrics}"):
        raise LyricsError("lyrics not child-safe")


def chain_order(settings: LyricsSettings, preferred: str | Sequence[str | None] | None) -> list[str]:
    """Configured chain with the preferred provider(s) moved to the front, builtin last
    when `fallback_to_builtin`. A preference naming an unknown provider is an error."""
    wanted = [preferred] if isinstance(preferred, str) or preferred is None else list(preferred)
    front = [name for name in wanted if name]
    for name in front:
        if name not in settings.provider_names:
            raise UnknownProviderError(
                f"unknown lyrics provider {name!r}; known: {', '.join(settings.provider_names)}")
    order: list[str] = []
    for name in [*front, *settings.chain]:
        if name not in order:
            order.append(name)
    if settings.fallback_to_builtin and "builtin" not in order:
        order.append("builtin")
    return order


def _key_lookup(credentials: CredentialStore | None, provider: str,
                user: str | None) -> Callable[[], Secret | None]:
    """Looked up at write time (in the worker thread), for this user only."""
    if credentials is None:
        return lambda: None
    return lambda: credentials.get(provider, user)


def build_provider(name: str, settings: LyricsSettings, credentials: CredentialStore | None = None,
                   user: str | None = None) -> LyricsProvider:
    """The provider `name` through its plugin (or an endpoint table through the plugin that
    serves endpoints), with its settings table and the user's key lookup."""
    plugin = LYRICS_PLUGINS.get(name)
    section: BaseModel | None
    if plugin is not None:
        section = settings.section(plugin)
    elif name in settings.endpoints:
        plugin = next(p for p in LYRICS_PLUGINS.all().values() if p.capabilities.endpoints)
        section = settings.endpoints[name]
    else:
        raise UnknownProviderError(f"unknown lyrics provider {name!r}")
    return plugin.create(name, section, _key_lookup(credentials, name, user))


def build_chain(settings: LyricsSettings, credentials: CredentialStore | None = None,
                user: str | None = None,
                preferred: str | Sequence[str | None] | None = None) -> LyricsChain:
    """The chain for one request: `preferred` (the request's `lyrics_provider`, then the
    user's preferred provider; either may be None) goes first, then the configured chain.
    Keys are looked up for `user` with the household key as the only fallback."""
    return LyricsChain([build_provider(name, settings, credentials, user)
                        for name in chain_order(settings, preferred)])
