"""Playback: zones (MPD, Snapcast, local) behind one interface, party mode, room playlists.

Zone classes are named here and imported only when a room needs them (python-mpd2 and
sounddevice are optional extras; config.py imports `playback.settings`, which must stay
light). Adding an output type is one file plus one line in ZONES.
"""

from __future__ import annotations

# room output -> "module:factory"; factory(room_id, room_settings, ZoneContext) -> Zone
ZONES: dict[str, str] = {
    "mpd": "cassetted.playback.factories:mpd_zone",
    "snapcast": "cassetted.playback.factories:snapcast_zone",
    "local": "cassetted.playback.factories:local_zone",
    "homeassistant": "cassetted.playback.homeassistant:homeassistant_zone",
}

__all__ = ["ZONES"]
