"""Shared fixtures: specs, a SQLite store in tmp, and a loopback HTTP server for LLM fakes
(the server is tests.fixtures.services.LoopbackHTTP; what it answers is each test's)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from cassetted.contract.schemas import SongSpec
from tests.fixtures.services import LoopbackHTTP


def make_spec(**overrides: Any) -> SongSpec:
    values: dict[str, Any] = {"prompt": "a song about my cat", "genre": "pop", "mood": "uplifting",
                              "bpm": 110, "key": "C major", "duration_s": 60, "seed": 7}
    values.update(overrides)
    return SongSpec(**values)


@pytest.fixture
def spec() -> Callable[..., SongSpec]:
    return make_spec


@pytest.fixture
def db(tmp_path):
    from cassetted.store.database import open_database

    database = open_database(None, tmp_path)
    yield database
    database.close()


GOOD_LYRICS = ("[Verse]\nMy cat is sleeping in the sun\nShe dreams of mice and having fun\n"
               "[Chorus]\nOh my cat, my furry friend\nYou stay with me until the end")


def chat_json(content: str) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}]}


def song_json(lyrics: str = GOOD_LYRICS, title: str = "My Cat", style: str = "acoustic pop") -> str:
    return json.dumps({"title": title, "lyrics": lyrics, "style": style})


@dataclass
class Reply:
    status: int = 200
    body: bytes | list[bytes] = b""
    content_type: str = "application/json"
    delay_s: float = 0.0         # before the status line
    chunk_delay_s: float = 0.0   # before each piece of a streamed (list) body


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeServer:
    """A loopback HTTP server; `respond(path, body) -> Reply` decides each answer."""

    url: str
    requests: list[Seen] = field(default_factory=list)
    respond: Callable[[str, dict[str, Any]], Reply] = lambda path, body: Reply(404)


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    state: dict[str, FakeServer] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:
            server = state["server"]
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            body = json.loads(raw or b"{}")
            server.requests.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            reply = server.respond(self.path, body)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            try:
                if isinstance(reply.body, list):  # stream: chunked transfer, one piece at a time
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for piece in reply.body:
                        if reply.chunk_delay_s:
                            time.sleep(reply.chunk_delay_s)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    http = LoopbackHTTP(Handler)  # a handler still sleeping does not hold up the test
    server = FakeServer(url=http.url)
    state["server"] = server
    try:
        yield server
    finally:
        http.close()
