"""Lyrics from any endpoint speaking the OpenAI chat-completions protocol, over plain HTTP
(urllib, no SDK): OpenAI, Comet API, LM Studio, vLLM, llama.cpp server.

`chat` is the one HTTP path: `write` (lyrics) and the LLM-assisted voice parse
(`lyrics.ask`) both go through it. The API key is looked up when a request is sent (per
user, falling back to the household key), sent only in the Authorization header, and never
put in a log line or an exception.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from cassetted import redaction
from cassetted.contract.schemas import SongSpec
from cassetted.lyrics._llm import build_messages, parse_reply
from cassetted.lyrics.base import LyricsError, LyricsResult
from cassetted.lyrics.settings import OpenAISettings

if TYPE_CHECKING:
    from cassetted.store.credentials import Secret

log = logging.getLogger(__name__)

KeyLookup = Callable[[], "Secret | None"]


class OpenAICompatibleLyrics:
    """One OpenAI-compatible endpoint; `name` is "openai" or the endpoint's configured name."""

    def __init__(self, settings: OpenAISettings, name: str = "openai",
                 api_key: KeyLookup | None = None) -> None:
        self.name = name
        self.settings = settings
        self._api_key = api_key or (lambda: None)

    def __repr__(self) -> str:
        return f"OpenAICompatibleLyrics(name={self.name!r}, base_url={self.settings.base_url!r})"

    def write(self, spec: SongSpec) -> LyricsResult:
        return parse_reply(self.chat(build_messages(spec), seed=spec.seed), spec, self.name)

    def chat(self, messages: list[dict[str, str]], *, seed: int = 0,
             temperature: float | None = None, max_tokens: int | None = None) -> str:
        """Blocking: the assistant's text for `messages`, a JSON object asked for (when
        `json_mode`). `temperature` and `max_tokens` default to the settings. Raises
        LyricsError (timeout, HTTP error, unreadable body), never with the key in it."""
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": messages,
            "temperature": self.settings.temperature if temperature is None else temperature,
            "max_tokens": self.settings.max_tokens if max_tokens is None else max_tokens,
            "seed": seed,
            "stream": self.settings.stream,
        }
        return self._complete(body, json_mode=self.settings.json_mode)

    # -- HTTP ----------------------------------------------------------------------------

    def _complete(self, body: dict[str, Any], json_mode: bool) -> str:
        sent = {**body, "response_format": {"type": "json_object"}} if json_mode else body
        request = urllib.request.Request(
            self.settings.base_url + "/chat/completions",
            data=json.dumps(sent).encode(),
            method="POST",
            headers={"Content-Type": "application/json",
                     "Accept": "text/event-stream, application/json"},
        )
        key = self._api_key()
        if key is not None:
            # Unredirected: a redirect to another host must not carry the key along.
            request.add_unredirected_header("Authorization", f"Bearer {key.reveal()}")
        deadline = time.monotonic() + self.settings.timeout_s
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                return self._read(response, deadline)
        except urllib.error.HTTPError as error:
            status = error.code
            detail = _error_code(error, key.reveal() if key is not None else None)
            error.close()
            if status == 400 and json_mode and "response_format" in detail:
                log.info("%s: endpoint rejects response_format; retrying without", self.name)
                return self._complete(body, json_mode=False)
            raise LyricsError(f"{self.name}: HTTP {status}{detail and f' ({detail})'}") from None
        except TimeoutError:
            raise LyricsError(f"{self.name}: timed out after {self.settings.timeout_s:g} s") from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise LyricsError(f"{self.name}: timed out after {self.settings.timeout_s:g} s") from None
            raise LyricsError(f"{self.name}: cannot reach endpoint ({type(reason).__name__})") from None
        except (OSError, ValueError) as error:
            raise LyricsError(f"{self.name}: bad response ({type(error).__name__})") from None

    def _read(self, response: Any, deadline: float) -> str:
        """The assistant's text from a JSON body or an SSE stream, whichever came back."""
        content_type = response.headers.get("Content-Type", "")
        if "text/event-stream" in content_type:
            return "".join(_sse_content(response, deadline, self.name))
        raw = response.read()
        if time.monotonic() > deadline:
            raise LyricsError(f"{self.name}: timed out")
        text = raw.decode("utf-8", "replace")
        if not text.lstrip().startswith("{") and re.search(r"^data:", text, re.MULTILINE):
            # a stream without the event-stream content type
            return "".join(_sse_content(iter(text.splitlines(True)), deadline, self.name))
        try:
            data = json.loads(text)
            return data["choices"][0]["message"]["content"] or ""
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise LyricsError(f"{self.name}: not a chat-completions response") from None


def _sse_content(lines: Any, deadline: float, name: str) -> Iterator[str]:
    """Yield the `delta.content` pieces of `data:` events until `[DONE]`."""
    for raw in lines:
        if time.monotonic() > deadline:
            raise LyricsError(f"{name}: timed out while streaming")
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.strip()
        if not line.startswith("data:"):
            continue  # comments (": keep-alive"), event names, blank separators
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            choice = json.loads(payload)["choices"][0]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            continue
        piece = (choice.get("delta") or {}).get("content") or (choice.get("message") or {}).get("content")
        if piece:
            yield piece


def _error_code(error: urllib.error.HTTPError, secret: str | None = None) -> str:
    """The short machine code of an error body (`invalid_api_key`), never the message:
    some services echo part of the key in it. A code that is (part of) the key sent, as a
    key of only letters, digits and underscores could be, is dropped too."""
    try:
        body = json.loads(error.read(4096).decode("utf-8", "replace"))
        detail = body.get("error") if isinstance(body, dict) else None
        parts = []
        if isinstance(detail, dict):
            for field in ("code", "type", "param"):
                value = detail.get(field)
                if isinstance(value, str) and value.replace("_", "").isalnum() and len(value) < 40:
                    if secret and (secret in value or (len(value) >= 6 and value in secret)
                                   or redaction.resembles(value, secret)):
                        continue  # the key, a piece of it, or the key in a disguise
                    parts.append(value)
        return " ".join(parts)
    except (OSError, ValueError, http.client.HTTPException):  # unreadable or not JSON: no code
        return ""


def create(name: str, section: OpenAISettings, api_key: KeyLookup) -> OpenAICompatibleLyrics:
    """Plugin factory (cassetted.lyrics.plugins.OPENAI): `[lyrics.openai]` or the endpoint
    table named `name`, and the key stored under that name."""
    return OpenAICompatibleLyrics(section, name=name, api_key=api_key)
