"""The household as the command handlers see it: identify, admit, learn, count.

Every song request passes `admit` before it becomes a job: the caller's room permission,
the room's mode (through `modes`, when the daemon has one), the quota, and the room's
learned defaults for what the request left open. Data flows one way: the handlers call in,
the household answers or raises; it hears about votes and songs through plain methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import (
    Event,
    GuestCreate,
    LearnedPreference,
    LibraryQuery,
    LibraryStats,
    QuotaInfo,
    RoomCommand,
    SongRequest,
)
from cassetted.events import EventBus, RoomExtras, SongReady
from cassetted.household import guests, identity, learning, policy
from cassetted.household.identity import Caller
from cassetted.household.ratelimit import RateLimiter
from cassetted.household.settings import ANONYMOUS_USER
from cassetted.library import access as library
from cassetted.store.database import Song, Store, User
from cassetted.tasks import BackgroundTasks

log = logging.getLogger(__name__)

PromptReader = Callable[[str], tuple[str | None, str | None]]
_EXPIRY_INTERVAL_S = 60.0


class ModeScreen(Protocol):
    """The room modes (household.modes) as the admission sees them."""

    def allowed(self, room_id: str) -> dict[str, tuple[str, ...]]:
        """{"genre": (...), "mood": (...)} the room's mode allows; a missing key = any."""
        ...

    async def screen_song(self, request: SongRequest, caller: Caller) -> SongRequest: ...
    async def screen_room_command(self, room_id: str, command: RoomCommand,
                                  caller: Caller) -> RoomCommand: ...


class Charge:
    """What admitting one request writes, run by the job intake on the store thread inside
    the transaction that queues the job (cassetted.jobs.runner): the quota charge (with the
    household on) and the room's lesson. Counting and queuing are one step there, so two
    requests of one user cannot both take the last song of a quota, nobody's requests wait
    for anybody else's, and a request refused (by its mode, its quota, a full queue) or
    repeated teaches its room nothing."""

    def __init__(self, settings: Settings, caller: Caller, songs: int, room: str | None,
                 observed: dict[str, str]) -> None:
        self._settings = settings
        self._caller = caller
        self._songs = songs
        self.room = room
        self._observed = observed
        self.quota: QuotaInfo | None = None  # the standing after this request, once charged
        self.learned: LearnedPreference | None = None  # the room's preference after it

    def __call__(self) -> None:
        if self._settings.household.enabled:
            self.quota = policy.charge(self._settings, self._caller, self._songs)
        if self.room is not None and self._observed:
            rule = self._settings.household.learning
            for dimension, value in self._observed.items():
                learning.observe(rule, self.room, dimension, value, 1.0)
            self.learned = learning.preference(rule, self.room)


