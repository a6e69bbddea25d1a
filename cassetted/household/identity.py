"""Who is asking: a command's token, its MQTT login or its `user` field -> a Caller.

Which of these count is `[household] identify_by`, tried in that order; the first that the
command carries decides. A token that matches nobody is an error, never a fall-through to a
weaker method. The functions here run on the store thread (they read the `user` table).

A name in the payload proves nothing: anybody on the broker can type `"user": "dad"`. Unless
`[household] trusted_user_field` says the broker ACL pins who may publish, a name is ignored
and the request is anonymous (`anonymous_role`, no user): naming somebody never grants more
than naming nobody - not their role, not their private songs, quota or API keys.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass

from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import Role
from cassetted.household.settings import ANONYMOUS_USER
from cassetted.store.database import User

_SLUG = re.compile(r"[^a-z0-9_.-]+")


@dataclass(frozen=True)
class Caller:
    """The person behind a command, as far as the household can tell."""

    user: str | None
    role: Role
    via: str  # open | token | mqtt_username | user_field | anonymous
    rooms: tuple[str, ...] | None = None  # a guest pass limited to these rooms
    party: str | None = None  # a party guest's party

    @property
    def is_guest(self) -> bool:
        return self.role == "guest"

    @property
    def is_owner(self) -> bool:
        """An owner who is somebody: an anonymous request never acts as an owner of others'
        things, even where `anonymous_role` is owner."""
        return self.role == "owner" and self.via != "anonymous"

    @property
    def key(self) -> str:
        """Who to count a lock-out or a rate against: the person, else how they came."""
        return f"user:{self.user}" if self.user is not None else self.via

    def owns(self, user: str | None) -> bool:
        """Whether something made by `user` is this caller's own (nobody owns the
        anonymous requests' songs and jobs: they cannot be told apart)."""
        return self.user is not None and self.user == user

    def may_manage(self, user: str | None) -> bool:
        """The maker or an owner: who may keep, cancel, share or delete."""
        return self.is_owner or self.owns(user)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


def slug(name: str) -> str:
    """A user id from a spoken or typed name: "Sarah Connor" -> "sarah_connor". Never the
    id anonymous requests are recorded under (a guest called "Anonymous" is not them)."""
    user_id = _SLUG.sub("_", name.strip().lower()).strip("_")[:64] or "guest"
    return f"{user_id}_" if user_id == ANONYMOUS_USER else user_id


def _from_row(row: User, via: str) -> Caller:
    if row.expires_at is not None and row.expires_at <= time.time():
        raise errors.Unauthorized(f"the guest pass of {row.name!r} has expired")
    rooms = tuple(json.loads(row.rooms)) if row.rooms else None
    return Caller(user=row.id, role=row.role, via=via, rooms=rooms, party=row.party)


def _role_or_refuse(role: str, what: str) -> Role:
    if role == "none":
        raise errors.Unauthorized(f"{what}: this household needs a token or a member's login")
    return role  # type: ignore[return-value]


def identify(settings: Settings, token: str | None, mqtt_user: str | None,
             claimed: str | None) -> Caller:
    """The Caller of a command. `claimed` is the payload's `user` field."""
    household = settings.household
    if not household.enabled:
        return Caller(user=claimed, role="owner", via="open")
    for method in household.identify_by:
        if method == "token" and token:
            row = User.get_or_none(User.token_hash == hash_token(token))
            if row is None:
                raise errors.Unauthorized("the token matches no member or guest", "token")
            return _from_row(row, "token")
        if method == "mqtt_username" and mqtt_user:
            for user_id, member in settings.users.items():
                if mqtt_user in member.mqtt_usernames:
                    return Caller(user=user_id, role=member.role, via="mqtt_username")
            role = _role_or_refuse(household.unknown_user_role, f"MQTT login {mqtt_user!r}")
            return Caller(user=slug(mqtt_user), role=role, via="mqtt_username")
        if method == "user_field" and claimed and household.trusted_user_field:
            row = User.get_or_none(User.id == slug(claimed))
            if row is not None:
                return _from_row(row, "user_field")
            role = _role_or_refuse(household.unknown_user_role, f"user {claimed!r}")
            return Caller(user=slug(claimed), role=role, via="user_field")
    role = _role_or_refuse(household.anonymous_role, "an anonymous request")
    return Caller(user=None, role=role, via="anonymous")


def sync_members(settings: Settings) -> None:
    """Mirror `[users]` into the table (roles may have changed; tokens are kept); members
    removed from the file lose their row and with it their token."""
    configured = settings.users
    for user_id, member in configured.items():
        row = User.get_or_none(User.id == user_id)
        name = member.name or user_id
        if row is None:
            User.create(id=user_id, name=name, role=member.role, configured=True)
        else:
            User.update(name=name, role=member.role, configured=True, expires_at=None,
                        party=None).where(User.id == user_id).execute()
    (User.delete().where(User.configured & User.id.not_in(list(configured) or [""]))
     .execute())


def issue_token(user_id: str) -> str:
    """A new token for a member (the old one stops working). Returns it once."""
    token = new_token()
    if not User.update(token_hash=hash_token(token)).where(User.id == user_id).execute():
        raise errors.InvalidPayload(f"no member {user_id!r} (add it under [users])", "user")
    return token
