"""Every discovery payload against the keys and types Home Assistant documents per component.

The table below is transcribed from Home Assistant's MQTT integration docs
(home-assistant.io/integrations/<component>.mqtt/) for the keys valid on 2024.1 and later.
The value templates are rendered with Jinja2 against real payloads, as HA would.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from cassetted.config import Settings
from cassetted.homeassistant import discovery
from cassetted.homeassistant.discovery import Topics
from cassetted.homeassistant.panel import Panel

STR, INT, FLOAT, BOOL, LIST, DICT = str, int, (int, float), bool, list, dict

# Keys every MQTT entity accepts (availability, device registry, attributes, ...).
COMMON: dict[str, Any] = {
    "availability": LIST, "availability_mode": STR, "availability_template": STR,
    "availability_topic": STR, "device": DICT, "enabled_by_default": BOOL, "encoding": STR,
    "entity_category": STR, "entity_picture": STR, "icon": STR,
    "json_attributes_template": STR, "json_attributes_topic": STR, "name": (str, type(None)),
    "object_id": STR, "origin": DICT, "payload_available": STR, "payload_not_available": STR,
    "qos": INT, "unique_id": STR,
}
# component -> (required keys, allowed keys beyond COMMON with their types)
COMPONENTS: dict[str, tuple[set[str], dict[str, Any]]] = {
    "text": ({"command_topic"}, {
        "command_topic": STR, "command_template": STR, "max": INT, "min": INT, "mode": STR,
        "optimistic": BOOL, "pattern": STR, "retain": BOOL, "state_topic": STR,
        "value_template": STR}),
    "select": ({"command_topic", "options"}, {
        "command_topic": STR, "command_template": STR, "optimistic": BOOL, "options": LIST,
        "retain": BOOL, "state_topic": STR, "value_template": STR}),
    "number": ({"command_topic"}, {
        "command_topic": STR, "command_template": STR, "device_class": STR, "max": FLOAT,
        "min": FLOAT, "mode": STR, "optimistic": BOOL, "payload_reset": STR, "retain": BOOL,
        "state_topic": STR, "step": FLOAT, "unit_of_measurement": STR, "value_template": STR}),
    "button": ({"command_topic"}, {
        "command_topic": STR, "command_template": STR, "device_class": STR,
        "payload_press": STR, "retain": BOOL}),
    "switch": ({"command_topic"}, {
        "command_topic": STR, "command_template": STR, "device_class": STR,
        "optimistic": BOOL, "payload_off": STR, "payload_on": STR, "retain": BOOL,
        "state_off": STR, "state_on": STR, "state_topic": STR, "value_template": STR}),
    "sensor": ({"state_topic"}, {
        "device_class": STR, "expire_after": INT, "force_update": BOOL,
        "last_reset_value_template": STR, "options": LIST, "state_class": STR,
        "state_topic": STR, "suggested_display_precision": INT, "unit_of_measurement": STR,
        "value_template": STR}),
    "event": ({"state_topic", "event_types"}, {
        "device_class": STR, "event_types": LIST, "state_topic": STR, "value_template": STR}),
}
DEVICE_KEYS = {"configuration_url": STR, "connections": LIST, "hw_version": STR,
               "identifiers": (str, list), "manufacturer": STR, "model": STR, "model_id": STR,
               "name": STR, "serial_number": STR, "suggested_area": STR, "sw_version": STR,
               "via_device": STR}
ORIGIN_KEYS = {"name": STR, "sw_version": STR, "support_url": STR}
ENUMS = {"entity_category": {"config", "diagnostic"}, "mode": {"auto", "box", "slider", "text",
         "password"}, "state_class": {"measurement", "total", "total_increasing"}}
SAFE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")

BASE = "cassetted-test/discovery"


def _settings(tmp_path: Any) -> Settings:
    return Settings(state_dir=tmp_path, rooms={
        "living_room": {"name": "Living Room"}, "kids_room": {"name": "Kids Room"}})


@pytest.fixture
def messages(tmp_path: Any) -> list[tuple[str, dict[str, Any]]]:
    topics = Topics(BASE, "homeassistant")
    panel = Panel(_settings(tmp_path), tmp_path / "panel.json")
    return [(topic, json.loads(body)) for topic, body in
            discovery.config_messages(topics, panel.options())]


def test_each_payload_has_only_documented_keys_of_the_right_type(messages) -> None:
    for topic, config in messages:
        prefix, component, node, object_id, tail = topic.split("/")
        assert (prefix, tail) == ("homeassistant", "config")
        assert SAFE_ID.match(node) and SAFE_ID.match(object_id), topic
        required, allowed = COMPONENTS[component]
        keys = {**COMMON, **allowed}
        assert required <= set(config), f"{topic}: missing {required - set(config)}"
        for key, value in config.items():
            assert key in keys, f"{topic}: {key} is not a documented {component} key"
            assert isinstance(value, keys[key]) and not (
                keys[key] in (INT, FLOAT) and isinstance(value, bool)), f"{topic}: {key}={value!r}"
            if key in ENUMS:
                assert value in ENUMS[key], f"{topic}: {key}={value!r}"
        for key, value in config["device"].items():
            assert key in DEVICE_KEYS and isinstance(value, DEVICE_KEYS[key]), (topic, key)
        assert set(config["origin"]) <= set(ORIGIN_KEYS) and config["origin"]["name"]
        assert config["availability_topic"] == f"{BASE}/status"
        assert (config["payload_available"], config["payload_not_available"]) == (
            "online", "offline")
        assert BASE in config["unique_id"]


def test_component_rules(messages) -> None:
    unique_ids = [config["unique_id"] for _, config in messages]
    assert len(unique_ids) == len(set(unique_ids))
    for topic, config in messages:
        component = topic.split("/")[1]
        if component == "text":
            assert 0 <= config["min"] <= config["max"] <= 255
        if component == "select":
            options = config["options"]
            assert options and len(options) == len(set(options))
            assert all(isinstance(o, str) and o != "None" for o in options)
        if component == "number":
            assert config["min"] < config["max"] and config["step"] > 0
        if component == "sensor" and "options" in config:
            assert config["device_class"] == "enum"
            assert "state_class" not in config and "unit_of_measurement" not in config
        if component == "event":
            assert set(config["event_types"]) == {"song_ready", "song_started", "song_finished"}


def test_entities_of_the_main_device_and_each_room(messages) -> None:
    by_object = {topic.split("/")[3]: (topic.split("/")[1], config) for topic, config in messages}
    expected = {
        "prompt": "text", "genre": "select", "mood": "select", "room": "select",
        "lyrics_provider": "select", "duration": "number", "bpm": "number",
        "generate": "button", "skip": "button", "like": "button", "dislike": "button",
        "party": "switch", "child_safe": "switch", "generation_status": "sensor",
        "progress": "sensor", "queue_length": "sensor", "last_song": "sensor",
        "song_events": "event", "songs_made": "sensor", "songs_shared": "sensor",
        "top_voted": "sensor", "party_queue": "sensor",
    }
    for room in ("living_room", "kids_room"):
        expected.update({f"room_{room}_state": "sensor", f"room_{room}_now_playing": "sensor",
                         f"room_{room}_volume": "number", f"room_{room}_skip": "button",
                         f"room_{room}_playlist": "sensor", f"room_{room}_mode": "sensor",
                         f"room_{room}_sleep": "switch",
                         f"room_{room}_learned": "sensor"})
    assert {k: v[0] for k, v in by_object.items()} == expected
    main_device = by_object["prompt"][1]["device"]
    assert all(by_object[k][1]["device"] == main_device for k in expected if not k.startswith("room_"))
    room_device = by_object["room_living_room_volume"][1]["device"]
    assert room_device["via_device"] == main_device["identifiers"][0]
    assert room_device["suggested_area"] == "Living Room"
    assert by_object["bpm"][1]["min"] == 0 and by_object["bpm"][1]["max"] == 300
    assert (by_object["duration"][1]["min"], by_object["duration"][1]["max"]) == (10, 600)
    assert by_object["lyrics_provider"][1]["entity_category"] == "config"
    assert by_object["last_song"][1]["json_attributes_topic"] == f"{BASE}/song/latest"
    assert by_object["song_events"][1]["state_topic"] == f"{BASE}/event"


def test_templates_render_like_home_assistant(messages) -> None:
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    by_object = {topic.split("/")[3]: config for topic, config in messages}

    def render(object_id: str, payload: dict[str, Any], key: str = "value_template") -> str:
        return env.from_string(by_object[object_id][key]).render(value_json=payload)

    assert render("queue_length", {"pending": 2, "running": ["a"], "max_concurrent": 1}) == "3"
    assert render("progress", {"state": "composing", "progress_pct": 40}) == "40"
    song = {"id": "s1", "title": "Blue Night", "lyrics": "[verse]\nla", "genre": "jazz",
            "mood": "relaxing", "bpm": 90, "key": "A minor", "duration_s": 60.0,
            "file": "/lib/s1.flac", "url": None, "room": "living_room"}
    assert render("last_song", song) == "Blue Night"
    attributes = json.loads(render("last_song", song, "json_attributes_template"))
    assert attributes["lyrics"] == "[verse]\nla" and attributes["genre"] == "jazz"
    assert {"bpm", "key", "file", "url", "mood"} <= set(attributes)
    event = json.loads(render("song_events", {"type": "song_ready", "ts": 1.0, "song_id": "s1",
                                              "room": "kids_room", "title": "T"}))
    assert event["event_type"] == "song_ready" and event["room"] == "kids_room"
    assert render("song_events", {"type": "error", "ts": 1.0}) == ""  # HA ignores empty
    room_state = {"room": "living_room", "name": "Living Room", "state": "playing",
                  "song": {"id": "s1", "title": "Blue Night"}, "volume": 40, "party": False,
                  "output": "mpd", "playlist_length": 3}
    assert render("room_living_room_state", room_state) == "playing"
    assert render("room_living_room_now_playing", room_state) == "Blue Night"
    assert render("room_living_room_now_playing", {**room_state, "song": None}) == "None"
    assert render("room_living_room_volume", room_state) == "40"
    assert render("room_living_room_playlist", room_state) == "3"
    assert render("room_living_room_mode", room_state) == "normal"
    assert render("room_living_room_learned", room_state) == "nothing yet"
    learned = {**room_state, "mode": "sleep", "child_safe": True, "volume_cap": 70,
               "learned": {"genre": "jazz", "mood": None, "genres": {"jazz": 1.85}, "moods": {}}}
    assert render("room_living_room_mode", learned) == "sleep"
    assert render("room_living_room_sleep", learned) == "ON"
    assert render("room_living_room_sleep", room_state) == "OFF"
    assert json.loads(render("room_living_room_mode", learned, "json_attributes_template")) \
        == {"child_safe": True, "volume_cap": 70}
    assert render("room_living_room_learned", learned) == "jazz"
    assert render("room_living_room_learned", {**learned, "learned": {
        "genre": "jazz", "mood": "relaxing", "genres": {}, "moods": {}}}) == "jazz / relaxing"
    stats = {"songs": 3, "shared": 2, "private": 1, "votes": 4, "by_user": {"mia": 3},
             "top_voted": [{"id": "s1", "title": "Blue Night", "score": 3}], "ts": 1.0}
    assert render("songs_made", stats) == "3" and render("songs_shared", stats) == "2"
    assert render("top_voted", stats) == "Blue Night"
    assert render("top_voted", {**stats, "top_voted": []}) == "None"
    party = {"active": True, "theme": "edm", "queue": [{"position": 1}, {"position": 2}]}
    assert render("party_queue", party) == "2"
    panel = {"prompt": "rain", "genre": "jazz", "mood": "auto", "room": "none",
             "lyrics_provider": "default", "duration": 60.0, "bpm": 0, "party": "OFF",
             "child_safe": "ON"}
    assert render("genre", panel) == "jazz" and render("child_safe", panel) == "ON"


def test_node_id_is_topic_safe_and_distinct() -> None:
    assert discovery.node_id("cassetted") == "cassetted"
    assert SAFE_ID.match(discovery.node_id("a/b")) and SAFE_ID.match(discovery.node_id("a b"))
    assert discovery.node_id("a/b") != discovery.node_id("a_b")
