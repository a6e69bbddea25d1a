"""Encrypted API keys: round trip, key file, rotation, wrong keys, user isolation."""

from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet

from cassetted.store.credentials import (
    ENV_KEY,
    CredentialError,
    CredentialStore,
    Secret,
    key_file,
    load_keys,
    rotate_key_file,
)
from cassetted.store.database import Credential

SECRET = "sk-test-Zq81mPa0verysecretvalue"


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch):
    monkeypatch.delenv(ENV_KEY, raising=False)


def test_round_trip_and_ciphertext_at_rest(db, tmp_path):
    store = CredentialStore.open(tmp_path)
    store.set("openai", Secret(SECRET))
    assert store.get("openai") == Secret(SECRET)
    assert store.get("openai").reveal() == SECRET
    blob = bytes(Credential.get().secret)
    assert SECRET.encode() not in blob
    raw = (tmp_path / "cassetted.db").read_bytes()
    assert SECRET.encode() not in raw


def test_key_file_created_0600_and_reused(db, tmp_path):
    path = key_file(tmp_path)
    assert not path.exists()
    CredentialStore.open(tmp_path).set("openai", SECRET)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    assert CredentialStore.open(tmp_path).get("openai").reveal() == SECRET  # same key next time
    assert path.read_text() == first


def test_env_key_wins_over_key_file(db, tmp_path):
    key = Fernet.generate_key().decode()
    store = CredentialStore.open(tmp_path, environ={ENV_KEY: key})
    store.set("openai", SECRET)
    assert not key_file(tmp_path).exists()
    assert Fernet(key.encode()).decrypt(bytes(Credential.get().secret)).decode() == SECRET


def test_rotation_with_two_keys(db, tmp_path):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    CredentialStore.open(tmp_path, {ENV_KEY: old}).set("openai", SECRET, owner="alice")
    CredentialStore.open(tmp_path, {ENV_KEY: old}).set("comet", "other-secret")
    both = CredentialStore.open(tmp_path, {ENV_KEY: f"{new}, {old}"})
    assert both.get("openai", "alice").reveal() == SECRET  # old rows still readable
    assert both.rotate() == 2
    only_new = CredentialStore.open(tmp_path, {ENV_KEY: new})
    assert only_new.get("openai", "alice").reveal() == SECRET
    assert only_new.get("comet").reveal() == "other-secret"
    with pytest.raises(CredentialError):
        CredentialStore.open(tmp_path, {ENV_KEY: old}).get("comet")


def test_key_file_rotation_replaces_the_key(db, tmp_path):
    store = CredentialStore.open(tmp_path)
    store.set("openai", SECRET)
    before = key_file(tmp_path).read_text()
    assert rotate_key_file(tmp_path) == 1
    after = key_file(tmp_path).read_text()
    assert after != before and len(after.split()) == 1
    assert stat.S_IMODE(key_file(tmp_path).stat().st_mode) == 0o600
    assert CredentialStore.open(tmp_path).get("openai").reveal() == SECRET


def test_wrong_key_is_a_clear_error_without_the_secret(db, tmp_path):
    CredentialStore.open(tmp_path, {ENV_KEY: Fernet.generate_key().decode()}).set(
        "openai", SECRET, owner="alice")
    wrong = CredentialStore.open(tmp_path, {ENV_KEY: Fernet.generate_key().decode()})
    with pytest.raises(CredentialError) as caught:
        wrong.get("openai", "alice")
    message = str(caught.value)
    assert "openai" in message and "alice" in message and "key does not match" in message
    assert SECRET not in message and caught.value.__cause__ is None


def test_malformed_key_does_not_echo_it(tmp_path):
    bogus = "not-a-real-fernet-key-but-secret"
    with pytest.raises(CredentialError) as caught:
        load_keys(tmp_path, {ENV_KEY: bogus})
    assert bogus not in str(caught.value) and "#1" in str(caught.value)


def test_user_isolation(db, tmp_path):
    store = CredentialStore.open(tmp_path)
    store.set("openai", "alice-key", owner="alice")
    assert store.get("openai", "alice").reveal() == "alice-key"
    assert store.get("openai", "bob") is None        # never another user's key
    assert store.get("openai") is None                # nor for the household
    store.set("openai", "house-key")
    assert store.get("openai", "bob").reveal() == "house-key"
    assert store.get("openai", "alice").reveal() == "alice-key"
    assert store.get("ollama", "alice") is None


def test_set_replaces_and_delete_and_list(db, tmp_path):
    store = CredentialStore.open(tmp_path)
    store.set("openai", "one")
    store.set("openai", "two")  # household rows have owner NULL: replaced, not duplicated
    store.set("openai", "mine", owner="alice")
    assert store.get("openai").reveal() == "two"
    listed = store.list()
    assert [(i.provider, i.owner) for i in listed] == [("openai", None), ("openai", "alice")]
    assert all(not hasattr(i, "secret") for i in listed)
    assert store.delete("openai", owner="alice") and not store.delete("openai", owner="alice")
    assert store.get("openai", "alice").reveal() == "two"


def test_secret_is_masked_everywhere():
    secret = Secret(SECRET)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret}",
                 repr([secret]), repr({"k": secret})):
        assert SECRET not in text
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(secret)
