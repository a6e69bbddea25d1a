"""LyricsService.writer_for: the request's provider wins, then the user's preferred provider
(`[lyrics.user_providers]`), then the configured chain; each user with their own keys."""

from __future__ import annotations

import json
import os

import pytest

from cassetted import config
from cassetted.contract.schemas import SongRequest
from cassetted.lyrics.chain import UnknownProviderError
from cassetted.lyrics.service import LyricsService
from cassetted.lyrics.settings import LyricsSettings
from cassetted.store.credentials import ENV_KEY, CredentialStore

from .conftest import Reply, chat_json, make_spec, song_json

ANNA_KEY = "sk-anna-Qm2LrTz81PXk4f9"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("CASSETTED_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv(ENV_KEY, raising=False)


def load(tmp_path, toml: str) -> config.Settings:
    path = tmp_path / "cassetted.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n' + toml)
    return config.load(path)


def names(writer) -> tuple[str, ...]:
    return writer.__self__.names  # the bound LyricsChain.write


TOML = """
[lyrics]
chain = ["ollama", "builtin"]

[lyrics.endpoints.comet]
base_url = "https://api.cometapi.com/v1"

[lyrics.user_providers]
anna = "openai"
bob = "comet"
"""


def test_request_then_user_then_chain(tmp_path):
    settings = load(tmp_path, TOML)
    assert settings.lyrics.user_providers == {"anna": "openai", "bob": "comet"}
    service = LyricsService(settings, None)
    order = lambda **request: names(service.writer_for(SongRequest(**request)))  # noqa: E731
    assert order() == ("ollama", "builtin")
    assert order(user="carol") == ("ollama", "builtin")  # no preference: the chain
    assert order(user="anna") == ("openai", "ollama", "builtin")
    assert order(user="bob") == ("comet", "ollama", "builtin")
    # the request's own choice goes before the user's
    assert order(user="anna", lyrics_provider="comet") == ("comet", "openai", "ollama", "builtin")
    assert order(user="anna", lyrics_provider="builtin") == ("builtin", "openai", "ollama")
    assert order(lyrics_provider="openai") == ("openai", "ollama", "builtin")
    # preferences are per user name, not per anything else
    assert order(user="Anna") == ("ollama", "builtin")


def test_unknown_provider_in_user_providers_is_a_config_error(tmp_path):
    with pytest.raises(config.ConfigError, match=r"user_providers: unknown provider in anna = 'comet'"):
        load(tmp_path, '[lyrics.user_providers]\nanna = "comet"\n')
    with pytest.raises(ValueError, match="user_providers"):
        LyricsSettings(user_providers={"bob": "gpt"})
    # an endpoint's name is a provider name
    assert LyricsSettings(endpoints={"comet": {"base_url": "https://x.example/v1"}},
                          user_providers={"anna": "comet"}).user_providers == {"anna": "comet"}


def test_user_providers_documented():
    field = LyricsSettings.model_fields["user_providers"]
    assert field.description and "user" in field.description.lower()
    assert "user_providers" in (LyricsSettings.__doc__ or "")


def test_unknown_request_provider_still_refused(tmp_path):
    service = LyricsService(load(tmp_path, TOML), None)
    with pytest.raises(UnknownProviderError):
        service.writer_for(SongRequest(user="anna", lyrics_provider="nonsense"))


def test_preferred_provider_writes_with_the_users_own_key(tmp_path, db, fake_server):
    fake_server.respond = lambda path, body: Reply(body=json.dumps(chat_json(song_json())).encode())
    settings = load(tmp_path, f"""
[lyrics]
chain = ["builtin"]

[lyrics.openai]
base_url = "{fake_server.url}/v1"
timeout_s = 1.0

[lyrics.user_providers]
anna = "openai"
bob = "openai"
""")
    store = CredentialStore.open(tmp_path)
    store.set("openai", ANNA_KEY, owner="anna")
    service = LyricsService(settings, store)
    assert service.writer_for(SongRequest(user="anna"))(make_spec()).provider == "openai"
    assert service.writer_for(SongRequest(user="bob"))(make_spec()).provider == "openai"
    assert service.writer_for(SongRequest(user="carol"))(make_spec()).provider == "builtin"
    assert service.writer_for(SongRequest(user="anna", lyrics_provider="builtin"))(
        make_spec()).provider == "builtin"
    sent = [seen.headers.get("authorization") for seen in fake_server.requests]
    assert sent == [f"Bearer {ANNA_KEY}", None]  # bob prefers openai but has no key of anna's
