"""Home Assistant MQTT discovery payloads: what entities exist and where they read and write.

Pure functions, no I/O: `main_entities` and `room_entities` describe every entity, and
`config_messages` turns them into retained `<prefix>/<component>/<node_id>/<object_id>/config`
messages. One topic per entity is used (not device-based discovery) because it works on
every Home Assistant since 2024.1; device-based discovery needs 2025.2.

Topic layout under the base topic (all ours; HA only reads the contract topics):
  <base>/ha/panel/state             retained JSON of the panel's values (text, selects, ...)
  <base>/ha/panel/<entity>/set      HA -> us: a text/select/number/switch value or a button press
  <base>/ha/room/<room>/<entity>/set HA -> us: room volume, room skip
  <base>/ha/generation              retained JSON: state and progress of the newest job
  <base>/ha/rooms                   retained JSON list of the rooms last announced (cleanup)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cassetted import __version__
from cassetted.contract.schemas import MAX_BPM, MAX_DURATION_S, MIN_DURATION_S, JobState

MANUFACTURER = "cassetted"
TEXT_MAX = 255  # HA's MQTT text entity holds at most 255 characters
BPM_AUTO = 0    # the BPM number shows 0 for "auto"; anything below MIN_BPM means auto
EVENT_TYPES = ("song_ready", "song_started", "song_finished")
GENERATION_STATES = ("idle", *(state.value for state in JobState))
ROOM_STATES = ("playing", "paused", "idle", "unavailable")

_SAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Topics:
    """Every topic the bridge and the discovery payloads use, from the two prefixes."""

    base: str
    prefix: str

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def queue(self) -> str:
        return f"{self.base}/queue"

    @property
    def latest(self) -> str:
        return f"{self.base}/song/latest"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def generation(self) -> str:
        return f"{self.base}/ha/generation"

    @property
    def panel_state(self) -> str:
        return f"{self.base}/ha/panel/state"

    @property
    def library_stats(self) -> str:
        return f"{self.base}/library/stats"

    @property
    def party_state(self) -> str:
        return f"{self.base}/party/state"

    def panel_set(self, entity: str) -> str:
        return f"{self.base}/ha/panel/{entity}/set"

    @property
    def rooms(self) -> str:
        return f"{self.base}/ha/rooms"

    def room_state(self, room_id: str) -> str:
        return f"{self.base}/room/{room_id}/state"

    def room_set(self, room_id: str, entity: str) -> str:
        return f"{self.base}/ha/room/{room_id}/{entity}/set"

    @property
    def ha_status(self) -> str:
        return f"{self.prefix}/status"

    def config(self, component: str, node_id: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{node_id}/{object_id}/config"


def node_id(base_topic: str) -> str:
    """The discovery node id: the base topic made topic-safe ([A-Za-z0-9_-]).

    When characters had to be replaced a short hash of the real base topic is appended, so
    `a/b` and `a_b` never share discovery topics.
    """
    slug = _SAFE.sub("_", base_topic)
    if slug != base_topic:
        slug += "_" + hashlib.sha1(base_topic.encode()).hexdigest()[:6]
    return slug


@dataclass(frozen=True)
class Entity:
    """One discovery config before the shared keys (device, origin, availability) are added."""

    component: str
    object_id: str
    config: dict[str, Any]
    room: str | None = None  # set for the entities of a room's device


@dataclass(frozen=True)
class PanelOptions:
    """What the main device's selects offer (computed from the settings)."""

    genres: tuple[str, ...]
    moods: tuple[str, ...]
    room_options: tuple[str, ...]
    provider_options: tuple[str, ...]
    rooms: dict[str, str] = field(default_factory=dict)  # room id -> device name


def device_block(topics: Topics, room_id: str | None = None, room_name: str | None = None
                 ) -> dict[str, Any]:
    """The shared device of every main entity, or one room's device (linked via_device)."""
    main_id = f"cassetted_{node_id(topics.base)}"
    name = "cassetted" if topics.base == "cassetted" else f"cassetted {topics.base}"
    if room_id is None:
        return {"identifiers": [main_id], "name": name, "manufacturer": MANUFACTURER,
                "model": "Song generator", "sw_version": __version__}
    room_name = room_name or room_id
    return {"identifiers": [f"{main_id}_room_{room_id}"], "name": f"{name} {room_name}",
            "manufacturer": MANUFACTURER, "model": "Room", "sw_version": __version__,
            "suggested_area": room_name, "via_device": main_id}


