"""The lyrics provider interface: a SongSpec in, title + tagged lyrics + style caption out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cassetted.contract.schemas import SongSpec


class LyricsError(Exception):
    """A provider could not deliver usable lyrics (timeout, refusal, unusable output)."""


@dataclass(frozen=True)
class LyricsResult:
    """What a provider returns.

    `lyrics` uses structure tags on their own lines ([Verse], [Chorus], [Bridge], [Outro])
    or is exactly "[Instrumental]". `style` is a short caption for the music engine.
    """

    title: str
    lyrics: str
    style: str
    provider: str
    # Anything the listener or the log should know: a language fallback, providers skipped.
    notes: tuple[str, ...] = ()


class LyricsProvider(Protocol):
    """What every provider MUST provide: a `name` and a blocking `write` (run in a thread)."""

    name: str

    def write(self, spec: SongSpec) -> LyricsResult: ...


# What the pipeline calls to get a song's words: a provider's `write`, or the chain's.
LyricsWriter = Callable[[SongSpec], LyricsResult]
