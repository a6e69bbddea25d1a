"""Secrets out of every log line and error text, even when a remote service disguised them.

Our own messages never hold a secret (a `Secret` masks itself). A remote service's words
are another matter: an error code echoing the API key upper-cased, reversed, base64- or
hex-encoded or with its dashes turned into underscores passes any check for the key itself.
So every secret this process used is remembered here (`hide`: `Secret.reveal` calls it,
the daemon adds its configured passwords), and `redact` replaces any run of text that shares
`MIN_MATCH` letters and digits in a row with one of those secrets in one of those forms -
case and separators ignored. `RedactingFilter` applies it to every record a log handler
writes, tracebacks included, so a remote error is logged through the same redaction as our
own text.

The registry is per process on purpose: logging is per process, and a secret the process
never held cannot reach its log.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

MIN_MATCH = 10          # letters and digits shared in a row with a secret: redacted
_MIN_SECRET = 8         # shorter values (a PIN) cannot be told from ordinary words
_MAX_SECRETS = 256
MASK = "[redacted]"

_RUN = re.compile(rf"[A-Za-z0-9+/=_.:~-]{{{MIN_MATCH},}}")  # a key-like run of text
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")

_lock = threading.Lock()
_secrets: set[str] = set()
_grams: frozenset[str] = frozenset()


def _normal(text: str) -> str:
    return _NOT_ALNUM.sub("", text.lower())


def _forms(secret: str) -> list[str]:
    """The secret as a remote service might hand it back."""
    raw = secret.encode()
    encoded = [base64.b64encode(raw).decode(), base64.b32encode(raw).decode(), raw.hex()]
    return [_normal(form) for form in (secret, secret[::-1], *encoded)]


def _grams_of(secrets: Iterable[str]) -> frozenset[str]:
    grams: set[str] = set()
    for secret in secrets:
        for form in _forms(secret):
            grams.update(form[i:i + MIN_MATCH] for i in range(len(form) - MIN_MATCH + 1))
    return frozenset(grams)


def hide(secret: str | None) -> None:
    """Remember a secret this process uses, so that no log line shows it in any form."""
    global _grams  # noqa: PLW0603 - swapped whole under the lock, so readers need no lock
    if not secret or len(secret) < _MIN_SECRET or secret in _secrets:
        return
    with _lock:
        if len(_secrets) >= _MAX_SECRETS:
            _secrets.pop()
        _secrets.add(secret)
        _grams = _grams_of(_secrets)


def redact(text: str, also: Iterable[str] = ()) -> str:
    """`text` with every run that resembles a hidden secret (or one of `also`) masked."""
    extra = [s for s in also if s and len(s) >= _MIN_SECRET]
    grams = _grams | _grams_of(extra) if extra else _grams
    if not grams:
        return text

    def mask(match: re.Match[str]) -> str:
        run = _normal(match.group())
        if any(run[i:i + MIN_MATCH] in grams for i in range(len(run) - MIN_MATCH + 1)):
            return MASK
        return match.group()

    return _RUN.sub(mask, text)


def resembles(text: str, secret: str | None) -> bool:
    """Whether `text` holds `secret` in any of the forms `redact` looks for."""
    return bool(secret) and redact(text, [secret or ""]) != text


class RedactingFilter(logging.Filter):
    """A handler filter: the record's message and traceback go through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _grams:
            return True
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(secrets: Iterable[str | None] = ()) -> None:
    """Redact every handler of the root logger (call after logging is set up), and hide
    the configured secrets (broker and database passwords) from the start."""
    for secret in secrets:
        hide(secret)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def configured_secrets(settings: BaseModel) -> Iterator[str]:
    """Every SecretStr of the settings (broker, MPD and database passwords, the PIN); of a
    URL only its password, so that the database's address itself stays readable."""

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            if "://" in secret:
                password = urlsplit(secret).password
                if password:
                    yield password
            else:
                yield secret
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                yield from walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from walk(item)

    yield from walk(settings)
