"""cassetted.redaction: a secret in any disguise a remote service might use is masked in
log records and error texts; ordinary text (ids, addresses, codes) is left alone."""

from __future__ import annotations

import base64
import logging
import uuid

from cassetted import redaction
from cassetted.store.credentials import Secret


def test_disguised_keys_are_masked_and_ordinary_text_is_not() -> None:
    key = f"sk-proj-{uuid.uuid4().hex[:20]}-Zq"
    Secret(key).reveal()  # what every use of a key does: the process now hides it
    disguises = [key, key.upper(), key.replace("-", "_"), key[::-1], key[5:17],
                 base64.b64encode(key.encode()).decode(), key.encode().hex()]
    for disguise in disguises:
        text = f"openai: HTTP 401 (code {disguise}) after 0.3 s"
        clean = redaction.redact(text)
        assert disguise not in clean and redaction.MASK in clean, disguise
        assert clean.startswith("openai: HTTP 401 (code ") and clean.endswith(") after 0.3 s")
    ordinary = ("job 3f2a9c0e1b7d4e55 failed: invalid_api_key insufficient_quota "
                "at postgresql://127.0.0.1:5432/test, song 9c1d7b2e4f6a8091")
    assert redaction.redact(ordinary) == ordinary


def test_the_log_filter_masks_messages_arguments_and_tracebacks(caplog) -> None:
    key = f"anna_{uuid.uuid4().hex}"
    redaction.hide(key)
    handler = logging.Handler()
    seen: list[str] = []
    handler.emit = lambda record: seen.append(logging.Formatter().format(record))  # type: ignore[method-assign]
    handler.addFilter(redaction.RedactingFilter())
    logger = logging.getLogger("cassetted.test_redaction")
    logger.addHandler(handler)
    try:
        logger.warning("provider failed: %s", key.swapcase())
        try:
            raise RuntimeError(f"remote said {key[::-1]}")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    assert len(seen) == 2 and all(redaction.MASK in line for line in seen)
    assert not any(part in line.lower() for line in seen
                   for part in (key[5:20], key[::-1][:15]))
    assert "RuntimeError" in seen[1]  # the traceback is kept, only the secret is gone


def test_configured_secrets_take_only_the_password_of_a_url() -> None:
    from cassetted.config import Settings

    settings = Settings(mqtt={"password": "broker-password-1"},
                        storage={"database_url": "postgresql://app:db-password-2@db/cassetted"})
    found = set(redaction.configured_secrets(settings))
    assert {"broker-password-1", "db-password-2"} <= found
    assert not any("postgresql" in secret for secret in found)