ORIGIN: dict[str, Any] = {"name": "cassetted", "sw_version": __version__}


def _json_value(key: str) -> str:
    return f"{{{{ value_json.{key} }}}}"


def main_entities(topics: Topics, panel: PanelOptions) -> list[Entity]:
    """The main device: the song panel, the buttons, the status sensors, the event."""
    state = topics.panel_state
    return [
        Entity("text", "prompt", {
            "name": "Song prompt", "icon": "mdi:text-box-edit",
            "command_topic": topics.panel_set("prompt"), "state_topic": state,
            "value_template": _json_value("prompt"), "min": 0, "max": TEXT_MAX, "mode": "text",
        }),
        Entity("select", "genre", {
            "name": "Genre", "icon": "mdi:music-box-multiple",
            "command_topic": topics.panel_set("genre"), "state_topic": state,
            "value_template": _json_value("genre"), "options": list(panel.genres),
        }),
        Entity("select", "mood", {
            "name": "Mood", "icon": "mdi:emoticon-outline",
            "command_topic": topics.panel_set("mood"), "state_topic": state,
            "value_template": _json_value("mood"), "options": list(panel.moods),
        }),
        Entity("select", "room", {
            "name": "Room", "icon": "mdi:speaker",
            "command_topic": topics.panel_set("room"), "state_topic": state,
            "value_template": _json_value("room"), "options": list(panel.room_options),
        }),
        Entity("select", "lyrics_provider", {
            "name": "Lyrics provider", "icon": "mdi:script-text",
            "entity_category": "config",
            "command_topic": topics.panel_set("lyrics_provider"), "state_topic": state,
            "value_template": _json_value("lyrics_provider"),
            "options": list(panel.provider_options),
        }),
        Entity("number", "duration", {
            "name": "Duration", "icon": "mdi:timer-outline",
            "command_topic": topics.panel_set("duration"), "state_topic": state,
            "value_template": _json_value("duration"), "min": MIN_DURATION_S,
            "max": MAX_DURATION_S, "step": 5, "mode": "box", "unit_of_measurement": "s",
        }),
        Entity("number", "bpm", {
            "name": "BPM", "icon": "mdi:metronome",  # 0 = auto (the daemon chooses)
            "command_topic": topics.panel_set("bpm"), "state_topic": state,
            "value_template": _json_value("bpm"), "min": BPM_AUTO, "max": MAX_BPM, "step": 1,
            "mode": "box",
        }),
        Entity("button", "generate", {
            "name": "Generate", "icon": "mdi:creation",
            "command_topic": topics.panel_set("generate"), "payload_press": "PRESS",
        }),
        Entity("button", "skip", {
            "name": "Skip", "icon": "mdi:skip-next",
            "command_topic": topics.panel_set("skip"), "payload_press": "PRESS",
        }),
        Entity("button", "like", {
            "name": "Like", "icon": "mdi:thumb-up",
            "command_topic": topics.panel_set("like"), "payload_press": "PRESS",
        }),
        Entity("button", "dislike", {
            "name": "Dislike", "icon": "mdi:thumb-down",
            "command_topic": topics.panel_set("dislike"), "payload_press": "PRESS",
        }),
        Entity("switch", "party", {
            "name": "Party mode", "icon": "mdi:party-popper",
            "command_topic": topics.panel_set("party"), "state_topic": state,
            "value_template": _json_value("party"), "payload_on": "ON", "payload_off": "OFF",
            "state_on": "ON", "state_off": "OFF",
        }),
        Entity("switch", "child_safe", {
            "name": "Child-safe", "icon": "mdi:human-child", "entity_category": "config",
            "command_topic": topics.panel_set("child_safe"), "state_topic": state,
            "value_template": _json_value("child_safe"), "payload_on": "ON",
            "payload_off": "OFF", "state_on": "ON", "state_off": "OFF",
        }),
        Entity("sensor", "generation_status", {
            "name": "Generation status", "icon": "mdi:progress-wrench",
            "state_topic": topics.generation, "value_template": _json_value("state"),
            "device_class": "enum", "options": list(GENERATION_STATES),
            "json_attributes_topic": topics.generation,
        }),
        Entity("sensor", "progress", {
            "name": "Progress", "icon": "mdi:progress-clock",
            "state_topic": topics.generation, "value_template": _json_value("progress_pct"),
            "unit_of_measurement": "%", "state_class": "measurement",
        }),
        Entity("sensor", "queue_length", {
            "name": "Queue length", "icon": "mdi:playlist-music",
            "state_topic": topics.queue,
            "value_template": "{{ value_json.pending + (value_json.running | length) }}",
            "state_class": "measurement", "unit_of_measurement": "songs",
        }),
        Entity("sensor", "last_song", {
            "name": "Last song", "icon": "mdi:music-note",
            "state_topic": topics.latest,
            # HA states hold 255 characters (titles are at most 200).
            "value_template": "{{ value_json.title[:255] }}",
            "json_attributes_topic": topics.latest,
            "json_attributes_template": (
                "{{ {'song_id': value_json.id, 'lyrics': value_json.lyrics, "
                "'genre': value_json.genre, 'mood': value_json.mood, 'bpm': value_json.bpm, "
                "'key': value_json.key, 'duration_s': value_json.duration_s, "
                "'room': value_json.get('room'), 'file': value_json.file, "
                "'url': value_json.get('url')} | tojson }}"),
        }),
        Entity("sensor", "songs_made", {
            "name": "Songs made", "icon": "mdi:music-box-multiple-outline",
            "state_topic": topics.library_stats, "value_template": _json_value("songs"),
            "state_class": "total", "unit_of_measurement": "songs",
            "json_attributes_topic": topics.library_stats,
            "json_attributes_template": "{{ {'by_user': value_json.by_user, "
                                        "'private': value_json.private, "
                                        "'votes': value_json.votes} | tojson }}",
        }),
        Entity("sensor", "songs_shared", {
            "name": "Songs shared", "icon": "mdi:share-variant",
            "state_topic": topics.library_stats, "value_template": _json_value("shared"),
            "state_class": "total", "unit_of_measurement": "songs",
        }),
        Entity("sensor", "top_voted", {
            "name": "Top voted song", "icon": "mdi:trophy",
            "state_topic": topics.library_stats,
            "value_template": "{{ value_json.top_voted[0].title[:255] "
                              "if value_json.top_voted else None }}",
            "json_attributes_topic": topics.library_stats,
            "json_attributes_template": "{{ {'top_voted': value_json.top_voted} | tojson }}",
        }),
        Entity("sensor", "party_queue", {
            "name": "Party queue", "icon": "mdi:playlist-star",
            "state_topic": topics.party_state,
            "value_template": "{{ value_json.queue | length }}",
            "state_class": "measurement", "unit_of_measurement": "songs",
            "json_attributes_topic": topics.party_state,
            "json_attributes_template": "{{ {'active': value_json.active, "
                                        "'theme': value_json.theme, "
                                        "'queue': value_json.queue} | tojson }}",
        }),
        Entity("event", "song_events", {
            "name": "Song events", "icon": "mdi:bell-ring",
            "state_topic": topics.event, "event_types": list(EVENT_TYPES),
            # Other event types (error, party_*) render empty, which HA ignores silently.
            "value_template": (
                "{% if value_json.type in " + json.dumps(list(EVENT_TYPES)) + " %}"
                "{{ {'event_type': value_json.type, 'song_id': value_json.get('song_id'), "
                "'job_id': value_json.get('job_id'), 'room': value_json.get('room'), "
                "'title': value_json.get('title')} | tojson }}{% endif %}"),
        }),
    ]


