"""Reading a JSON payload off the wire, bounded: every bad input becomes a CassettedError.

`json.loads` alone lets a stranger reach corners the validator never sees: integers past
Python's 4,300-digit conversion limit raise a bare ValueError, 2,000 nested arrays a
RecursionError, a `\\ud800` escape yields a string no UTF-8 encoder (pydantic's, the
database's, the reply's) accepts, a `\\u0000` one a string PostgreSQL cannot store.
`parse` and `check_object` turn each of those into `invalid_json` or `invalid_payload`,
naming the field where there is one, so the router (and the Hermes adapter) answer them
like any other mistake instead of logging a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from cassetted.contract import errors
from cassetted.contract.schemas import MAX_PAYLOAD_BYTES

# Our payloads are flat (a list of rooms is the deepest); anything deeper is not a command.
MAX_DEPTH = 32
# CPython refuses int() of longer digit strings (sys.get_int_max_str_digits(), CVE-2020-10735).
MAX_INT_DIGITS = 4300


class _HugeNumber:
    """Stands in for an integer too long to convert, so the walk can name its field."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | _HugeNumber:
    digits = len(text) - text.startswith("-")
    return _HugeNumber(digits) if digits > MAX_INT_DIGITS else int(text)


def readable(text: str) -> str:
    """A key as it may appear in a reply: lone surrogates escaped, long keys cut."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 64 else text[:64] + "…"


def is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate (what a `\\ud800` escape decodes to)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(value: Any, path: list[str]) -> None:
    """Depth, number size and Unicode of every value; raises on the first problem."""
    field = ".".join(path) or None
    if len(path) > MAX_DEPTH:
        raise errors.InvalidPayload(f"payload nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if not is_unicode(value):
            raise errors.InvalidPayload(
                f"{field or 'payload'}: not valid Unicode (a lone surrogate escape)", field)
        if "\x00" in value:  # no command needs one, and PostgreSQL cannot store it
            raise errors.InvalidPayload(f"{field or 'payload'}: contains a NUL character", field)
    elif isinstance(value, _HugeNumber):
        raise errors.InvalidPayload(
            f"{field or 'payload'}: a number of {value.digits} digits (at most "
            f"{MAX_INT_DIGITS})", field)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not is_unicode(key):
                raise errors.InvalidPayload(
                    f'key "{readable(key)}": not valid Unicode (a lone surrogate escape)',
                    ".".join([*path, readable(key)]))
            _check(item, [*path, readable(key)])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, [*path, str(index)])


def parse(payload: bytes) -> Any:
    """Size-check, decode and parse one payload (an empty payload is `{}`); what it holds
    is checked by `check_object`, so a caller can still read a reply address from it."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise errors.PayloadTooLarge(
            f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise errors.InvalidJson(
            f"payload is not UTF-8 text (byte 0x{payload[error.start]:02x} at offset "
            f"{error.start})") from None
    try:
        return json.loads(text or "{}", parse_int=_parse_int)
    except RecursionError:
        raise errors.InvalidPayload(f"payload nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:  # JSONDecodeError among them
        raise errors.InvalidJson(f"payload is not valid JSON: {error}") from None


def check_object(data: Any) -> dict[str, Any]:
    """A parsed payload every command may take: bounded, valid Unicode, a JSON object."""
    _check(data, [])
    if not isinstance(data, dict):
        raise errors.InvalidPayload(f"payload must be a JSON object, not {_json_type(data)}")
    return data


def decode_object(payload: bytes) -> dict[str, Any]:
    """`parse`, then `check_object`."""
    return check_object(parse(payload))


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"
