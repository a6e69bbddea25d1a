"""The built-in zones' descriptors (entry points of `cassetted.zones`).

Importing this module imports only settings models: python-mpd2, sounddevice and the Home
Assistant client load when a room of that output is first built.
"""

from __future__ import annotations

from cassetted.homeassistant.settings import HomeAssistantZoneSettings
from cassetted.playback.plugin import ZoneCapabilities, ZonePlugin
from cassetted.playback.settings import MpdEndpoint, SnapcastPlaybackSettings

MPD = ZonePlugin(
    name="mpd",
    factory="cassetted.playback.registry:mpd_zone",
    capabilities=ZoneCapabilities(volume=True, seek=True, playlists=True),
    room_key="mpd",
    room_model=MpdEndpoint,
    extra="mpd",
    description="a room's own MPD",
)

SNAPCAST = ZonePlugin(
    name="snapcast",
    factory="cassetted.playback.registry:snapcast_zone",
    capabilities=ZoneCapabilities(volume=True, groups=True),
    room_key="mpd",  # optional: the room's own MPD feeding its stream
    room_model=MpdEndpoint,
    settings_section="snapcast",
    settings_model=SnapcastPlaybackSettings,
    description="a snapserver group, in sync with the other rooms",
)

LOCAL = ZonePlugin(
    name="local",
    factory="cassetted.playback.registry:local_zone",
    capabilities=ZoneCapabilities(volume=True, seek=True),
    extra="local",
    description="a sound card of this machine (sounddevice)",
)

HOMEASSISTANT = ZonePlugin(
    name="homeassistant",
    factory="cassetted.playback.zones.homeassistant:homeassistant_zone",
    capabilities=ZoneCapabilities(volume=True, seek=True),
    room_key="homeassistant",
    room_model=HomeAssistantZoneSettings,
    description="a Home Assistant media_player entity",
)
