"""API keys at rest: Fernet-encrypted rows of the `Credential` table.

Keys come from `$CASSETTED_ENCRYPTION_KEY` (one Fernet key, or several comma-separated: the
first encrypts, all decrypt — MultiFernet rotation) or else from `<state_dir>/secret.key`
(created 0600 when absent; one key a line, same order rule). `rotate` re-encrypts every row
with the first key, after which older keys can be dropped.

A secret is only ever held in a `Secret`, whose repr and str are masked, and is never part
of a log line or an exception message. A user's key is never used for another user: a
lookup is (user, provider), falling back only to the household row (owner NULL).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from cassetted import redaction
from cassetted.store.database import Credential, database

log = logging.getLogger(__name__)

ENV_KEY = "CASSETTED_ENCRYPTION_KEY"
KEY_FILE_NAME = "secret.key"


class CredentialError(Exception):
    """A credential cannot be stored or read; the message never contains a secret."""


class Secret:
    """A secret string that does not show itself: `reveal()` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        # Whatever the value is shown to may echo it back in a disguise: keep it out of logs.
        redaction.hide(self._value)
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __format__(self, spec: str) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not pickled")


@dataclass(frozen=True)
class CredentialInfo:
    """What `keys list` may show: never the secret, not even a prefix."""

    provider: str
    owner: str | None
    created_at: float


# --------------------------------------------------------------------------- keys


def _parse_keys(text: str, origin: str) -> list[Fernet]:
    keys = [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]
    if not keys:
        raise CredentialError(f"no encryption key in {origin}")
    fernets = []
    for number, key in enumerate(keys, 1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            # The key itself is secret: say which one, not what it is.
            raise CredentialError(f"encryption key #{number} in {origin} is not a valid Fernet "
                                  "key (32 url-safe base64-encoded bytes)") from None
    return fernets


def key_file(state_dir: Path) -> Path:
    return state_dir / KEY_FILE_NAME


def _create_key_file(path: Path) -> None:
    """Write a fresh key with mode 0600 from the start (no window where it is readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first
    with os.fdopen(fd, "w") as handle:
        handle.write(Fernet.generate_key().decode() + "\n")
    log.info("created encryption key file %s", path)


def load_keys(state_dir: Path, environ: Mapping[str, str] | None = None) -> MultiFernet:
    """The key ring: from the environment when set, else the key file (created if absent)."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_KEY, "").strip():
        return MultiFernet(_parse_keys(environ[ENV_KEY], f"${ENV_KEY}"))
    path = key_file(state_dir)
    if not path.exists():
        _create_key_file(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s is readable by others (mode %o); chmod 600 it", path, mode)
    return MultiFernet(_parse_keys(path.read_text(), str(path)))


# --------------------------------------------------------------------------- store


class CredentialStore:
    """Credential rows of the bound `database` (call `store.open_database` first)."""

    def __init__(self, keys: MultiFernet) -> None:
        self._keys = keys

    def __repr__(self) -> str:
        return "CredentialStore(<keys hidden>)"

    @classmethod
    def open(cls, state_dir: Path, environ: Mapping[str, str] | None = None) -> CredentialStore:
        return cls(load_keys(state_dir, environ))

    def set(self, provider: str, secret: Secret | str, owner: str | None = None) -> None:
        """Store (or replace) the key of `owner` (None = household) for `provider`."""
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if not provider or not value:
            raise CredentialError("provider and secret must not be empty")
        token = self._keys.encrypt(value.encode())
        with database.atomic():
            Credential.delete().where(*self._where(provider, owner)).execute()
            Credential.create(owner=owner, provider=provider, secret=token, created_at=time.time())
        log.info("stored credential for provider %s (%s)", provider, _who(owner))

    def get(self, provider: str, user: str | None = None) -> Secret | None:
        """The user's own key for `provider`, else the household key, else None.
        Never another user's key."""
        owners: list[str | None] = [user, None] if user is not None else [None]
        for owner in owners:
            row = Credential.get_or_none(*self._where(provider, owner))
            if row is not None:
                return Secret(self._decrypt(row))
        return None

    def delete(self, provider: str, owner: str | None = None) -> bool:
        deleted = Credential.delete().where(*self._where(provider, owner)).execute()
        if deleted:
            log.info("deleted credential for provider %s (%s)", provider, _who(owner))
        return bool(deleted)

    def list(self) -> list[CredentialInfo]:
        rows = Credential.select(Credential.provider, Credential.owner, Credential.created_at)
        return sorted((CredentialInfo(r.provider, r.owner, r.created_at) for r in rows),
                      key=lambda info: (info.provider, info.owner or ""))

    def rotate(self) -> int:
        """Re-encrypt every row with the first (newest) key; returns the number of rows."""
        count = 0
        with database.atomic():
            for row in Credential.select():
                try:
                    row.secret = self._keys.rotate(bytes(row.secret))
                except InvalidToken:
                    raise CredentialError(self._undecryptable(row)) from None
                row.save()
                count += 1
        log.info("re-encrypted %d credential(s) with the current key", count)
        return count

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _where(provider: str, owner: str | None) -> tuple[object, ...]:
        owner_clause = Credential.owner.is_null() if owner is None else Credential.owner == owner
        return (Credential.provider == provider, owner_clause)

    def _decrypt(self, row: Credential) -> str:
        try:
            return self._keys.decrypt(bytes(row.secret)).decode()
        except InvalidToken:
            raise CredentialError(self._undecryptable(row)) from None

    @staticmethod
    def _undecryptable(row: Credential) -> str:
        return (f"cannot decrypt the {row.provider} credential ({_who(row.owner)}): the "
                f"encryption key does not match the one it was stored with; set "
                f"${ENV_KEY} to the old key (comma-separated after the new one) or store it again")


def _who(owner: str | None) -> str:
    return f"user {owner}" if owner is not None else "household"


def _write_key_file(path: Path, keys: list[bytes]) -> None:
    """Replace the key file atomically; the new file is 0600 before it holds anything."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("".join(key.decode() + "\n" for key in keys))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def rotate_key_file(state_dir: Path) -> int:
    """Key-file rotation in one step: a new key goes first, every row is re-encrypted with it,
    then the old keys are dropped. Returns the number of rows re-encrypted."""
    if os.environ.get(ENV_KEY, "").strip():
        raise CredentialError(f"keys come from ${ENV_KEY}: put a new key first in it and run "
                              "rotate without --new-key")
    path = key_file(state_dir)
    old = [line.strip().encode() for line in path.read_text().splitlines() if line.strip()] \
        if path.exists() else []
    new = Fernet.generate_key()
    _write_key_file(path, [new, *old])
    count = CredentialStore.open(state_dir, environ={}).rotate()
    _write_key_file(path, [new])
    return count
