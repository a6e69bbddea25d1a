"""What a caller may do: which rooms, how many songs. Store-thread functions.

Quotas count the takes of the caller's jobs in the window that did not fail or get
cancelled: a song the daemon could not make is not held against anybody, but every take of
a `"variants": 4` request is a song made (keeping one later does not give the others back).
Anonymous requests share one count, as the user `anonymous` (they cannot be told apart;
songs the household makes itself - party starters, sleep music - are nobody's and count
for nobody). A guest of a party counts
from the party's start against `[party] guest_song_limit`.
"""

from __future__ import annotations

import time

import peewee as pw

from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import JobState, QuotaInfo
from cassetted.household.identity import Caller
from cassetted.household.settings import ANONYMOUS_USER
from cassetted.store.database import Job, User

_NOT_COUNTED = (JobState.failed.value, JobState.cancelled.value)


def _takes() -> pw.Node:
    """Per job, the takes it asked for: the `variants` of its stored request (1 if absent).
    Read in the database, so an unlimited member's long history is never loaded."""
    if isinstance(Job._meta.database.obj, pw.PostgresqlDatabase):
        takes = pw.Expression(Job.request.cast("json"), "->>", "variants").cast("integer")
    else:
        takes = pw.fn.json_extract(Job.request, "$.variants")
    return pw.fn.COALESCE(takes, 1)


def check_room(settings: Settings, caller: Caller, room_id: str | None) -> None:
    """Forbidden unless the caller's role may use the room (an owner may use every room)."""
    if room_id is None or not settings.household.enabled or caller.role == "owner":
        return
    room = settings.room(room_id)
    if caller.role not in room.roles:
        raise errors.Forbidden(f"{caller.role}s may not use {room.name!r}", "room")
    if caller.rooms is not None and room_id not in caller.rooms:
        raise errors.Forbidden(f"this guest pass does not include {room.name!r}", "room")


def _limits(settings: Settings, caller: Caller) -> tuple[int | None, float | None, float]:
    """(songs allowed, window in hours, counting since) for the caller."""
    now = time.time()
    row = User.get_or_none(User.id == caller.user) if caller.user else None
    if row is not None and row.quota_since is not None:  # a party guest
        limit = row.quota if row.quota is not None else settings.party.guest_song_limit
        return limit, None, row.quota_since
    quota = settings.household.quotas.get(caller.role)
    window_h = quota.per_hours if quota else 24.0
    limit = quota.songs if quota else None
    if row is not None and row.quota is not None:
        limit = row.quota
    return limit, window_h, now - window_h * 3600


def quota(settings: Settings, caller: Caller, adding: int = 0) -> QuotaInfo:
    """The caller's standing, as if `adding` more songs were counted."""
    if not settings.household.enabled:
        return QuotaInfo(user=caller.user, role=caller.role)
    limit, window_h, since = _limits(settings, caller)
    used, resets_at = 0, None
    whose = caller.user if caller.user is not None else ANONYMOUS_USER
    if caller.user is not None or caller.via == "anonymous":
        used, oldest = (Job.select(pw.fn.SUM(_takes()), pw.fn.MIN(Job.created_at))
                        .where((Job.user == whose) & (Job.created_at >= since)
                               & Job.state.not_in(_NOT_COUNTED))
                        .tuples().get())
        used = int(used or 0)
        if oldest is None and adding:
            oldest = time.time()  # the song being added is the oldest in the window
        if oldest is not None and window_h is not None:
            resets_at = oldest + window_h * 3600
    used += adding
    remaining = None if limit is None else max(0, limit - used)
    return QuotaInfo(user=caller.user, role=caller.role, limit=limit, used=used,
                     remaining=remaining, window_h=window_h, resets_at=resets_at)


def charge(settings: Settings, caller: Caller, songs: int = 1) -> QuotaInfo:
    """The quota after `songs` more, or QuotaExceeded (with the current standing). One
    read of the caller's window: the standing after is the standing now plus `songs`."""
    now = quota(settings, caller)
    if not settings.household.enabled:
        return now
    if now.limit is not None and now.used + songs > now.limit:
        when = ""
        if now.resets_at is not None:
            when = f"; the next one frees up in {max(1, round((now.resets_at - time.time()) / 60))} min"
        raise errors.QuotaExceeded(
            f"{caller.user or 'this requester'} has used {now.used} of {now.limit} songs{when}",
            "user", quota=now.model_dump(mode="json"))
    resets_at = now.resets_at
    if resets_at is None and now.window_h is not None and (
            caller.user is not None or caller.via == "anonymous"):
        resets_at = time.time() + now.window_h * 3600  # the song added is the window's oldest
    used = now.used + songs
    return now.model_copy(update={
        "used": used, "resets_at": resets_at,
        "remaining": None if now.limit is None else max(0, now.limit - used)})