def room_entities(topics: Topics, room_id: str, room_name: str) -> list[Entity]:
    """A room's device: playback state, now playing, volume, skip, playlist length."""
    state = topics.room_state(room_id)
    prefix = f"room_{room_id}"
    return [
        Entity("sensor", f"{prefix}_state", {
            "name": "State", "icon": "mdi:speaker-play", "state_topic": state,
            "value_template": _json_value("state"), "device_class": "enum",
            "options": list(ROOM_STATES),
        }, room_id),
        Entity("sensor", f"{prefix}_now_playing", {
            "name": "Now playing", "icon": "mdi:music-note", "state_topic": state,
            "value_template": "{{ value_json.song.title if value_json.song else None }}",
            "json_attributes_topic": state,
            "json_attributes_template": (
                "{{ {'song_id': value_json.song.id if value_json.song else None, "
                "'party': value_json.party, 'output': value_json.output} | tojson }}"),
        }, room_id),
        Entity("number", f"{prefix}_volume", {
            "name": "Volume", "icon": "mdi:volume-high", "state_topic": state,
            "value_template": _json_value("volume"),  # null renders "None": unknown
            "command_topic": topics.room_set(room_id, "volume"), "min": 0, "max": 100,
            "step": 1, "mode": "slider", "unit_of_measurement": "%",
        }, room_id),
        Entity("button", f"{prefix}_skip", {
            "name": "Skip", "icon": "mdi:skip-next",
            "command_topic": topics.room_set(room_id, "skip"), "payload_press": "PRESS",
        }, room_id),
        Entity("sensor", f"{prefix}_playlist", {
            "name": "Playlist length", "icon": "mdi:playlist-music", "state_topic": state,
            # `playlist_length` is an optional field of the room state.
            "value_template": "{{ value_json.get('playlist_length') }}",
            "state_class": "measurement", "unit_of_measurement": "songs",
        }, room_id),
        Entity("switch", f"{prefix}_sleep", {
            "name": "Sleep mode", "icon": "mdi:sleep", "state_topic": state,
            "command_topic": topics.room_set(room_id, "sleep"),
            "value_template": "{{ 'ON' if value_json.get('mode') == 'sleep' else 'OFF' }}",
            "payload_on": "ON", "payload_off": "OFF", "state_on": "ON", "state_off": "OFF",
        }, room_id),
        Entity("sensor", f"{prefix}_mode", {
            "name": "Mode", "icon": "mdi:weather-night", "state_topic": state,
            "value_template": "{{ value_json.get('mode', 'normal') }}",
            "device_class": "enum", "options": ["normal", "sleep", "karaoke"],
            "json_attributes_topic": state,
            "json_attributes_template": "{{ {'child_safe': value_json.get('child_safe'), "
                                        "'volume_cap': value_json.get('volume_cap')} | tojson }}",
        }, room_id),
        Entity("sensor", f"{prefix}_learned", {
            "name": "Learned taste", "icon": "mdi:brain", "state_topic": state,
            "value_template": "{% set l = value_json.get('learned') or {} %}"
                              "{{ [l.get('genre'), l.get('mood')] | select | join(' / ') "
                              "or 'nothing yet' }}",
            "json_attributes_topic": state,
            "json_attributes_template": "{{ (value_json.get('learned') or {}) | tojson }}",
        }, room_id),
    ]


