"""Guest passes: made by an owner or family member, limited in time, rooms and songs.

The token is returned once, in the reply to the member who made the pass (on their own
response topic); only its hash is stored. Store-thread functions.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import GuestCreate
from cassetted.household.identity import Caller, hash_token, new_token, slug
from cassetted.store.database import User


def _may_manage(caller: Caller) -> None:
    if caller.role not in ("owner", "family"):
        raise errors.Forbidden("only owners and family members manage guests")


def create(settings: Settings, command: GuestCreate, caller: Caller,
           party: str | None = None, since: float | None = None) -> dict[str, Any]:
    """A new guest pass; an existing guest of the same name gets a fresh one."""
    _may_manage(caller)
    for room in command.rooms or ():
        settings.room(room)
    user_id = slug(command.name)
    existing = User.get_or_none(User.id == user_id)
    if existing is not None and existing.role != "guest":
        raise errors.InvalidState(f"{command.name!r} is a member of the household, not a guest", "name")
    token = new_token()
    ttl_h = command.ttl_h or settings.household.guest_ttl_h
    fields = dict(name=command.name, role="guest", token_hash=hash_token(token), configured=False,
                  rooms=json.dumps(command.rooms) if command.rooms is not None else None,
                  quota=command.quota, quota_since=since, party=party,
                  expires_at=time.time() + ttl_h * 3600, created_by=caller.user)
    if existing is None:
        User.create(id=user_id, **fields)
    else:
        User.update(**fields).where(User.id == user_id).execute()
    return {"user_id": user_id, "name": command.name, "token": token,
            "expires_at": fields["expires_at"], "rooms": command.rooms,
            "song_limit": command.quota}


def remove(user_id: str, caller: Caller) -> None:
    _may_manage(caller)
    row = User.get_or_none(User.id == user_id)
    if row is None or row.role != "guest":
        raise errors.InvalidPayload(f"no guest {user_id!r}", "user")
    User.delete().where(User.id == user_id).execute()


def expire(now: float | None = None, party: str | None = None) -> list[str]:
    """Delete passes that ran out (or all guests of `party`). Returns their ids."""
    condition = User.role == "guest"
    if party is not None:
        condition &= User.party == party
    else:
        condition &= User.expires_at <= (now or time.time())
    gone = [row.id for row in User.select(User.id).where(condition)]
    if gone:
        User.delete().where(User.id.in_(gone)).execute()
    return gone
