"""The ollama provider through the real `ollama` client against a loopback `/api/chat`."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ollama")

from cassetted.lyrics.base import LyricsError
from cassetted.lyrics.ollama import OllamaLyrics
from cassetted.lyrics.settings import OllamaSettings

from .conftest import Reply, make_spec, song_json


def ollama_reply(content: str) -> bytes:
    return json.dumps({"model": "llama3.2:3b", "created_at": "2026-01-01T00:00:00Z",
                       "message": {"role": "assistant", "content": content},
                       "done": True, "done_reason": "stop"}).encode()


def provider(server, **settings) -> OllamaLyrics:
    return OllamaLyrics(OllamaSettings(host=server.url, timeout_s=2.0, **settings))


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


@pytest.mark.parametrize("reply, reason", [
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
    with pytest.raises(LyricsError, match="cannot reach|failed"):
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
