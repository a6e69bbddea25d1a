"""An annotated template of a zone plugin (a room's player): copy it into your own package.

A plugin is this one module plus one line in your package's pyproject.toml:

    [project.entry-points."cassetted.zones"]
    myzone = "my_package.my_zone:PLUGIN"

then `pip install` your package next to cassetted; a room plays through it with
`output = "myzone"`, configured in `[rooms.<id>.<room_key>]`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cassetted.contract import errors
from cassetted.playback.base import StateCallback, Track, ZoneError, ZoneStatus
from cassetted.playback.plugin import ZoneCapabilities, ZonePlugin


class TemplateZoneSettings(BaseModel):
    """A room's `[rooms.<id>.template]` table (unknown keys stop the daemon)."""

    model_config = ConfigDict(extra="forbid")

    speaker: str = Field(min_length=1, description="Which speaker plays the room.")


class TemplateZone:
    """Implements cassetted.playback.base.Zone. Every method runs on the event loop; report
    what the player does through `on_state`, from its own events (never poll)."""

    def __init__(self, room_id: str, settings: TemplateZoneSettings) -> None:
        self.room_id = room_id
        self.settings = settings
        self.status = ZoneStatus("idle", volume=50)
        self._on_state: StateCallback | None = None

    async def start(self, on_state: StateCallback) -> None:
        self._on_state = on_state  # return promptly; connect in the background
        on_state(self.status)

    async def stop(self) -> None:
        self._on_state = None

    async def play_now(self, track: Track) -> None:
        self._set(ZoneStatus("playing", song_id=track.song_id, volume=self.status.volume))

    async def set_queue(self, tracks: list[Track], start_index: int = 0, play: bool = True) -> None:
        if play and tracks:
            await self.play_now(tracks[start_index])

    async def control(self, action: str, *, volume: int | None = None,
                      position_s: float | None = None) -> None:
        if action == "volume" and volume is not None:
            self._set(ZoneStatus(self.status.state, self.status.song_id, volume))
        elif action in ("stop", "pause"):
            self._set(ZoneStatus("idle" if action == "stop" else "paused", volume=self.status.volume))
        else:  # the message is shown to a person
            raise ZoneError(f"{action} is not supported here")

    def _set(self, status: ZoneStatus) -> None:
        self.status = status
        if self._on_state is not None:
            self._on_state(status)


def create(room_id: str, room: Any, ctx: Any) -> TemplateZone:
    """The factory: the room's settings (its table is `room.plugin_settings(...)`) and the
    ZoneContext. Incomplete settings raise InvalidState: the room shows "unavailable"."""
    own = room.plugin_settings(TemplateZoneSettings)
    if own is None:
        raise errors.InvalidState(f"room {room_id!r} has output 'template' but no "
                                  f"[rooms.{room_id}.template]")
    return TemplateZone(room_id, own)


PLUGIN = ZonePlugin(
    name="template",
    factory=f"{__name__}:create",
    capabilities=ZoneCapabilities(volume=True),
    room_key="template",
    room_model=TemplateZoneSettings,
    description="a player that only remembers what it was told",
)
