"""The chain: fallbacks to builtin on every kind of failure, preferences, per-user keys,
and secrets kept out of logs, notes and exceptions."""

from __future__ import annotations

import json
import logging

import pytest

from cassetted.lyrics.base import LyricsError
from cassetted.lyrics.chain import UnknownProviderError, build_chain, chain_order
from cassetted.lyrics.settings import LyricsSettings
from cassetted.store.credentials import ENV_KEY, CredentialStore

from .conftest import GOOD_LYRICS, Reply, chat_json, make_spec, song_json

ALICE_KEY = "sk-alice-4f9Qm2LrTz81PXk"
BOB_KEY = "sk-bob-77aa1Bc0dEfGhIjK"
HOUSE_KEY = "sk-house-0099zzYYxxWW"


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch):
    monkeypatch.delenv(ENV_KEY, raising=False)


def settings_for(server, chain=("openai", "builtin"), **extra) -> LyricsSettings:
    return LyricsSettings(chain=list(chain), openai={"base_url": server.url + "/v1",
                                                     "timeout_s": 1.0, "model": "m"}, **extra)


def ok(path, body):
    return Reply(body=json.dumps(chat_json(song_json())).encode())


def test_openai_success_is_recorded(fake_server):
    fake_server.respond = ok
    result = build_chain(settings_for(fake_server)).write(make_spec())
    assert result.provider == "openai" and result.notes == ()


@pytest.mark.parametrize("reply", [
    Reply(500, b"{}"),
    Reply(delay_s=2.0, body=json.dumps(chat_json(song_json())).encode()),
    Reply(body=json.dumps(chat_json("I can't help with that.")).encode()),
    Reply(body=json.dumps(chat_json(song_json(lyrics="<p>lyrics</p>"))).encode()),
    Reply(body=json.dumps(chat_json("```\n" + song_json() + "\n```")).encode()),
    Reply(body=json.dumps(chat_json(song_json(lyrics="no tags here\nat all"))).encode()),
], ids=["500", "timeout", "refusal", "html", "code-fence", "no-tags"])
def test_falls_back_to_builtin(fake_server, reply):
    fake_server.respond = lambda path, body: reply
    result = build_chain(settings_for(fake_server)).write(make_spec())
    assert result.provider == "builtin"
    assert result.lyrics.startswith("[Verse]")
    assert result.notes and result.notes[0].startswith("openai skipped")


def test_child_safe_failure_falls_back(fake_server):
    rude = GOOD_LYRICS.replace("furry", "fucking")
    fake_server.respond = lambda path, body: Reply(
        body=json.dumps(chat_json(song_json(lyrics=rude))).encode())
    result = build_chain(settings_for(fake_server)).write(make_spec(child_safe=True))
    assert result.provider == "builtin" and "fucking" not in result.lyrics
    system = fake_server.requests[0].body["messages"][0]["content"]
    assert "young children" in system


def test_order_preferences_and_builtin_last():
    settings = LyricsSettings(chain=["ollama"], endpoints={"comet": {"base_url": "https://api.cometapi.com/v1"}})
    assert chain_order(settings, None) == ["ollama", "builtin"]
    assert chain_order(settings, "comet") == ["comet", "ollama", "builtin"]
    assert chain_order(settings, ["openai", "comet"]) == ["openai", "comet", "ollama", "builtin"]
    assert chain_order(settings, [None, "builtin"]) == ["builtin", "ollama"]
    with pytest.raises(UnknownProviderError):
        chain_order(settings, "nonsense")
    assert chain_order(LyricsSettings(chain=["ollama"], fallback_to_builtin=False), None) == ["ollama"]
    with pytest.raises(ValueError, match="unknown provider"):
        LyricsSettings(chain=["typo"])


def test_request_choice_goes_first(fake_server):
    fake_server.respond = ok
    chain = build_chain(settings_for(fake_server, chain=["builtin"]), preferred="openai")
    assert chain.names == ("openai", "builtin")
    assert chain.write(make_spec()).provider == "openai"


def test_all_failing_raises(fake_server):
    fake_server.respond = lambda path, body: Reply(500, b"{}")
    chain = build_chain(settings_for(fake_server, chain=["openai"], fallback_to_builtin=False))
    with pytest.raises(LyricsError, match="openai skipped: openai: HTTP 500"):
        chain.write(make_spec())


def _store(tmp_path) -> CredentialStore:
    store = CredentialStore.open(tmp_path)
    store.set("openai", ALICE_KEY, owner="alice")
    store.set("openai", BOB_KEY, owner="bob")
    return store


def _auth_headers(server) -> list[str | None]:
    return [seen.headers.get("authorization") for seen in server.requests]


def test_each_user_sends_only_their_own_key(db, tmp_path, fake_server):
    fake_server.respond = ok
    store = _store(tmp_path)
    settings = settings_for(fake_server)
    build_chain(settings, store, user="alice").write(make_spec())
    build_chain(settings, store, user="bob").write(make_spec())
    build_chain(settings, store, user="carol").write(make_spec())  # no key, no household key
    assert _auth_headers(fake_server) == [f"Bearer {ALICE_KEY}", f"Bearer {BOB_KEY}", None]
    store.set("openai", HOUSE_KEY)
    build_chain(settings, store, user="carol").write(make_spec())
    build_chain(settings, store, user=None).write(make_spec())
    build_chain(settings, store, user="alice").write(make_spec())
    assert _auth_headers(fake_server)[3:] == [f"Bearer {HOUSE_KEY}", f"Bearer {HOUSE_KEY}",
                                              f"Bearer {ALICE_KEY}"]


def test_secrets_never_in_logs_notes_or_exceptions(db, tmp_path, fake_server, caplog):
    caplog.set_level(logging.DEBUG)
    store = _store(tmp_path)
    store.set("ollama", ALICE_KEY, owner="alice")
    # A service that echoes the key back in its error, as some do.
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {ALICE_KEY}",
                                 "type": "invalid_request_error", "code": "invalid_api_key"}})
    fake_server.respond = lambda path, body: Reply(401, echo.encode())
    settings = LyricsSettings(chain=["openai", "ollama"], fallback_to_builtin=False,
                              openai={"base_url": fake_server.url + "/v1", "timeout_s": 1.0},
                              ollama={"host": fake_server.url, "timeout_s": 1.0})
    chain = build_chain(settings, store, user="alice")
    with pytest.raises(LyricsError) as caught:
        chain.write(make_spec())
    texts = [caplog.text, str(caught.value), repr(caught.value), repr(chain),
             repr(chain.providers), repr(store)]
    texts += [str(record.args) for record in caplog.records]
    fallback = build_chain(settings.model_copy(update={"fallback_to_builtin": True}), store, user="alice")
    result = fallback.write(make_spec())
    texts += [repr(result), caplog.text]
    assert "invalid_api_key" in str(caught.value)  # the reason is kept, the key is not
    for text in texts:
        for secret in (ALICE_KEY, BOB_KEY, ALICE_KEY[:12]):
            assert secret not in text
    # and alice's key went to the server, bob's never did
    sent = _auth_headers(fake_server)
    assert f"Bearer {ALICE_KEY}" in sent and not any(BOB_KEY in (h or "") for h in sent)