class Household:
    """Owns identity, quotas, guests, the library's social side and room learning."""

    def __init__(self, settings: Settings, store: Store, bus: EventBus, *,
                 modes: ModeScreen | None,
                 publish_stats: Callable[[LibraryStats], None],
                 publish_event: Callable[[Event], None],
                 read_prompt: PromptReader) -> None:
        self.settings = settings
        self._store = store
        self._bus = bus
        self._publish_stats = publish_stats
        self._publish_event = publish_event
        self._read_prompt = read_prompt
        self.modes = modes  # the room modes' screens of requests and room commands
        self._tasks = BackgroundTasks("household")
        bus.subscribe(SongReady, self._song_ready)
        self._learned: dict[str, LearnedPreference] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # request_id -> lock, holders
        self._stats_pending = False
        household = settings.household
        self._rates = RateLimiter(household.rate_per_s if household.enabled else None,
                                  household.rate_burst)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self._store.call(identity.sync_members, self.settings)
        for room_id in self.settings.rooms:
            self._learned[room_id] = await self._store.call(
                learning.preference, self.settings.household.learning, room_id)
            self._show(room_id)
        self.library_changed()
        self._tasks.spawn(self._expire_guests(), "guest-expiry")

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    def _show(self, room_id: str) -> None:
        """The room's retained state shows what was learned there (playback follows)."""
        self._bus.emit(RoomExtras(room_id, "household", {"learned": self._learned.get(room_id)}))

    async def _expire_guests(self) -> None:
        while True:
            try:
                await self.expire_guests()
            except Exception:
                log.exception("could not expire guest passes")
            await asyncio.sleep(_EXPIRY_INTERVAL_S)

    async def expire_guests(self, party: str | None = None) -> list[str]:
        gone = await self._store.call(guests.expire, None, party)
        for user_id in gone:
            log.info("guest %s expired", user_id)
            self._publish_event(Event(type="guest_expired", ts=time.time(), user=user_id))
        return gone

    # ------------------------------------------------------------------ identity and admission

    async def caller(self, token: str | None, claimed_user: str | None,
                     mqtt_user: str | None = None) -> Caller:
        """Who sent a command (see household.identity)."""
        if not self.settings.household.enabled:  # everybody is the owner: no lookup
            return identity.identify(self.settings, token, mqtt_user, claimed_user)
        try:
            caller = await self._store.call(identity.identify, self.settings, token, mqtt_user,
                                            claimed_user)
        except errors.Unauthorized:
            self._rates.check("anonymous")  # guessing tokens is no way around the limit
            raise
        self._rates.check(caller.key)
        return caller

    def bridge_caller(self, user: str | None) -> Caller:
        """Requests from the Home Assistant panel and Hermes satellites: people in the house,
        behind Home Assistant's own login, with `[household] bridge_role`."""
        role = self.settings.household.bridge_role if self.settings.household.enabled else "owner"
        return Caller(user=user, role=role, via="bridge")

    @contextlib.asynccontextmanager
    async def admission(self, request_id: str | None) -> AsyncIterator[None]:
        """Held from the duplicate check until the job exists, per request_id, so a QoS 1
        redelivery arriving while its first copy is admitted is answered as a repeat,
        never charged or learned from twice. Nothing else is serialised: the quota is
        charged in the transaction that queues the job (see Charge)."""
        if request_id is None:
            yield
            return
        lock, holders = self._locks.get(request_id, (asyncio.Lock(), 0))
        self._locks[request_id] = (lock, holders + 1)
        try:
            async with lock:
                yield
        finally:
            lock, holders = self._locks[request_id]
            if holders == 1:
                del self._locks[request_id]  # kept only while someone holds or waits
            else:
                self._locks[request_id] = (lock, holders - 1)

    async def admit(self, request: SongRequest,
                    caller: Caller) -> tuple[SongRequest, Charge, dict[str, Any]]:
        """The request as it will be queued, its Charge for the job intake to run (the
        quota, and what it teaches its room), and reply extras (`learned`: the defaults the
        room filled in). Raises Forbidden, ModeRefused; the charge raises QuotaExceeded.

        Order: room permission; what the request says (its fields, else its prompt) becomes
        explicit; the room's learned preference fills the rest (only with values the room's
        mode allows); the mode screens the result; the quota and the lesson last, with the
        job, so a refused request costs nothing and teaches nothing."""
        settings = self.settings
        if caller.via == "bridge":  # the panel's topics are open on the broker: one allowance
            self._rates.check("bridge")
        if request.room is not None:
            settings.room(request.room)
        policy.check_room(settings, caller, request.room)
        private = request.private or not settings.household.share_by_default
        if request.source_song_id is not None:
            # A cover, repaint or karaoke remix needs the right to read its source, and is
            # as private as the source: a copy must not share private lyrics.
            source = await self._store.call(library.readable, request.source_song_id, caller)
            private = private or not source.shared
        # Anonymous requests are recorded as the household's `anonymous`: one quota for all.
        user = ANONYMOUS_USER if caller.via == "anonymous" else caller.user
        request = request.model_copy(update={"user": user, "private": private})
        extras: dict[str, Any] = {}
        observed: dict[str, str] = {}
        if request.task == "text2music":
            request, extras, observed = self._fill(request)
        if self.modes is not None:
            request = await self.modes.screen_song(request, caller)
        # Every take is a song made: "variants": 4 costs four.
        return request, Charge(settings, caller, request.variants, request.room, observed), extras

    def admitted(self, charge: Charge) -> None:
        """The job of `charge` is queued: its room shows what it learned."""
        if charge.room is not None and charge.learned is not None:
            self._learned[charge.room] = charge.learned
            self._show(charge.room)

    def _fill(self, request: SongRequest) -> tuple[SongRequest, dict[str, Any], dict[str, str]]:
        """The request with what it says made explicit and the room's preference filling
        the rest; the reply's extras; and what it teaches the room once admitted (what the
        person chose, never what the room filled in)."""
        said_genre, said_mood = self._read_prompt(request.prompt) if request.prompt else (None, None)
        chosen = {"genre": request.genre or said_genre, "mood": request.mood or said_mood}
        room = request.room
        filled: dict[str, str] = {}
        observed: dict[str, str] = {}
        if room is not None:
            learned = self._learned.get(room) or LearnedPreference()
            allowed = dict(self.modes.allowed(room)) if self.modes is not None else {}
            if request.child_safe:  # asked for child-safe in any room: the same limits
                limits = self.settings.child_safe
                allowed.setdefault("genre", tuple(limits.genres))
                allowed.setdefault("mood", tuple(limits.moods))
            for dim, value in chosen.items():
                candidate = getattr(learned, dim)
                if value is None and candidate is not None and candidate in allowed.get(dim, (candidate,)):
                    filled[dim] = candidate
            observed = {dim: value for dim, value in chosen.items() if value is not None}
        update = {dim: value for dim, value in chosen.items() if value is not None} | filled
        request = request.model_copy(update=update) if update else request
        return request, ({"learned": filled} if filled else {}), observed

    async def _observe(self, room: str, values: dict[str, str], weight: float) -> None:
        settings = self.settings.household.learning

        def write() -> LearnedPreference:
            for dimension, value in values.items():
                learning.observe(settings, room, dimension, value, weight)
            return learning.preference(settings, room)

        self._learned[room] = await self._store.call(write)
        self._show(room)

    @property
    def counts_songs(self) -> bool:
        """Whether song requests are charged to someone (quotas exist)."""
        return self.settings.household.enabled

    def learned(self, room_id: str) -> LearnedPreference | None:
        return self._learned.get(room_id)

    async def screen_room_command(self, room_id: str, command: RoomCommand,
                                  caller: Caller) -> RoomCommand:
        policy.check_room(self.settings, caller, room_id)
        if self.modes is not None:
            command = await self.modes.screen_room_command(room_id, command, caller)
        return command

    async def quota(self, caller: Caller) -> QuotaInfo:
        if not self.settings.household.enabled:
            return policy.quota(self.settings, caller)
        return await self._store.call(policy.quota, self.settings, caller)

    # ------------------------------------------------------------------ library

    async def query(self, query: LibraryQuery, caller: Caller) -> tuple[int, list[tuple[Song, int]]]:
        return await self._store.call(library.query, query, caller)

    async def vote(self, song_id: str, caller: Caller, value: int) -> tuple[Song, int]:
        """Record a vote; the song's room learns from the change of this caller's vote."""
        song, score, change = await self._store.call(library.vote, song_id, caller, value)
        weight = change * self.settings.household.learning.vote_weight
        if song.room in self.settings.rooms and weight:
            await self._observe(song.room, {"genre": song.genre, "mood": song.mood}, weight)
        self.library_changed()
        return song, score

    async def view_as(self, caller: Caller, name: str, what: str) -> Caller:
        """The caller `name` would be, for an owner who asks on their behalf (`as_user`, or
        another member's quota); Forbidden for anybody else."""
        if not caller.is_owner:
            hint = "" if self.settings.household.trusted_user_field else (
                " (a name alone proves nothing here: send a token or use the MQTT login)")
            raise errors.Forbidden(f"{what} of another person needs an owner's rights{hint}",
                                   "user")
        user_id = identity.slug(name)
        row = await self._store.call(User.get_or_none, User.id == user_id)
        role = row.role if row is not None else self.settings.household.unknown_user_role
        return Caller(user=user_id, role="guest" if role == "none" else role, via="as_user")

    async def keep(self, song_id: str, caller: Caller) -> tuple[str, dict[str, str]]:
        kept = await self._store.call(library.keep, song_id, caller)
        self.library_changed()
        return kept

    async def share(self, song_id: str, caller: Caller, shared: bool) -> Song:
        song = await self._store.call(library.share, song_id, caller, shared)
        self.library_changed()
        return song

    def library_changed(self) -> None:
        """Re-publish the statistics soon (coalesced: a burst of songs is one publication)."""
        if self._stats_pending:
            return
        self._stats_pending = True

        async def publish() -> None:
            await asyncio.sleep(0.2)
            self._stats_pending = False
            try:
                self._publish_stats(await self._store.call(library.stats))
            except Exception:
                log.exception("could not publish library statistics")

        self._tasks.spawn(publish(), self._tasks.unique("library-stats"))

    def _song_ready(self, ready: SongReady) -> None:
        self.library_changed()

    # ------------------------------------------------------------------ guests

    async def create_guest(self, command: GuestCreate, caller: Caller, *, party: str | None = None,
                           since: float | None = None) -> dict[str, Any]:
        return await self._store.call(guests.create, self.settings, command, caller, party, since)

    async def remove_guest(self, user_id: str, caller: Caller) -> None:
        await self._store.call(guests.remove, user_id, caller)
