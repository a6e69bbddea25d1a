"""Errors that survive the wire: each class carries the code used in MQTT error replies."""

from __future__ import annotations

from typing import Any

from cassetted.contract.schemas import ErrorInfo


class CassettedError(Exception):
    """Base of every error a command can be answered with. Messages never hold secrets."""

    code = "internal_error"
    # A fault of the system (a full or read-only disk, the database, a killed worker), not
    # of the request: its job is retried with backoff, and a resent request_id of a job that
    # failed this way starts a new attempt. A request's own fault stays failed.
    system_fault = False

    def __init__(self, message: str, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        # Extra reply fields that help the asker (e.g. `quota` with a quota_exceeded); Reply
        # validates them (Any: each is one of Reply's fields, of that field's type).
        self.details: dict[str, Any] = details

    def info(self) -> ErrorInfo:
        return ErrorInfo(code=self.code, message=self.message, field=self.field)


class InvalidJson(CassettedError):
    code = "invalid_json"


class InvalidPayload(CassettedError):
    code = "invalid_payload"


class PayloadTooLarge(CassettedError):
    code = "payload_too_large"


class UnknownRoom(CassettedError):
    code = "unknown_room"


class UnknownJob(CassettedError):
    code = "unknown_job"


class UnknownSong(CassettedError):
    code = "unknown_song"


class UnknownEngine(CassettedError):
    code = "unknown_engine"


class UnknownProvider(CassettedError):
    code = "unknown_provider"


class QueueFull(CassettedError):
    code = "queue_full"


class InvalidState(CassettedError):
    code = "invalid_state"


class Unsupported(CassettedError):
    code = "unsupported"


class GenerationFailed(CassettedError):
    code = "generation_failed"


class LyricsFailed(CassettedError):
    code = "lyrics_failed"


class NotUnderstood(CassettedError):
    """A voice command with no sign of a song request ("what is the weather like")."""

    code = "not_understood"


class Interrupted(CassettedError):
    code = "interrupted"
    system_fault = True


class NoWorker(CassettedError):
    """[cluster]: no live worker offers the engine a job asks for (for `no_worker_s`)."""

    code = "no_worker"


class WorkerLost(CassettedError):
    """[cluster]: the job was handed to `max_deliver` workers and none finished it."""

    code = "worker_lost"


class Unauthorized(CassettedError):
    """No known identity where one is needed, or a token that matches nobody."""

    code = "unauthorized"


class Forbidden(CassettedError):
    """A known user whose role or guest pass does not allow this (room, command)."""

    code = "forbidden"


class QuotaExceeded(CassettedError):
    code = "quota_exceeded"


class ModeRefused(CassettedError):
    """A room's mode (sleep, child-safe) does not accept this request."""

    code = "mode_refused"


class WrongPin(CassettedError):
    code = "wrong_pin"


class RateLimited(CassettedError):
    """One sender asked faster than `[household] rate_per_s` allows; try again shortly."""

    code = "rate_limited"


class DiskFull(CassettedError):
    """No space left where a song or a row had to be written."""

    code = "disk_full"
    system_fault = True


class StorageUnavailable(CassettedError):
    """The library or the database cannot be written (read-only, I/O error, unreachable)."""

    code = "storage_unavailable"
    system_fault = True


def system_fault_codes() -> frozenset[str]:
    """The codes of failures that are the system's fault (see CassettedError.system_fault)."""
    found, todo = set(), list(CassettedError.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.system_fault:
            found.add(cls.code)
    return frozenset(found)
