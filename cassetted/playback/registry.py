"""How a room's configuration becomes a zone: the zone plugin its `output` names.

Zone plugins are registered in the `cassetted.zones` entry-point group (playback/plugin.py);
the built-ins' factories are the functions below. Factories receive the room's settings
and a ZoneContext holding what zones share (the one snapserver connection, the [snapcast]
settings), so a zone class never reads the global configuration itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from cassetted.contract import errors
from cassetted.playback.base import PlaylistMirror, StateCallback, Track, Zone, ZoneError, ZoneStatus
from cassetted.playback.plugin import ZONE_PLUGINS
from cassetted.playback.settings import SnapcastPlaybackSettings

if TYPE_CHECKING:
    from cassetted.config import RoomSettings
    from cassetted.homeassistant.settings import HomeAssistantSettings
    from cassetted.playback.zones.snapcast import SnapcastClient

@dataclass
class ZoneContext:
    snapcast: SnapcastPlaybackSettings
    snapcast_client: SnapcastClient | None  # created by the controller when any room needs it
    reconnect_max_s: float = 5.0
    homeassistant: HomeAssistantSettings | None = None  # for `homeassistant` rooms
    homeassistant_token: Callable[[], Awaitable[Any]] | None = None  # the stored Secret


def mpd_zone(room_id: str, room: RoomSettings, ctx: ZoneContext) -> Zone:
    from cassetted.playback.zones.mpd import MpdZone

    if room.mpd is None:
        raise errors.InvalidState(f"room {room_id!r} has output 'mpd' but no [rooms.{room_id}.mpd]")
    return MpdZone(room_id, room.mpd, reconnect_max_s=ctx.reconnect_max_s)


def snapcast_zone(room_id: str, room: RoomSettings, ctx: ZoneContext) -> Zone:
    """The room's own MPD feeds `snapcast_stream` (a proposed room field); without one, the
    party MPD ([snapcast.mpd]) feeds the party stream."""
    from cassetted.playback.zones.mpd import MpdZone
    from cassetted.playback.zones.snapcast import SnapcastZone

    assert ctx.snapcast_client is not None
    if not room.snapcast_group:
        raise errors.InvalidState(f"room {room_id!r} has output 'snapcast' but no snapcast_group")
    if room.mpd is not None:
        feeder = MpdZone(room_id, room.mpd, reconnect_max_s=ctx.reconnect_max_s)
        stream = room.snapcast_stream
    elif ctx.snapcast.mpd is not None:
        feeder = MpdZone(room_id, ctx.snapcast.mpd, reconnect_max_s=ctx.reconnect_max_s)
        stream = ctx.snapcast.party_stream
    else:
        feeder, stream = None, None
    return SnapcastZone(room_id, room.snapcast_group, ctx.snapcast_client, feeder, stream)


def local_zone(room_id: str, room: RoomSettings, ctx: ZoneContext) -> Zone:
    from cassetted.playback.zones.local import LocalZone

    return LocalZone(room_id, device=room.device)


class UnavailableZone:
    """A room whose player cannot be built (a missing extra, incomplete settings).

    It keeps the room visible as "unavailable" with the reason, instead of failing the
    daemon's start or silently having no player.
    """

    def __init__(self, room_id: str, reason: str) -> None:
        self.room_id = room_id
        self.status = ZoneStatus("unavailable", extra={"reason": reason})

    async def start(self, on_state: StateCallback) -> None:
        on_state(self.status)

    async def stop(self) -> None:
        pass

    async def play_now(self, track: Track) -> None:
        raise ZoneError(str(self.status.extra["reason"]))

    async def set_queue(self, tracks: list[Track], start_index: int = 0, play: bool = True) -> None:
        raise ZoneError(str(self.status.extra["reason"]))

    async def control(self, action: str, *, volume: int | None = None,
                      position_s: float | None = None) -> None:
        raise ZoneError(str(self.status.extra["reason"]))


def create_zone(room_id: str, room: RoomSettings, ctx: ZoneContext) -> Zone | None:
    """The zone of a room, or None for a room with output "none"."""
    plugin = ZONE_PLUGINS.get(room.output)
    if plugin is None:
        return None
    try:
        return plugin.create(room_id, room, ctx)
    except ImportError as error:
        extra = "mpd" if "mpd" in str(error) else (plugin.extra or room.output)
        return UnavailableZone(room_id, f"output {room.output!r} needs the '{extra}' extra: "
                                        f"pip install 'cassetted[{extra}]' ({error})")
    except errors.CassettedError as error:
        return UnavailableZone(room_id, error.message)


def playlist_mirror(room: RoomSettings | None, zone: Zone | None) -> PlaylistMirror | None:
    """The room's zone as a PlaylistMirror when its output's plugin declares `playlists`."""
    if room is None or zone is None or isinstance(zone, UnavailableZone):
        return None
    plugin = ZONE_PLUGINS.get(room.output)
    if plugin is None or not plugin.capabilities.playlists:
        return None
    return cast("PlaylistMirror", zone)
