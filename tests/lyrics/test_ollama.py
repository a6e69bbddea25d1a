"""The ollama provider through the real `ollama` client against a loopback `/api/chat`."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("ollama")

from cassetted.lyrics.base import LyricsError
from cassetted.lyrics.chain import build_chain
from cassetted.lyrics.ollama import OllamaLyrics
from cassetted.lyrics.settings import LyricsSettings, OllamaSettings
from cassetted.store.credentials import Secret

from .conftest import Reply, make_spec, song_json


def ollama_reply(content: str) -> bytes:
    return json.dumps({"model": "llama3.2:3b", "created_at": "2026-01-01T00:00:00Z",
                       "message": {"role": "assistant", "content": content},
                       "done": True, "done_reason": "stop"}).encode()


def provider(server, **settings) -> OllamaLyrics:
    values = {"host": server.url, "timeout_s": 2.0}
    values.update(settings)
    return OllamaLyrics(OllamaSettings(**values))


def test_chat_with_json_format(fake_server):
    fake_server.respond = lambda path, body: Reply(body=ollama_reply(song_json()))
    result = provider(fake_server, temperature=0.3).write(make_spec(seed=11))
    assert result.provider == "ollama" and result.title == "My Cat"
    assert result.lyrics.startswith("[Verse]")
    seen = fake_server.requests[0]
    assert seen.path == "/api/chat"
    assert seen.body["model"] == "llama3.2:3b" and seen.body["format"] == "json"
    assert seen.body["stream"] is False
    assert seen.body["options"] == {"temperature": 0.3, "seed": 11}
    assert [m["role"] for m in seen.body["messages"]] == ["system", "user"]


@pytest.mark.parametrize(("reply", "reason"), [
    (Reply(404, b'{"error": "model \\"llama3.2:3b\\" not found, try pulling it first"}'), "HTTP 404"),
    (Reply(delay_s=2.5, body=ollama_reply(song_json())), "timed out"),
    (Reply(body=ollama_reply("I cannot write that.")), "refusal"),
    (Reply(body=ollama_reply('{"title": "x"}')), "lyrics"),
])
def test_failures_raise(fake_server, reply, reason):
    fake_server.respond = lambda path, body: reply
    with pytest.raises(LyricsError, match=reason):
        OllamaLyrics(OllamaSettings(host=fake_server.url, timeout_s=1.0)).write(make_spec())


def test_no_server():
    with pytest.raises(LyricsError, match=r"cannot reach|failed"):
        OllamaLyrics(OllamaSettings(host="http://127.0.0.1:9", timeout_s=1.0)).write(make_spec())


def test_missing_client_is_a_clear_lyrics_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ollama(name, *args, **kwargs):
        if name == "ollama":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ollama)
    with pytest.raises(LyricsError, match="not installed"):
        OllamaLyrics(OllamaSettings()).write(make_spec())


# ------------------------------------------------------------------ streaming, errors, malformed


@pytest.fixture(autouse=True)
def no_ollama_env(monkeypatch):
    # The client would send $OLLAMA_API_KEY as a Bearer token on its own.
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    monkeypatch.delenv("OLLAMA_HOST", raising=False)


def ndjson(content: str, pieces: int = 4, done: bool = True) -> list[bytes]:
    """Ollama's streamed /api/chat: one ChatResponse a line, the last one `done`."""
    size = max(1, -(-len(content) // pieces))
    lines = [json.dumps({"model": "llama3.2:3b", "created_at": "2026-01-01T00:00:00Z",
                         "message": {"role": "assistant", "content": content[i:i + size]},
                         "done": False}).encode() + b"\n"
             for i in range(0, len(content), size)]
    if done:
        lines.append(json.dumps({"model": "llama3.2:3b", "created_at": "2026-01-01T00:00:01Z",
                                 "message": {"role": "assistant", "content": ""}, "done": True,
                                 "done_reason": "stop", "eval_count": 42}).encode() + b"\n")
    return lines


def stream_reply(lines: list[bytes], **kwargs) -> Reply:
    return Reply(body=lines, content_type="application/x-ndjson", **kwargs)


def test_streamed_chat(fake_server):
    fake_server.respond = lambda path, body: stream_reply(ndjson(song_json(), pieces=6))
    result = provider(fake_server, stream=True).write(make_spec())
    assert result.provider == "ollama" and result.title == "My Cat"
    assert result.lyrics.startswith("[Verse]\nMy cat is sleeping")
    seen = fake_server.requests[0]
    assert seen.path == "/api/chat" and seen.body["stream"] is True
    assert seen.body["format"] == "json"


def test_stream_lines_split_across_chunks(fake_server):
    """Transfer chunks need not end at line ends; the client re-assembles the lines."""
    data = b"".join(ndjson(song_json(), pieces=5))
    chunks = [data[i:i + 7] for i in range(0, len(data), 7)]
    fake_server.respond = lambda path, body: stream_reply(chunks)
    assert provider(fake_server, stream=True).write(make_spec()).title == "My Cat"


def test_stream_slower_than_the_whole_request_limit_times_out(fake_server):
    # each line comes well within a read timeout, the stream as a whole does not
    fake_server.respond = lambda path, body: stream_reply(ndjson(song_json(), pieces=8),
                                                          chunk_delay_s=0.3)
    slow = OllamaLyrics(OllamaSettings(host=fake_server.url, timeout_s=1.0, stream=True))
    started = time.monotonic()
    with pytest.raises(LyricsError, match="timed out"):
        slow.write(make_spec())
    assert time.monotonic() - started < 2.5


def _error(status: int, message: str) -> Reply:
    return Reply(status, json.dumps({"error": message}).encode())


FAILURES = [
    pytest.param(lambda stream: _error(429, "too many requests"), "HTTP 429", id="429"),
    pytest.param(lambda stream: _error(500, "llama runner process has terminated"), "HTTP 500",
                 id="500"),
    pytest.param(lambda stream: Reply(503, b"<html>Service Unavailable</html>",
                                      content_type="text/html"), "HTTP 503", id="503-html"),
    pytest.param(lambda stream: Reply(delay_s=2.0, body=ollama_reply(song_json())), "timed out",
                 id="slow"),
    pytest.param(lambda stream: stream_reply(ndjson("I'm sorry, but I can't help with that."))
                 if stream else Reply(body=ollama_reply("I'm sorry, but I can't help with that.")),
                 "refusal", id="refusal"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(("make_reply", "reason"), FAILURES)
def test_http_errors_and_timeouts(fake_server, stream, make_reply, reason):
    fake_server.respond = lambda path, body: make_reply(stream)
    with pytest.raises(LyricsError, match=reason):
        provider(fake_server, timeout_s=1.0, stream=stream).write(make_spec())


@pytest.mark.parametrize(("reply", "reason"), [
    (Reply(body=b"this is not json"), "malformed"),
    (Reply(body=b'{"model": "llama3.2:3b", "message": '), "malformed"),  # cut off
    (Reply(body=b"[1, 2, 3]"), "malformed"),
    (Reply(body=b'{"model": "llama3.2:3b", "done": true}'), "malformed"),  # no message
    (Reply(body=b'{"message": {"role": "assistant", "content": 42}, "done": true}'), "malformed"),
    (Reply(body=ollama_reply("not json, just prose about a cat")), "not JSON"),
    (Reply(body=ollama_reply("")), "empty"),
], ids=["not-json", "truncated", "list", "no-message", "content-not-text", "prose", "empty"])
def test_malformed_bodies(fake_server, reply, reason):
    fake_server.respond = lambda path, body: reply
    with pytest.raises(LyricsError, match=reason):
        provider(fake_server).write(make_spec())


@pytest.mark.parametrize(("lines", "reason"), [
    ([b"garbage that is not json\n"], "malformed"),
    ([ndjson(song_json())[0], b'{"error": "an error was encountered while running the model"}\n'],
     "mid-stream"),
    (ndjson(song_json(), done=False), "before it was done"),  # connection ends early
    ([b'["a", "list"]\n'], "malformed"),
    ([b'{"model": "m", "message": {"role": "assistant", "content": "x"}, "done": true}\n'],
     "not JSON"),
], ids=["garbage", "error-line", "no-done", "list-line", "done-but-prose"])
def test_malformed_streams(fake_server, lines, reason):
    fake_server.respond = lambda path, body: stream_reply(lines)
    with pytest.raises(LyricsError, match=reason):
        provider(fake_server, stream=True).write(make_spec())


def test_stored_key_sent_as_bearer_and_never_in_the_error(fake_server):
    key = "ollama_proxy_key_7Yd2Kq0Zx"
    echo = json.dumps({"error": f"unauthorized: bad token Bearer {key}"}).encode()
    fake_server.respond = lambda path, body: Reply(401, echo)
    writer = OllamaLyrics(OllamaSettings(host=fake_server.url, timeout_s=1.0),
                          api_key=lambda: Secret(key))
    with pytest.raises(LyricsError) as caught:
        writer.write(make_spec())
    assert "HTTP 401" in str(caught.value) and key not in str(caught.value)
    assert key not in repr(writer)
    assert fake_server.requests[0].headers["authorization"] == f"Bearer {key}"


def test_no_key_no_authorization_header(fake_server):
    fake_server.respond = lambda path, body: stream_reply(ndjson(song_json()))
    provider(fake_server, stream=True).write(make_spec())
    assert "authorization" not in fake_server.requests[0].headers


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_chain_falls_back_when_ollama_is_slow(fake_server, stream):
    fake_server.respond = lambda path, body: Reply(delay_s=2.0, body=ollama_reply(song_json()))
    settings = LyricsSettings(chain=["ollama"], ollama={"host": fake_server.url, "timeout_s": 1.0,
                                                        "stream": stream})
    result = build_chain(settings).write(make_spec())
    assert result.provider == "builtin" and result.lyrics.startswith("[Verse]")
    assert result.notes[0].startswith("ollama skipped: ollama: timed out")


@pytest.mark.parametrize("status", [429, 500])
def test_chain_falls_back_on_server_errors(fake_server, status):
    fake_server.respond = lambda path, body: _error(status, "busy")
    settings = LyricsSettings(chain=["ollama", "builtin"],
                              ollama={"host": fake_server.url, "timeout_s": 1.0})
    result = build_chain(settings).write(make_spec())
    assert result.provider == "builtin" and f"HTTP {status}" in result.notes[0]


def test_stream_setting_defaults_off():
    assert OllamaSettings().stream is False
    assert LyricsSettings.model_validate({"ollama": {"stream": True}}).ollama.stream is True
