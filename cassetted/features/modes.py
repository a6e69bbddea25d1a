"""Room modes: sleep and child-safe (issue #9, points 5 and 6).

Sleep: the room gets a long ambient song, its volume fades to silence over `fade_min`
minutes, then the player stops; until the room wakes (`{"mode": "normal"}` or a `stop`
command) nothing but `stop` is accepted there and nothing is announced in it.

Child-safe: song requests keep to the allowed genres and moods (an open choice is made
from them), their lyrics are filtered (`child_safe` on the request, which the lyrics
providers key off), the volume is capped, leaving the mode needs the PIN (or an owner when
no PIN is configured), and every request is written to a log the parents can read.

Both are per room and persisted in `room_mode` (RoomModeRow), so a restart keeps a sleeping
room asleep and a kids' room safe; a fade cut by a restart resumes where the clock says it
should be. Karaoke is a third mode the karaoke module switches with `set_karaoke`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import (
    ENVELOPE_FIELDS,
    ChildSafeLogQuery,
    Event,
    Reply,
    RoomCommand,
    RoomModeCommand,
    SongRequest,
)
from cassetted.events import EventBus, RoomExtras
from cassetted.household import policy
from cassetted.household.identity import Caller
from cassetted.store.database import ChildSafeLog, Job, RoomModeRow, Song, Store
from cassetted.tasks import BackgroundTasks

if TYPE_CHECKING:
    from cassetted.playback.controller import PlaybackController

log = logging.getLogger(__name__)

SubmitDirect = Callable[[SongRequest], Awaitable[tuple[Job, bool]]]
CancelJob = Callable[[str], Awaitable[object]]

LOCKOUT_S = 15 * 60
_FADE_STEPS = 50          # a fade moves in about this many steps, at most one a second
_FINAL_TRIES = 5          # the closing volume 0 + stop is retried (a player still connecting)
_FINAL_RETRY_S = 2.0
_SLEEP_PROMPT = "slow, calm ambient soundscape to fall asleep to"


@dataclass
class _Room:
    """One room's mode as kept in memory and in its RoomModeRow."""

    mode: str = "normal"
    child_safe: bool = False
    since: float = field(default_factory=time.time)
    # sleep: fade_s, fade_from (volume at the start), volume_before (restored on waking),
    # jobs (the ambient songs being made), faded (the fade is over and the player stopped)
    sleep: dict[str, Any] = field(default_factory=dict)
    # pin: per caller (Caller.key) {failures (wrong PINs in a row), locked_until (unix time)}:
    # a stranger's wrong PINs lock out strangers, never the parents who prove who they are
    pin: dict[str, dict[str, float]] = field(default_factory=dict)

    def params(self) -> str:
        return json.dumps({"sleep": self.sleep, "pin": self.pin})


# ----------------------------------------------------------------- store thread


def _pin_state(saved: Any) -> dict[str, dict[str, float]]:
    """The saved per-caller PIN state; the single room-wide count of older versions (plain
    numbers) is dropped rather than held against everybody."""
    if not isinstance(saved, dict):
        return {}
    return {key: value for key, value in saved.items() if isinstance(value, dict)}


def _load() -> list[RoomModeRow]:
    return list(RoomModeRow.select())


def _save(room_id: str, mode: str, child_safe: bool, params: str, since: float) -> None:
    fields = {"mode": mode, "child_safe": child_safe, "params": params, "since": since}
    if not RoomModeRow.update(**fields).where(RoomModeRow.room == room_id).execute():
        RoomModeRow.create(room=room_id, **fields)


def _write_log(room: str | None, user: str | None, request: str, outcome: str,
               reason: str) -> None:
    ChildSafeLog.create(room=room, user=user, request=request, outcome=outcome, reason=reason)


def _read_log(room: str | None, limit: int) -> list[dict[str, Any]]:
    query = ChildSafeLog.select().order_by(ChildSafeLog.ts.desc(), ChildSafeLog.id.desc())
    if room is not None:
        query = query.where(ChildSafeLog.room == room)
    return [{"ts": row.ts, "room": row.room, "user": row.user, "request": json.loads(row.request),
             "outcome": row.outcome, "reason": row.reason}
            for row in query.limit(limit)]


# ----------------------------------------------------------------- the modes