def config_payload(entity: Entity, topics: Topics, room_name: str | None = None
                   ) -> dict[str, Any]:
    """The full discovery config: the entity's keys plus the shared ones."""
    unique = f"cassetted_{topics.base}_{entity.object_id}"
    payload = dict(entity.config)
    payload.update({
        "unique_id": unique,
        "device": device_block(topics, entity.room, room_name),
        "origin": ORIGIN,
        "availability_topic": topics.status,
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
    })
    return payload


def config_messages(topics: Topics, panel: PanelOptions) -> list[tuple[str, str]]:
    """(topic, JSON) of every entity's retained discovery config."""
    node = node_id(topics.base)
    out = [(topics.config(e.component, node, e.object_id),
            json.dumps(config_payload(e, topics), sort_keys=True))
           for e in main_entities(topics, panel)]
    for room_id, name in panel.rooms.items():
        out.extend((topics.config(entity.component, node, entity.object_id),
                    json.dumps(config_payload(entity, topics, name), sort_keys=True))
                   for entity in room_entities(topics, room_id, name))
    return out


def room_config_topics(topics: Topics, room_ids: Iterable[str]) -> list[str]:
    """The config topics of these rooms' entities: an empty retained message deletes each."""
    node = node_id(topics.base)
    return [topics.config(e.component, node, e.object_id)
            for room_id in room_ids for e in room_entities(topics, room_id, room_id)]
