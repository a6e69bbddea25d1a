"""Home Assistant zone: a room whose speaker is a Home Assistant media_player entity.

For homes whose speakers are not on MPD (Cast, Sonos, ...): the song's HTTP media URL
(see cassetted.library.media) is handed to `media_player.play_media` through HA's REST API with a
long-lived token from the CredentialStore (`cassetted keys set homeassistant`).

State is pushed: the zone subscribes to the entity's changes over HA's websocket API
(cassetted.homeassistant.websocket, standard library only) and reads the current state once
the subscription is live. Only when the websocket cannot be used (a proxy without upgrade
support, HA restarting) does it fall back to `GET /api/states/<entity_id>` every
`poll_interval_s` (and right after each command), trying the websocket again every
WEBSOCKET_RETRY_S. HA's REST API itself has no events.

The room's queue lives here, not in the player (most HA media players keep no queue): when
the player goes idle after playing our track, the next track is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cassetted.homeassistant.rest import HomeAssistantClient, HomeAssistantError
from cassetted.homeassistant.settings import HomeAssistantSettings, HomeAssistantZoneSettings
from cassetted.playback.base import PlayerState, StateCallback, Track, ZoneError, ZoneStatus
from cassetted.store.credentials import Secret
from cassetted.tasks import BackgroundTasks

log = logging.getLogger(__name__)

_STATES: dict[str, PlayerState] = {
    "playing": "playing", "buffering": "playing", "paused": "paused",
    "idle": "idle", "off": "idle", "on": "idle", "standby": "idle",
}
_SIMPLE = {"play": "media_play", "pause": "media_pause", "stop": "media_stop"}
WEBSOCKET_RETRY_S = 30.0


class HomeAssistantZone:
    """Implements Zone for one room on one HA media_player entity."""

    def __init__(self, room_id: str, entity_id: str, client: HomeAssistantClient, *,
                 poll_interval_s: float = 5.0, push: bool = True) -> None:
        self.room_id = room_id
        self.entity_id = entity_id
        self._client = client
        self._poll_interval_s = poll_interval_s
        self._push = push
        self._stopping = False
        self.pushed = False  # True while the websocket subscription is live
        self._on_state: StateCallback | None = None
        self._tasks = BackgroundTasks(f"ha-zone-{room_id}")
        self._wake = asyncio.Event()
        self._status = ZoneStatus("unavailable", extra={"reason": "not polled yet"})
        self._queue: list[Track] = []
        self._index = 0
        self._current: Track | None = None   # the track we asked the player to play
        self._playing_ours = False           # last poll saw our track playing

    @classmethod
    def from_settings(cls, room_id: str, zone: HomeAssistantZoneSettings,
                      settings: HomeAssistantSettings,
                      token: Callable[[], Awaitable[Secret | None]]) -> HomeAssistantZone:
        if not settings.url:
            raise ZoneError(f"room {room_id!r} plays through Home Assistant, but "
                            "[homeassistant] url is not set")
        client = HomeAssistantClient(settings.url, token, verify_tls=settings.verify_tls,
                                     timeout_s=settings.timeout_s)
        return cls(room_id, zone.entity_id, client, poll_interval_s=settings.poll_interval_s,
                   push=settings.websocket)

    @property
    def status(self) -> ZoneStatus:
        return self._status

    # ------------------------------------------------------------------ lifecycle

    async def start(self, on_state: StateCallback) -> None:
        self._on_state = on_state
        self._stopping = False  # a zone stopped earlier may be started again
        self._tasks.spawn(self._state_loop(), "state", replace=True)

    async def stop(self) -> None:
        self._stopping = True  # also ends the loops should a cancellation be swallowed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):  # a request stuck in HA's client must not hold stop
                await self._tasks.cancel_all()

    # ------------------------------------------------------------------ commands

    async def play_now(self, track: Track) -> None:
        self._queue, self._index = [track], 0
        await self._play(track)

    async def set_queue(self, tracks: list[Track], start_index: int = 0, play: bool = True) -> None:
        if tracks and not 0 <= start_index < len(tracks):
            raise ZoneError(f"start index {start_index} is outside the playlist")
        self._queue, self._index = list(tracks), start_index
        if play and tracks:
            await self._play(tracks[start_index])

    async def control(self, action: str, *, volume: int | None = None,
                      position_s: float | None = None) -> None:
        if action in ("next", "previous"):
            await self._step(1 if action == "next" else -1)
        elif action == "play" and self._status.state == "idle" and self._queue:
            await self._play(self._queue[self._index])
        elif action in _SIMPLE:
            if action == "stop":
                self._playing_ours = False  # a stop we asked for is not the end of a song
            await self._service(_SIMPLE[action])
        elif action == "volume":
            if volume is None or not 0 <= volume <= 100:
                raise ZoneError("volume must be 0-100")
            await self._service("volume_set", volume_level=round(volume / 100, 2))
        elif action == "seek":
            if position_s is None or position_s < 0:
                raise ZoneError("seek needs a position in seconds")
            await self._service("media_seek", seek_position=position_s)
        else:
            raise ZoneError(f"a Home Assistant room cannot {action!r}")

    async def _step(self, delta: int) -> None:
        """next/previous through our queue; without one, the player's own next/previous."""
        if self._queue:
            index = self._index + delta
            if 0 <= index < len(self._queue):
                self._index = index
                await self._play(self._queue[index])
            elif delta > 0:
                self._playing_ours = False
                await self._service("media_stop")
            return
        await self._service("media_next_track" if delta > 0 else "media_previous_track")

    async def _play(self, track: Track) -> None:
        if not track.url:
            raise ZoneError("this room plays through Home Assistant, which fetches songs over "
                            "HTTP: enable the media server ([media] enabled = true)")
        self._current = track
        self._playing_ours = False
        await self._service("play_media", media_content_id=track.url,
                            media_content_type="music")

    async def _service(self, service: str, **data: Any) -> None:
        try:
            await self._client.call_service("media_player", service,
                                            {"entity_id": self.entity_id, **data})
        except HomeAssistantError as error:
            raise ZoneError(str(error)) from None
        self._wake.set()  # read the new state now rather than at the next tick

    # ------------------------------------------------------------------ state

    async def _state_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if self._push:
                try:
                    await self._client.follow(self.entity_id, self._apply,
                                              on_subscribed=self._subscribed)
                except (HomeAssistantError, ConnectionError, OSError, TimeoutError) as error:
                    log.info("room %s: no state push from Home Assistant (%s); polling",
                             self.room_id, error)
                finally:
                    self.pushed = False
            deadline = loop.time() + (WEBSOCKET_RETRY_S if self._push else float("inf"))
            while loop.time() < deadline and not self._stopping:
                await self._poll_once()
                self._wake.clear()
                await self._sleep_or_wake()

    async def _sleep_or_wake(self) -> None:
        """Wait for a command's wake-up or the poll interval. (asyncio.wait, not wait_for:
        on Python 3.11 wait_for can swallow a cancellation that races the event.)"""
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=self._poll_interval_s)
        finally:
            waiter.cancel()

    async def _subscribed(self) -> None:
        self.pushed = True
        await self._poll_once()  # the state now; changes from here on are pushed

    async def _poll_once(self) -> None:
        try:
            state = await self._client.get_state(self.entity_id)
        except HomeAssistantError as error:
            self._report(ZoneStatus("unavailable", extra={"reason": str(error)}))
            return
        await self._apply(state)

    async def _apply(self, state: dict[str, Any]) -> None:
        """One state of the entity (polled or pushed): report it, advance the queue."""
        status = self._status_of(state)
        finished = (self._playing_ours and status.state == "idle")
        self._playing_ours = status.state == "playing" and status.song_id is not None
        self._report(status)
        if finished:
            await self._advance()

    async def _advance(self) -> None:
        """Our track ended by itself: start the next one in the queue, if any."""
        if self._index + 1 < len(self._queue):
            self._index += 1
            try:
                await self._play(self._queue[self._index])
            except ZoneError as error:
                log.warning("room %s: cannot start the next song: %s", self.room_id, error)

    def _status_of(self, state: dict[str, Any]) -> ZoneStatus:
        attributes = state.get("attributes") or {}
        player: PlayerState = _STATES.get(str(state.get("state")), "unavailable")
        volume = attributes.get("volume_level")
        position = attributes.get("media_position")
        content = attributes.get("media_content_id")
        song_id = self._current.song_id if (
            self._current is not None and content == self._current.url) else None
        return ZoneStatus(
            state=player, song_id=song_id,
            volume=round(volume * 100) if isinstance(volume, (int, float)) else None,
            elapsed_s=float(position) if isinstance(position, (int, float)) else None,
            extra={"entity_id": self.entity_id, "media_title": attributes.get("media_title")},
        )

    def _report(self, status: ZoneStatus) -> None:
        if status == self._status:
            return
        self._status = status
        if self._on_state is not None:
            self._on_state(status)


def homeassistant_zone(room_id: str, room: Any, ctx: Any) -> HomeAssistantZone:
    """Zone factory for `cassetted.playback.ZONES["homeassistant"]`.

    Reads `room.homeassistant` (HomeAssistantZoneSettings) and, from the ZoneContext,
    `homeassistant` (HomeAssistantSettings) and `homeassistant_token` (an async callable
    returning the stored Secret). Incomplete settings raise InvalidState, which the
    factories turn into an "unavailable" room with the reason.
    """
    from cassetted.contract import errors

    zone = getattr(room, "homeassistant", None)
    settings = getattr(ctx, "homeassistant", None)
    token = getattr(ctx, "homeassistant_token", None)
    if zone is None:
        raise errors.InvalidState(f"room {room_id!r} has output 'homeassistant' but no "
                                  f"[rooms.{room_id}.homeassistant] entity_id")
    if settings is None or not settings.url or token is None:
        raise errors.InvalidState(f"room {room_id!r} plays through Home Assistant, but "
                                  "[homeassistant] url is not set")
    return HomeAssistantZone.from_settings(room_id, zone, settings, token)
