"""Lyrics from an Ollama server through the official `ollama` client (optional extra,
imported when a song is written so the daemon runs without it)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from cassetted.lyrics._llm import build_messages, parse_reply
from cassetted.lyrics.base import LyricsError, LyricsResult
from cassetted.lyrics.settings import OllamaSettings
from cassetted.schemas import SongSpec

if TYPE_CHECKING:
    from cassetted.credentials import Secret

log = logging.getLogger(__name__)


class OllamaLyrics:
    """`/api/chat` with format="json"; an optional stored key is sent as a Bearer token
    (for an Ollama behind an authenticating proxy or ollama.com)."""

    name = "ollama"

    def __init__(self, settings: OllamaSettings,
                 api_key: Callable[[], "Secret | None"] | None = None) -> None:
        self.settings = settings
        self._api_key = api_key or (lambda: None)

    def __repr__(self) -> str:
        return f"OllamaLyrics(host={self.settings.host!r}, model={self.settings.model!r})"

    def write(self, spec: SongSpec) -> LyricsResult:
        try:
            import httpx
            import ollama
        except ImportError:
            raise LyricsError("ollama: the `ollama` package is not installed "
                              "(pip install 'cassetted[ollama]')") from None
        key = self._api_key()
        headers = {"Authorization": f"Bearer {key.reveal()}"} if key is not None else None
        options = {"temperature": self.settings.temperature, "seed": spec.seed}
        try:
            with ollama.Client(host=self.settings.host, timeout=self.settings.timeout_s,
                               headers=headers) as client:
                response = client.chat(
                    model=self.settings.model, messages=build_messages(spec), format="json",
                    options=options, stream=False, keep_alive=self.settings.keep_alive)
        except httpx.TimeoutException:
            raise LyricsError(f"ollama: timed out after {self.settings.timeout_s:g} s") from None
        except ollama.ResponseError as error:
            raise LyricsError(f"ollama: HTTP {error.status_code}") from None
        except ConnectionError:
            raise LyricsError(f"ollama: cannot reach {self.settings.host}") from None
        except (httpx.HTTPError, ValueError, OSError) as error:
            raise LyricsError(f"ollama: request failed ({type(error).__name__})") from None
        content = (response.message.content or "") if response.message else ""
        return parse_reply(content, spec, self.name)
