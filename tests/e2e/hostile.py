"""What a stranger sends, and how a daemon log shows that it coped (shared by the bad
input tests and the fuzzer).

The payloads are written byte by byte (JSON escapes, 5,000-digit numbers, 1e999), because
`json.dumps` could not produce most of them.
"""

from __future__ import annotations

HUGE = b"9" * 5000

# (payload bytes, expected code, expected field) for `<base>/song/create`.
HOSTILE = [
    (b'{"request_id": "\\ud800"}', "invalid_payload", "request_id"),
    (b'{"prompt": "a \\udfff b"}', "invalid_payload", "prompt"),
    (b'{"user": "dad\\u0000"}', "invalid_payload", "user"),  # PostgreSQL cannot store NUL
    (b'{"\\ud800": 1}', "invalid_payload", "\\ud800"),
    (b'{"bpm": ' + HUGE + b"}", "invalid_payload", "bpm"),
    (b'{"seed": -' + HUGE + b"}", "invalid_payload", "seed"),
    (HUGE, "invalid_payload", None),
    (b"[" * 2000 + b"]" * 2000, "invalid_payload", None),
    (b'{"prompt": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2001, "invalid_payload", None),
    (b'{"prompt": ' + b"[" * 40 + b"]" * 40 + b"}", "invalid_payload", None),
    (b'{"duration_s": 1e999}', "invalid_payload", "duration_s"),
    (b'{"duration_s": -1e999}', "invalid_payload", "duration_s"),
    (b'{"duration_s": NaN}', "invalid_payload", "duration_s"),
    (b'{"bpm": Infinity}', "invalid_payload", "bpm"),
    (b'{"cover_strength": NaN}', "invalid_payload", "cover_strength"),
    (b'{"seed": 18446744073709551616}', "invalid_payload", "seed"),
    (b'{"duration_s": 1' + b"0" * 400 + b"}", "invalid_payload", "duration_s"),
    (b"\xc3\x28", "invalid_json", None),
    (b'{"prompt": "\xff"}', "invalid_json", None),
    (b"\xef\xbb\xbf{}", "invalid_json", None),  # a UTF-8 byte order mark
    (b"\xff\xfe{\x00}\x00", "invalid_json", None),  # UTF-16
    (b'{"prompt": "x"', "invalid_json", None),
    (b'{"prompt": "x"} trailing', "invalid_json", None),
    (b'"a string"', "invalid_payload", None),
    (b"null", "invalid_payload", None),
    (b"true", "invalid_payload", None),
    (b"12", "invalid_payload", None),
    (b"{" * 40000, "invalid_json", None),
    (b"[" * 30000, "invalid_payload", None),  # unterminated, and too deep first
    (b'{"prompt": "' + b"x" * (64 * 1024) + b'"}', "payload_too_large", None),
    (b'{"colour\\nTraceback (most recent call last):": 1}', "invalid_payload",
     "colour\nTraceback (most recent call last):"),
    (b'{"prompt": 1, "prompt": {"$gt": ""}}', "invalid_payload", "prompt"),
    (b'{"__proto__": {"admin": true}}', "invalid_payload", "__proto__"),
]

# Lines a daemon writes only when something escaped the error path (the log format is
# "LEVEL logger: message", so a sender's text can never start a line).
_ALARMS = ("Traceback", "Task exception was never retrieved", "Exception in callback",
           "ERROR ", "CRITICAL ")


def assert_clean_log(log: str) -> None:
    """No traceback, no unhandled task error, no internal_error reply, no lost broker."""
    for line in log.splitlines():
        alarm = line.startswith(_ALARMS) or "internal_error" in line or (
            "MQTT broker" in line and "unavailable" in line)
        assert not alarm, f"daemon log: {line!r}\n...\n{log[-4000:]}"
