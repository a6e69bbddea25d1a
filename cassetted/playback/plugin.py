"""What a zone plugin declares, and the registry of the `cassetted.zones` group.

A room's `output` names a zone plugin (or "none"). The plugin's factory builds the room's
Zone from the room's settings and a ZoneContext (what zones share); its capabilities say
what the player can do, so callers never probe a zone object. A new output type is one
module plus one entry-point line (see playback/zones/_template.py). The entry points come
from installed package metadata: a checkout must be pip-installed (scripts/run and
scripts/test do this) for the built-ins to be found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from cassetted.plugins import ZONE_GROUP, Registry, load_factory

if TYPE_CHECKING:
    from cassetted.playback.base import Zone

NO_OUTPUT = "none"  # a room without a player


@dataclass(frozen=True)
class ZoneCapabilities:
    """- `volume`, `seek`: the player takes `control("volume")` / a position.
    - `groups`: rooms of this output can be grouped and played in sync (party mode).
    - `playlists`: the zone is a PlaylistMirror (the player keeps named playlists)."""

    volume: bool = False
    seek: bool = False
    groups: bool = False
    playlists: bool = False


@dataclass(frozen=True)
class ZonePlugin:
    """The descriptor an entry point of `cassetted.zones` names.

    `factory` is "module:function", imported when a room of this output is first built:
    factory(room_id, room_settings, ZoneContext) -> Zone; it raises InvalidState for
    incomplete settings (the room is then shown "unavailable" with the reason). `room_key`
    and `room_model` name the table a room of this output configures (`[rooms.<id>.mpd]`).
    `extra` is the pip extra whose absence (an ImportError) the room reports.
    """

    name: str
    factory: str
    capabilities: ZoneCapabilities = field(default_factory=ZoneCapabilities)
    room_key: str | None = None
    room_model: type[BaseModel] | None = None
    settings_section: str | None = None
    settings_model: type[BaseModel] | None = None
    extra: str | None = None
    description: str = ""

    def create(self, room_id: str, room: Any, ctx: Any) -> Zone:
        return cast("Zone", load_factory(self.factory)(room_id, room, ctx))


BUILTIN_ZONES: tuple[str, ...] = ("mpd", "snapcast", "local", "homeassistant")

ZONE_PLUGINS: Registry[ZonePlugin] = Registry(ZONE_GROUP, "zone", ZonePlugin, BUILTIN_ZONES)


def output_names() -> tuple[str, ...]:
    """What `[rooms.<id>] output` accepts: the registered zones, then "none"."""
    return (*ZONE_PLUGINS.names(), NO_OUTPUT)
