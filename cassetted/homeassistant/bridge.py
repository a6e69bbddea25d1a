"""The Home Assistant bridge: discovery on the broker, panel commands in, job state out.

It owns no MQTT client and imports neither the job runner nor playback: `publish` is the
link's publish, and `submit`, `vote`, `room_command`, `party_command` are injected async
callables, so the daemon wires it to the real handlers and tests wire it to recorders.

- `announce()` publishes every discovery config (QoS 1, retained), the panel state and the
  list of rooms; call it on every MQTT (re)connection. `homeassistant/status` = online
  (HA's birth message) triggers it too.
- `<base>/ha/rooms` holds the rooms last announced (retained). When it arrives with rooms
  that are no longer configured, their configs are deleted (empty retained payloads), so a
  restart with fewer rooms leaves no orphan entities in Home Assistant. Anybody may publish
  there, so what one message can cause is bounded: only well-formed room ids count, at
  most `MAX_STALE_ROOMS` of them, and a clean-up runs once per connection (the retained
  copy) and otherwise at most once every `ROOMS_INTERVAL_S`.
- Following the bus (JobChanged, SongReady) it keeps the retained `<base>/ha/generation`
  (state and progress of the newest job) and remembers the latest song for Like/Dislike.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from cassetted.config import Settings
from cassetted.contract.homeassistant import GenerationState
from cassetted.contract.schemas import (
    ROOM_ID_PATTERN,
    ErrorInfo,
    Event,
    JobEvent,
    PartyCommand,
    RoomCommand,
    RoomModeCommand,
    SongInfo,
    SongRequest,
)
from cassetted.events import BrokerConnected, EventBus, JobChanged, SongReady
from cassetted.homeassistant import discovery
from cassetted.homeassistant.discovery import Topics
from cassetted.homeassistant.panel import STATE_FILE_NAME, Panel, PanelValueError
from cassetted.mqtt.publisher import LatestWins
from cassetted.mqtt.router import match

log = logging.getLogger(__name__)

Publish = Callable[..., None]
Submit = Callable[[SongRequest], Awaitable[Any]]
Vote = Callable[[str, Literal[-1, 0, 1]], Awaitable[Any]]
RoomCommandFn = Callable[[str, RoomCommand], Awaitable[Any]]
PartyCommandFn = Callable[[PartyCommand], Awaitable[Any]]
ModeCommandFn = Callable[[str, RoomModeCommand], Awaitable[Any]]

MAX_COMMAND_BYTES = 1024
MAX_ROOMS_BYTES = 16 * 1024   # a retained list of a few hundred room ids
MAX_STALE_ROOMS = 32          # rooms one message may have us delete (about 10 configs each)
ROOMS_INTERVAL_S = 60.0       # between two clean-ups triggered by live messages
_ROOM_ID = re.compile(ROOM_ID_PATTERN)
BUTTONS = ("generate", "skip", "like", "dislike")
_FAILED = object()  # what `_call` returns when the injected action raised


# The retained topics of a room (playback state, the lyrics display): cleared with its
# entities when the room leaves the configuration.
ROOM_RETAINED = ("state", "lyrics")

class HomeAssistantBridge:
    """Discovery, the entity panel, and the generation sensor for Home Assistant.

    It follows the bus (connections: discovery again; jobs: the generation sensor; new
    shared songs: what Like/Dislike act on) and acts through the command handlers it is
    given, as whoever Home Assistant's panel stands for."""

    def __init__(self, settings: Settings, publish: Publish, bus: EventBus, *, submit: Submit,
                 vote: Vote, room_command: RoomCommandFn, party_command: PartyCommandFn,
                 mode_command: ModeCommandFn | None = None,
                 state_file: Path | None = None) -> None:
        self.topics = Topics(settings.mqtt.base_topic, settings.mqtt.discovery_prefix)
        self._settings = settings
        self._publish = publish
        self._latest = LatestWins(publish)
        self._submit = submit
        self._vote = vote
        self._room_command = room_command
        self._party_command = party_command
        self._mode_command = mode_command
        self.panel = Panel(settings, state_file if state_file is not None
                           else settings.state_dir / STATE_FILE_NAME)
        self._active: dict[str, JobEvent] = {}
        self._rooms_cleaned: float | None = None  # monotonic; None = not since (re)connecting
        self._generation = GenerationState(state="idle", progress_pct=0)
        bus.subscribe(BrokerConnected, lambda connected: self.announce())
        bus.subscribe(JobChanged, lambda changed: self.job_changed(changed.event))
        bus.subscribe(SongReady, lambda ready: self.song_ready(ready.song, ready.job_id))

    # ------------------------------------------------------------------ wiring

    def subscriptions(self) -> list[str]:
        """Topic filters to route to `handle` (router.raw for each)."""
        t = self.topics
        return [t.ha_status, t.rooms, f"{t.base}/ha/panel/+/set", f"{t.base}/ha/room/+/+/set"]

    async def handle(self, topic: str, payload: bytes) -> None:
        """The raw handler for every subscription; a bad message is logged, never raised."""
        t = self.topics
        limit = MAX_ROOMS_BYTES if topic == t.rooms else MAX_COMMAND_BYTES
        if len(payload) > limit:
            log.warning("ignoring %d-byte Home Assistant message on %s", len(payload), topic)
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("ignoring non-UTF-8 payload on %s", topic)
            return
        if "\x00" in text:  # as wire.py refuses it in JSON: no entity needs one, and
            # PostgreSQL cannot store it (a prompt with one failed the song at its last step)
            log.warning("ignoring a payload with a NUL character on %s", topic)
            self._error("invalid_payload", "a Home Assistant value contains a NUL character")
            return
        if topic == t.ha_status:
            if text.strip() == "online":
                log.info("Home Assistant is online; re-publishing discovery")
                self.announce()
        elif topic == t.rooms:
            self._rooms_announced(text)
        elif (params := match(f"{t.base}/ha/panel/+/set", topic)) is not None:
            await self._panel_command(params[0], text)
        elif (params := match(f"{t.base}/ha/room/+/+/set", topic)) is not None:
            await self._room_entity_command(params[0], params[1], text)

    # ------------------------------------------------------------------ discovery

    def announce(self) -> None:
        """Every discovery config, the panel state, the generation state, the room list.

        (Whether to run the bridge at all is the daemon's choice: [homeassistant] discovery.)
        """
        self._rooms_cleaned = None  # the retained room list that follows may clean up
        for topic, body in discovery.config_messages(self.topics, self.panel.options()):
            self._publish(topic, body, retain=True, qos=1)
        self._publish_panel()
        self._publish_generation()
        self._publish(self.topics.rooms, json.dumps(sorted(self._settings.rooms)),
                      retain=True, qos=1)

    def _rooms_announced(self, text: str) -> None:
        """Delete the entities of rooms announced before but no longer configured."""
        try:
            previous = json.loads(text) if text else []
        except (ValueError, RecursionError):  # 5,000 digits, 2,000 nested lists: not ours
            previous = []
        if not isinstance(previous, list):
            previous = []
        current = set(self._settings.rooms)
        # Anyone may overwrite the retained list; we only ever announced room ids, and a
        # name with a control character would become a topic the broker refuses.
        removed = sorted({r for r in previous if isinstance(r, str) and _ROOM_ID.fullmatch(r)}
                         - current)
        if not removed:
            return
        now = time.monotonic()
        if self._rooms_cleaned is not None and now - self._rooms_cleaned < ROOMS_INTERVAL_S:
            log.warning("ignoring %s: cleaned up %.0f s ago", self.topics.rooms,
                        now - self._rooms_cleaned)
            return
        self._rooms_cleaned = now
        if len(removed) > MAX_STALE_ROOMS:
            log.warning("%s names %d rooms that are not configured; removing the entities "
                        "of the first %d only", self.topics.rooms, len(removed), MAX_STALE_ROOMS)
            removed = removed[:MAX_STALE_ROOMS]
        log.info("removing Home Assistant entities of rooms no longer configured: %s",
                 ", ".join(removed))
        for topic in discovery.room_config_topics(self.topics, removed):
            self._publish(topic, b"", retain=True, qos=1)
        # And the room's own retained state, which nothing would ever update again.
        base = self._settings.mqtt.base_topic
        for room in removed:
            for what in ROOM_RETAINED:
                self._publish(f"{base}/room/{room}/{what}", b"", retain=True, qos=1)
        self._publish(self.topics.rooms, json.dumps(sorted(current)), retain=True, qos=1)

    def _publish_panel(self) -> None:
        self._publish(self.topics.panel_state, self.panel.state().model_dump_json(),
                      retain=True, qos=1)

    def _publish_generation(self) -> None:
        # Changes with every job event: latest wins, at most every 100 ms.
        self._latest.send(self.topics.generation, self._generation.model_dump_json(),
                          retain=True, qos=1)

    # ------------------------------------------------------------------ commands

    async def _panel_command(self, entity: str, text: str) -> None:
        if entity in BUTTONS:
            await self._press(entity)
            return
        if entity == "party":
            await self._party(text.strip())
            return
        try:
            self.panel.apply(entity, text)
        except PanelValueError as error:
            log.warning("Home Assistant %s: %s", entity, error)
            self._error("invalid_payload", f"{entity}: {error}")
        self._publish_panel()  # also after a refusal, so HA shows the value kept

    async def _press(self, button: str) -> None:
        values = self.panel.values
        if button == "generate":
            await self._generate()
        elif button == "skip":
            if values.room is None:
                log.warning("Home Assistant skip: no room selected")
                return
            await self._call(self._room_command(values.room, RoomCommand(action="next")),
                             "skip")
        else:
            if values.latest_song_id is None:
                log.warning("Home Assistant %s: no song made yet", button)
                return
            await self._call(self._vote(values.latest_song_id, 1 if button == "like" else -1),
                             button)

    async def _generate(self) -> None:
        try:
            request = self.panel.request()
        except ValidationError as error:  # the panel validates every value; belt and braces
            self._error("invalid_payload", f"panel values do not form a request: {error}")
            return
        reply = await self._call(self._submit(request), "generate")
        if isinstance(reply, dict) and reply.get("ok") is False:
            err = reply.get("error") or {}
            self._error(str(err.get("code", "internal_error")), str(err.get("message", "")))

    async def _party(self, text: str) -> None:
        if text not in ("ON", "OFF"):
            log.warning("Home Assistant party: %r is not ON or OFF", text)
        else:
            on = text == "ON"
            command = PartyCommand(action="start" if on else "stop", rooms="all")
            if await self._call(self._party_command(command), "party mode") is not _FAILED:
                self.panel.set_party(on)
        self._publish_panel()

    async def _room_entity_command(self, room_id: str, entity: str, text: str) -> None:
        if room_id not in self._settings.rooms:
            log.warning("Home Assistant command for unknown room %r", room_id)
            return
        if entity == "skip":
            command = RoomCommand(action="next")
        elif entity == "volume":
            try:
                volume = Panel.number(text)
            except PanelValueError as error:  # "1e999", "nan", "loud"
                log.warning("Home Assistant %s volume refused: %s", room_id, error)
                self._error("invalid_payload", f"{room_id} volume: {error}")
                return
            # HA's slider stays within 0-100; a hand-made publish is held to the same range.
            command = RoomCommand(action="volume", volume=max(0, min(100, round(volume))))
        elif entity == "sleep" and self._mode_command is not None and text in ("ON", "OFF"):
            mode = RoomModeCommand(mode="sleep" if text == "ON" else "normal")
            await self._call(self._mode_command(room_id, mode), f"{room_id} sleep")
            return
        else:
            log.warning("unknown Home Assistant room entity %r (%r)", entity, text[:20])
            return
        await self._call(self._room_command(room_id, command), f"{room_id} {entity}")

    async def _call(self, call: Awaitable[Any], what: str) -> Any:
        """Await an injected action; its failure is logged and announced, never raised."""
        try:
            return await call
        except Exception as error:  # noqa: BLE001 - HA's button must never break the daemon
            code = getattr(error, "code", "internal_error")
            message = getattr(error, "message", None) or f"{type(error).__name__}"
            log.warning("Home Assistant %s failed: %s %s", what, code, message)
            self._error(str(code), f"{what}: {message}")
            return _FAILED

    def _error(self, code: str, message: str) -> None:
        event = Event(type="error", ts=time.time(), error=ErrorInfo(code=code, message=message),
                      source="homeassistant")
        self._publish(self.topics.event, event.model_dump_json(exclude_none=True))

    # ------------------------------------------------------------------ what the bus says

    def job_changed(self, event: JobEvent) -> None:
        # Kept in the order of their last event (a dict keeps insertion order), so the
        # newest active job is the last one: O(1) per event, however many are active.
        self._active.pop(event.job_id, None)
        if not event.state.terminal:
            self._active[event.job_id] = event
        # The newest active job is shown; when none is left, the one that just finished.
        shown = next(reversed(self._active.values())) if self._active else event
        self._generation = GenerationState(
            state=shown.state.value, progress_pct=round(shown.progress * 100),
            job_id=shown.job_id, request_id=shown.request_id, song_id=shown.song_id,
            eta_s=shown.eta_s, error=shown.error.message if shown.error else None,
            active_jobs=len(self._active),
        )
        self._publish_generation()

    def song_ready(self, song: SongInfo, job_id: str) -> None:
        if song.shared:  # Like/Dislike act on what `song/latest` shows: shared songs only
            self.panel.set_latest_song(song.id)
