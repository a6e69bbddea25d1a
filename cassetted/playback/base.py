"""The zone interface: how a room plays songs, whatever the speakers are.

A zone belongs to one room. The playback controller hands it songs and controls; the zone
reports what its player is doing through `on_state`, from the player's own events (MPD's
`idle`, snapserver notifications), never by polling. Adding an output type is one new file
implementing Zone plus one line in the zone registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

PlayerState = Literal["playing", "paused", "idle", "unavailable"]


@dataclass(frozen=True)
class Track:
    """A library song as a zone needs it: the file, and what to show."""

    song_id: str
    path: Path
    title: str
    duration_s: float
    url: str | None = None  # HTTP media URL, for zones whose player fetches over the network


@dataclass(frozen=True)
class ZoneStatus:
    """What the player is doing now; the controller turns it into the retained room state."""

    state: PlayerState
    song_id: str | None = None
    volume: int | None = None
    elapsed_s: float | None = None
    extra: dict[str, object] = field(default_factory=dict)


StateCallback = Callable[[ZoneStatus], None]


class ZoneError(Exception):
    """The player refused or is unreachable; the message is safe to show to a person."""


class Zone(Protocol):
    """What every zone MUST implement. All methods run on the daemon's event loop.

    `start` MUST return promptly and keep (re)connecting in the background until `stop`;
    while the player is unreachable the zone reports state "unavailable" and commands raise
    ZoneError. `play_now` MUST start `track` at once, ahead of whatever was queued.
    `set_queue` replaces the player's queue with `tracks` (a room playlist) and starts at
    `start_index` when `play` is true.
    """

    room_id: str

    async def start(self, on_state: StateCallback) -> None: ...
    async def stop(self) -> None: ...
    async def play_now(self, track: Track) -> None: ...
    async def set_queue(self, tracks: list[Track], start_index: int = 0, play: bool = True) -> None: ...
    async def control(self, action: str, *, volume: int | None = None,
                      position_s: float | None = None) -> None: ...


class PlaylistMirror(Protocol):
    """Optional, for zones whose player keeps named playlists (MPD's stored playlists).

    The controller mirrors each room's playlist into the player so that any MPD client (a
    phone app, Home Assistant's mpd integration) sees it. Zones without stored playlists
    simply don't implement this.
    """

    async def save_playlist(self, name: str, tracks: list[Track]) -> None: ...
    async def append_to_playlist(self, name: str, track: Track) -> None: ...