class RoomModes:
    """The sleep and child-safe modes of every room; the household's `ModeScreen`."""

    def __init__(self, settings: Settings, store: Store, bus: EventBus, *,
                 playback: PlaybackController, submit_direct: SubmitDirect,
                 cancel_job: CancelJob, publish_event: Callable[[Event], None]) -> None:
        self._settings = settings
        self._store = store
        self._bus = bus
        self._playback = playback
        # The job runner's own submit: sleep music must not pass the sleep screen.
        self._submit_direct = submit_direct
        self._cancel_job = cancel_job
        self._publish_event = publish_event
        self._rooms = {room_id: _Room(child_safe=room.child_safe)
                       for room_id, room in settings.rooms.items()}
        # `save-<room>#n` (pending writes) and `sleep-fade-<room>` (one fade per room).
        self._tasks = BackgroundTasks("modes")
        # One change of a room's mode at a time: a Sleep switch flipped ON, OFF, ON made the
        # wake-up clear the state a sleep still being entered was filling in (KeyError).
        self._changing = {room_id: asyncio.Lock() for room_id in settings.rooms}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the persisted modes; resume the fades a restart interrupted."""
        for row in await self._store.call(_load):
            if row.room not in self._rooms:
                continue  # a room no longer configured
            params = json.loads(row.params or "{}")
            self._rooms[row.room] = _Room(mode=row.mode, child_safe=row.child_safe,
                                          since=row.since, sleep=params.get("sleep", {}),
                                          pin=_pin_state(params.get("pin")))
        for room_id, state in self._rooms.items():
            if state.mode == "sleep" and not state.sleep.get("faded"):
                log.info("room %s: resuming its sleep fade", room_id)
                self._start_fade(room_id)
            self._show(room_id)

    async def stop(self) -> None:
        """Finish pending writes, cancel the fades (resumed on the next start)."""
        for room_id in self._rooms:
            await self._tasks.cancel(f"sleep-fade-{room_id}")
        await self._tasks.drain()

    # ------------------------------------------------------------------ what others read

    def view(self, room_id: str) -> dict[str, Any]:
        """The room's part of its retained state."""
        state = self._rooms.get(room_id)
        if state is None:
            return {}
        cap = self._settings.child_safe.volume_cap if state.child_safe else None
        return {"mode": state.mode, "child_safe": state.child_safe, "volume_cap": cap}

    def quiet(self, room_id: str | None) -> bool:
        """True where nothing may be announced (a sleeping room)."""
        state = self._rooms.get(room_id) if room_id is not None else None
        return state is not None and state.mode == "sleep"

    def allowed(self, room_id: str) -> dict[str, tuple[str, ...]]:
        """The genres and moods the room's mode allows; {} = any."""
        state = self._rooms.get(room_id)
        return self._limits() if state is not None and state.child_safe else {}

    def _limits(self) -> dict[str, tuple[str, ...]]:
        child_safe = self._settings.child_safe
        return {"genre": tuple(child_safe.genres), "mood": tuple(child_safe.moods)}

    # ------------------------------------------------------------------ screens

    async def screen_song(self, request: SongRequest, caller: Caller) -> SongRequest:
        """Every song request, before it is queued: refused in a sleeping room; kept to the
        limits (and logged) in a child-safe room or when it asks to be child-safe."""
        room_id = request.room
        state = self._rooms.get(room_id) if room_id is not None else None
        guarded = request.child_safe or (state is not None and state.child_safe)
        try:
            if state is not None and state.mode == "sleep":
                raise errors.ModeRefused(f"{self._name(room_id)} is in sleep mode; "
                                         "only stop is accepted", "room")
            if not guarded:
                return request
            screened, reason = self._keep_child_safe(request)
        except errors.ModeRefused as error:
            if guarded:
                await self._log(request, caller, "refused", error.message)
            raise
        await self._log(screened, caller, "accepted", reason)
        return screened

    def _keep_child_safe(self, request: SongRequest) -> tuple[SongRequest, str]:
        """The request with child_safe on and an allowed genre and mood, and what was chosen;
        ModeRefused for an explicit genre or mood outside the limits."""
        where = self._name(request.room) if request.room in self._rooms else "this request"
        update: dict[str, object] = {"child_safe": True}
        chosen: list[str] = []
        # The seed may still be open here; the prompt keeps the choice stable for a request.
        rng = random.Random(request.seed if request.seed is not None else request.prompt)
        for dimension, allowed in self._limits().items():
            value = getattr(request, dimension)
            if not allowed or (value is not None and value not in allowed):
                raise errors.ModeRefused(
                    f"{where} is child-safe: {dimension} {value or 'of any kind'} is not "
                    f"allowed (allowed: {', '.join(allowed) or 'none'})", dimension,
                    allowed=list(allowed))
            if value is None and request.task == "text2music":
                update[dimension] = choice = self._default(request.room, dimension, allowed, rng)
                chosen.append(f"{dimension} {choice}")
        return request.model_copy(update=update), ("chose " + ", ".join(chosen)) if chosen else ""

    def _default(self, room_id: str | None, dimension: str, allowed: tuple[str, ...],
                 rng: random.Random) -> str:
        """The room's configured default, else the daemon's, if allowed; else a draw."""
        room = self._settings.rooms.get(room_id) if room_id is not None else None
        drawn = rng.choice(allowed)
        for preferred in (getattr(room, f"default_{dimension}", None),
                          getattr(self._settings.generation, f"default_{dimension}", None)):
            if isinstance(preferred, str) and preferred in allowed:
                return preferred
        return drawn

    async def _log(self, request: SongRequest, caller: Caller, outcome: str, reason: str) -> None:
        body = request.model_dump_json(exclude_none=True, exclude=set(ENVELOPE_FIELDS))
        await self._store.call(_write_log, request.room, caller.user, body, outcome, reason)

    async def screen_room_command(self, room_id: str, command: RoomCommand,
                                  caller: Caller) -> RoomCommand:
        """A sleeping room takes only `stop` (which wakes it); a child-safe room plays only
        songs made child-safe, and its volume is capped (silently: the cap shows in the
        room's state as volume_cap)."""
        state = self._rooms.get(room_id)
        if state is None:
            return command
        if state.mode == "sleep":
            if command.action != "stop":
                raise errors.ModeRefused(f"{self._name(room_id)} is in sleep mode; "
                                         "only stop is accepted", "action")
            await self._wake(room_id, stop_player=True)
            return command
        if state.child_safe and command.action in ("play_song", "add") and command.song_id:
            song = await self._store.call(Song.get_or_none, Song.id == command.song_id)
            if song is not None and not song.child_safe:
                raise errors.ModeRefused(f"{self._name(room_id)} is child-safe and song "
                                         f"{command.song_id} was not made child-safe", "song_id")
        cap = self._settings.child_safe.volume_cap
        if state.child_safe and command.action == "volume" and (command.volume or 0) > cap:
            log.info("room %s: volume %s capped at %d (child-safe)", room_id, command.volume, cap)
            return command.model_copy(update={"volume": cap})
        return command

    # ------------------------------------------------------------------ commands

    async def mode_command_as(self, room_id: str, command: RoomModeCommand,
                              caller: Caller) -> Reply:
        """A mode change on behalf of `caller` (the Home Assistant room switch passes its own)."""
        self._settings.room(room_id)
        if command.mode is None and command.child_safe is None:
            raise errors.InvalidPayload("say what to change: mode (normal, sleep) or child_safe",
                                        "mode")
        if command.fade_min is not None and command.mode != "sleep":
            raise errors.InvalidPayload("fade_min goes with mode sleep", "fade_min")
        if command.mode == "karaoke":
            raise errors.Unsupported("karaoke mode starts with karaoke/start", "mode")
        if command.mode is not None:  # turning child-safe on is for anyone, the rest is not
            policy.check_room(self._settings, caller, room_id)
        extras: dict[str, Any] = {}
        async with self._changing[room_id]:
            if command.child_safe is not None:
                await self._set_child_safe(room_id, command.child_safe, command.pin, caller)
            if command.mode == "sleep":
                extras = await self._sleep(room_id, command.fade_min)
            elif command.mode == "normal":
                await self._wake(room_id)
        return Reply(ok=True, request_id=command.request_id, room=room_id, **self.view(room_id),
                     **extras)

    async def log_query_as(self, query: ChildSafeLogQuery, caller: Caller) -> Reply:
        """`<base>/child_safe/log`: for the parents (owners and family), newest first."""
        if caller.is_guest:
            raise errors.Forbidden("only owners and family may read the child-safe log")
        if query.room is not None:
            self._settings.room(query.room)
        entries = await self._store.call(_read_log, query.room, query.limit)
        return Reply(ok=True, request_id=query.request_id, entries=entries)

    def set_karaoke(self, room_id: str, on: bool) -> None:
        """For the karaoke module: the room's mode becomes karaoke, or normal again.
        ModeRefused in a sleeping room."""
        self._settings.room(room_id)
        state = self._rooms[room_id]
        if on and state.mode == "sleep":
            raise errors.ModeRefused(f"{self._name(room_id)} is in sleep mode; "
                                     "only stop is accepted", "room")
        mode = "karaoke" if on else "normal"
        if state.mode == mode or (not on and state.mode != "karaoke"):
            return
        state.mode, state.since = mode, time.time()
        self._tasks.spawn(self._save(room_id), self._tasks.unique(f"save-{room_id}"))
        self._changed(room_id)

    # ------------------------------------------------------------------ child-safe

    async def _set_child_safe(self, room_id: str, on: bool, pin: str | None,
                              caller: Caller) -> None:
        state = self._rooms[room_id]
        if on:
            if not state.child_safe:
                state.child_safe = True
                await self._save(room_id)
                self._changed(room_id)
            volume = self._volume(room_id)
            cap = self._settings.child_safe.volume_cap
            if volume is not None and volume > cap:
                await self._send(room_id, RoomCommand(action="volume", volume=cap))
            return
        if not state.child_safe:
            return
        await self._check_pin(room_id, pin, caller)
        state.child_safe = False
        await self._save(room_id)
        log.info("room %s: child-safe mode turned off by %s", room_id, caller.user or caller.role)
        self._changed(room_id)

    async def _check_pin(self, room_id: str, pin: str | None, caller: Caller) -> None:
        """Pass, or WrongPin / ModeRefused (locked out) / Forbidden. Never logs the PIN."""
        settings = self._settings.child_safe
        state = self._rooms[room_id]
        now = time.time()
        state.pin = {key: value for key, value in state.pin.items()  # forget old lock-outs
                     if value.get("failures") or value.get("locked_until", 0.0) > now}
        mine = state.pin.get(caller.key, {})
        locked_until = mine.get("locked_until", 0.0)
        if locked_until > now:
            minutes = max(1, round((locked_until - now) / 60))
            raise errors.ModeRefused(f"too many wrong PINs: {self._name(room_id)} stays child-safe "
                                     f"for {minutes} more min", "pin")
        if settings.pin is None:
            if caller.role != "owner":
                raise errors.Forbidden("no child-safe PIN is configured: only an owner may turn "
                                       "child-safe mode off", "child_safe")
            return
        if pin is None:
            raise errors.WrongPin("turning child-safe mode off needs the PIN", "pin")
        if hmac.compare_digest(pin.encode(), settings.pin.get_secret_value().encode()):
            state.pin.pop(caller.key, None)
            return
        failures = int(mine.get("failures", 0)) + 1
        if failures >= settings.max_pin_attempts:
            state.pin[caller.key] = {"failures": 0, "locked_until": now + LOCKOUT_S}
            message = f"wrong PIN; child-safe mode is locked for {LOCKOUT_S // 60} min"
        else:
            state.pin[caller.key] = {"failures": failures}
            message = f"wrong PIN ({settings.max_pin_attempts - failures} tries left)"
        await self._save(room_id)
        log.warning("room %s: wrong child-safe PIN (%d in a row from %s)", room_id, failures,
                    caller.key)
        raise errors.WrongPin(message, "pin")

    # ------------------------------------------------------------------ sleep

    async def _sleep(self, room_id: str, fade_min: float | None) -> dict[str, Any]:
        """Enter (or restart) sleep: ambient music, then the fade. Reply extras."""
        state = self._rooms[room_id]
        previous = state.sleep if state.mode == "sleep" else {}
        self._cancel_fade(room_id)
        await self._cancel_jobs(previous.get("jobs", []))
        volume = self._volume(room_id)
        state.mode, state.since = "sleep", time.time()
        state.sleep = {"fade_s": (fade_min or self._settings.sleep.fade_min) * 60,
                       "fade_from": volume, "volume_before": previous.get("volume_before", volume),
                       "jobs": [], "faded": False}
        extras: dict[str, Any] = {"fade_min": state.sleep["fade_s"] / 60}
        try:
            job, _ = await self._submit_direct(self._sleep_request(room_id, state))
            state.sleep["jobs"] = extras["job_ids"] = [job.id]
        except errors.CassettedError as error:  # asleep without new music is still asleep
            log.warning("room %s: no sleep music: %s", room_id, error.message)
            extras["warnings"] = [f"no sleep music: {error.message}"]
        await self._save(room_id)
        log.info("room %s: sleep mode, fading over %g min", room_id, state.sleep["fade_s"] / 60)
        self._changed(room_id)
        self._start_fade(room_id)
        return extras

    def _sleep_request(self, room_id: str, state: _Room) -> SongRequest:
        """The room's music, nobody's request: no user, so no quota counts it."""
        sleep = self._settings.sleep
        return SongRequest(prompt=_SLEEP_PROMPT, genre=sleep.genre, mood=sleep.mood,
                           duration_s=sleep.song_duration_s, instrumental=True, room=room_id,
                           child_safe=state.child_safe)

    async def _wake(self, room_id: str, stop_player: bool = False) -> None:
        """Leave sleep (or karaoke): unfinished sleep music is cancelled, the player stopped
        when asked, and the volume the room had before the fade comes back."""
        state = self._rooms[room_id]
        if state.mode == "normal":
            return
        sleep = state.sleep if state.mode == "sleep" else {}
        self._cancel_fade(room_id)
        await self._cancel_jobs(sleep.get("jobs", []))
        if stop_player:
            await self._send(room_id, RoomCommand(action="stop"))
        before = sleep.get("volume_before")
        if before is not None:
            if state.child_safe:
                before = min(before, self._settings.child_safe.volume_cap)
            await self._send(room_id, RoomCommand(action="volume", volume=before))
        state.mode, state.since, state.sleep = "normal", time.time(), {}
        await self._save(room_id)
        log.info("room %s: back to normal mode", room_id)
        self._changed(room_id)

    def _start_fade(self, room_id: str) -> None:
        if self._settings.rooms[room_id].output == "none":
            log.info("room %s has no player: sleep mode without a fade", room_id)
            return
        self._tasks.spawn(self._fade(room_id), f"sleep-fade-{room_id}", replace=True)

    def _cancel_fade(self, room_id: str) -> None:
        task = self._tasks.get(f"sleep-fade-{room_id}")
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _fade(self, room_id: str) -> None:
        """Lower the volume along a straight line from `since` to `since + fade_s`, then
        volume 0 and stop. Runs by the wall clock, so a resumed fade picks up mid-way."""
        state = self._rooms[room_id]
        sleep = state.sleep
        fade_s, start = float(sleep["fade_s"]), sleep.get("fade_from")
        step_s = max(1.0, fade_s / _FADE_STEPS)
        last = None
        while (elapsed := time.time() - state.since) < fade_s:
            if start is not None:
                volume = round(start * (1 - elapsed / fade_s))
                if volume != last and await self._send(
                        room_id, RoomCommand(action="volume", volume=volume)):
                    last = volume
            await asyncio.sleep(min(step_s, fade_s - elapsed))
        await self._cancel_jobs(sleep.get("jobs", []))  # music nobody will hear
        for _ in range(_FINAL_TRIES):
            if (await self._send(room_id, RoomCommand(action="volume", volume=0))
                    and await self._send(room_id, RoomCommand(action="stop"))):
                break
            await asyncio.sleep(_FINAL_RETRY_S)
        sleep["faded"] = True
        await self._save(room_id)
        log.info("room %s: faded out and stopped; asleep until stop or mode normal", room_id)

    async def _cancel_jobs(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            with contextlib.suppress(errors.CassettedError):  # done already, or gone
                await self._cancel_job(job_id)

    # ------------------------------------------------------------------ helpers

    def _name(self, room_id: str | None) -> str:
        room = self._settings.rooms.get(room_id) if room_id is not None else None
        return room.name if room is not None else str(room_id)

    def _volume(self, room_id: str) -> int | None:
        state = self._playback.room_states().get(room_id)
        return state.volume if state is not None else None

    async def _send(self, room_id: str, command: RoomCommand) -> bool:
        """A room command of our own (past the screens); False, logged, when it failed."""
        try:
            await self._playback.handle_room_command(room_id, command)
            return True
        except Exception as error:  # noqa: BLE001 - a fade outlives a player's hiccup
            log.warning("room %s: %s failed: %s", room_id, command.action, error)
            return False

    async def _save(self, room_id: str) -> None:
        state = self._rooms[room_id]
        await self._store.call(_save, room_id, state.mode, state.child_safe, state.params(),
                               state.since)

    def _changed(self, room_id: str) -> None:
        """Tell automations (event) and the room's retained state."""
        try:
            self._publish_event(Event(type="mode_changed", ts=time.time(), room=room_id,
                                      **self.view(room_id)))
        except Exception:
            log.exception("could not publish mode_changed")
        self._show(room_id)

    def _show(self, room_id: str) -> None:
        """The room's retained state shows its mode (playback follows RoomExtras)."""
        self._bus.emit(RoomExtras(room_id, "modes", self.view(room_id)))
