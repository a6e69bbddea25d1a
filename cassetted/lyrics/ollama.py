"""Lyrics from an Ollama server through the official `ollama` client (optional extra,
imported when a song is written so the daemon runs without it).

`chat` is the one request path, for `write` (lyrics) and the LLM-assisted voice parse
(`lyrics.ask`) alike. Non-streamed (one JSON body) or streamed (`stream = true`: NDJSON,
one ChatResponse a line, the last with `"done": true`); `timeout_s` bounds the whole
request either way, not only each read, so a server that trickles bytes still hands the turn
to the next provider.
Error messages name the HTTP status, never the server's error text: a proxy in front of
Ollama may echo the Authorization header in it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from cassetted.contract.schemas import SongSpec
from cassetted.lyrics._llm import build_messages, parse_reply
from cassetted.lyrics.base import LyricsError, LyricsResult
from cassetted.lyrics.settings import OllamaSettings

if TYPE_CHECKING:
    from cassetted.store.credentials import Secret

log = logging.getLogger(__name__)


class OllamaLyrics:
    """`/api/chat` with format="json"; an optional stored key is sent as a Bearer token
    (for an Ollama behind an authenticating proxy or ollama.com)."""

    name = "ollama"

    def __init__(self, settings: OllamaSettings,
                 api_key: Callable[[], Secret | None] | None = None) -> None:
        self.settings = settings
        self._api_key = api_key or (lambda: None)

    def __repr__(self) -> str:
        return f"OllamaLyrics(host={self.settings.host!r}, model={self.settings.model!r})"

    def write(self, spec: SongSpec) -> LyricsResult:
        return parse_reply(self.chat(build_messages(spec), seed=spec.seed), spec, self.name)

    def chat(self, messages: list[dict[str, str]], *, seed: int = 0,
             temperature: float | None = None, max_tokens: int | None = None) -> str:
        """Blocking: the assistant's text for `messages`, with format="json". `temperature`
        defaults to the settings; `max_tokens` (Ollama's num_predict) to the model's own
        limit. Raises LyricsError (timeout, HTTP error, malformed body), never with the key
        or the server's error text in it."""
        try:
            import httpx
            import ollama
        except ImportError:
            raise LyricsError("ollama: the `ollama` package is not installed "
                              "(pip install 'cassetted[ollama]')") from None
        key = self._api_key()
        headers = {"Authorization": f"Bearer {key.reveal()}"} if key is not None else None
        options: dict[str, Any] = {
            "temperature": self.settings.temperature if temperature is None else temperature,
            "seed": seed,
        }
        if max_tokens is not None:
            options["num_predict"] = max_tokens
        timeout = self.settings.timeout_s
        deadline = time.monotonic() + timeout
        try:
            with ollama.Client(host=self.settings.host, timeout=timeout,
                               headers=headers) as client:
                reply = client.chat(
                    model=self.settings.model, messages=messages, format="json",
                    options=options, stream=self.settings.stream,
                    keep_alive=self.settings.keep_alive)
                if self.settings.stream:
                    content = _collect_stream(reply, deadline, timeout)
                else:
                    content = _content(reply)
            if time.monotonic() > deadline:
                raise LyricsError(f"ollama: timed out after {timeout:g} s")
        except LyricsError:
            raise
        except httpx.TimeoutException:
            raise LyricsError(f"ollama: timed out after {timeout:g} s") from None
        except ollama.ResponseError as error:
            if error.status_code < 0:  # an {"error": ...} line inside a 200 stream
                raise LyricsError("ollama: the server reported an error mid-stream") from None
            raise LyricsError(f"ollama: HTTP {error.status_code}") from None
        except ConnectionError:
            raise LyricsError(f"ollama: cannot reach {self.settings.host}") from None
        except (httpx.HTTPError, OSError) as error:
            raise LyricsError(f"ollama: request failed ({type(error).__name__})") from None
        except Exception as error:  # noqa: BLE001 - malformed body: not JSON, wrong shape
            raise LyricsError(f"ollama: malformed response ({type(error).__name__})") from None
        return content


def _content(response: Any) -> str:
    message = getattr(response, "message", None)
    return (message.content or "") if message is not None else ""


def _collect_stream(parts: Iterable[Any], deadline: float, timeout: float) -> str:
    """The message pieces of an NDJSON stream, joined; it must end with `done`."""
    pieces: list[str] = []
    done = False
    try:
        for part in parts:
            if time.monotonic() > deadline:
                raise LyricsError(f"ollama: timed out after {timeout:g} s while streaming")
            pieces.append(_content(part))
            if getattr(part, "done", False):
                done = True
                break
    finally:
        close = getattr(parts, "close", None)
        if close is not None:
            close()  # leave the stream's `with` now, not at garbage collection
    if not done:
        raise LyricsError("ollama: the stream ended before it was done")
    return "".join(pieces)


def create(name: str, section: OllamaSettings, api_key: Callable[[], Secret | None]) -> OllamaLyrics:
    """Plugin factory (cassetted.lyrics.plugins.OLLAMA): `[lyrics.ollama]`, the stored key."""
    return OllamaLyrics(section, api_key=api_key)
