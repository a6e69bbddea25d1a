"""The MQTT contract as an AsyncAPI 2.6 document, generated from cassetted/contract/schemas.py.

`python -m cassetted.contract.asyncapi --out docs/asyncapi.yaml` writes it; a test fails when the
checked-in file drifts from what this module generates. Payload schemas come from the
pydantic models (schemas.PAYLOADS, plus the Home Assistant panel payloads); the topic table
below is the only hand-written part: which topic carries which payload, in which direction,
retained or not. AsyncAPI 2.x names operations from the client's side: `publish` = clients
send it to the daemon, `subscribe` = clients receive it from the daemon.

The YAML is written by a small emitter here (block style, JSON-quoted strings where a plain
scalar could be misread), so generation needs no YAML library and is byte-for-byte stable.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from cassetted import __version__
from cassetted.contract.homeassistant import GenerationState, PanelState
from cassetted.contract.schemas import PAYLOADS

REF = "#/components/schemas/{model}"
BINDING_VERSION = "0.1.0"

REPLY_NOTE = (
    "Every command is answered with a `reply` (or `library_page`): on the MQTT v5 response "
    "topic with the request's correlation data echoed; else, for MQTT 3.1.1 clients, on the "
    "`reply_to` topic given in the JSON (with `request_id` echoed); else on `<base>/reply`. "
    "A repeated `request_id` on song/create never creates a second job (`duplicate: true`).")


@dataclass(frozen=True)
class Channel:
    topic: str
    direction: str          # "in": clients publish (daemon receives); "out": daemon publishes
    message: str            # a key of the messages table
    description: str
    retained: bool = False
    reply: str | None = None  # the message answering a command
    parameters: tuple[tuple[str, str], ...] = ()


# Messages that are not pydantic models: (title, content type, inline schema).
_RAW: dict[str, tuple[str, str, dict[str, Any]]] = {
    "status": ("Availability", "text/plain", {"type": "string", "enum": ["online", "offline"]}),
    "hermes_intent": ("Hermes intent", "application/json", {
        "type": "object", "description": "Rhasspy/Hermes intent: input, intent.intentName, "
        "slots (mapped to SongRequest fields), siteId, sessionId."}),
    "ha_discovery": ("Home Assistant discovery config", "application/json", {
        "type": "object", "description": "One entity's MQTT discovery config; an empty "
        "retained payload deletes the entity."}),
    "ha_status": ("Home Assistant birth/will", "text/plain",
                  {"type": "string", "enum": ["online", "offline"]}),
    "ha_value": ("Home Assistant entity command", "text/plain", {
        "type": "string", "description": "A text, select option, number, ON/OFF, or PRESS."}),
    "ha_rooms": ("Rooms announced to Home Assistant", "application/json",
                 {"type": "array", "items": {"type": "string"}}),
}
_MODELS: dict[str, type[BaseModel]] = {
    **PAYLOADS, "ha_generation": GenerationState, "ha_panel_state": PanelState,
}


def channels(base: str = "cassetted", prefix: str = "homeassistant") -> list[Channel]:
    """The topic table of DESIGN.md's contract (plus the Home Assistant topics)."""
    job, room, song = ("job_id", "Job id."), ("room", "Room id ([a-z0-9_]{1,64})."), \
        ("song_id", "Song id.")
    return [
        Channel(f"{base}/song/create", "in", "song_create", "Ask for a song.",
                reply="reply"),
        Channel(f"{base}/voice", "in", "voice", "Free text, parsed by the intent parser.",
                reply="reply"),
        Channel(f"{base}/job/{{job_id}}/cancel", "in", "job_cancel", "Cancel a job.",
                reply="reply", parameters=(job,)),
        Channel(f"{base}/room/{{room}}/set", "in", "room_set", "Control a room's playback.",
                reply="reply", parameters=(room,)),
        Channel(f"{base}/party/set", "in", "party_set", "Start or stop party mode.",
                reply="reply"),
        Channel(f"{base}/party/playlists", "in", "party_playlists",
                "The playlists saved when parties ended, newest first.", reply="reply"),
        Channel(f"{base}/song/{{song_id}}/vote", "in", "song_vote", "Vote on a song.",
                reply="reply", parameters=(song,)),
        Channel(f"{base}/song/{{song_id}}/keep", "in", "song_keep",
                "Of a request's variants, keep this take and delete the others.",
                reply="reply", parameters=(song,)),
        Channel(f"{base}/library/query", "in", "library_query", "Search the library.",
                reply="library_page"),
        Channel(f"{base}/song/{{song_id}}/share", "in", "song_share",
                "Share a song with the household or make it private.",
                reply="reply", parameters=(song,)),
        Channel(f"{base}/guest/create", "in", "guest_create",
                "An owner or family member makes a guest pass; the reply holds its token.",
                reply="reply"),
        Channel(f"{base}/guest/{{user_id}}/remove", "in", "guest_remove",
                "End a guest pass.", reply="reply",
                parameters=(("user_id", "The guest's id."),)),
        Channel(f"{base}/user/quota", "in", "user_quota", "How many songs the asker may make.",
                reply="reply"),
        Channel(f"{base}/room/{{room}}/mode", "in", "room_mode",
                "Sleep, karaoke or normal mode; child-safe on (off with the PIN).",
                reply="reply", parameters=(room,)),
        Channel(f"{base}/karaoke/start", "in", "karaoke_start",
                "Remix a library song at a new tempo for karaoke.", reply="reply"),
        Channel(f"{base}/child_safe/log", "in", "child_safe_log",
                "What was asked in child-safe rooms (owners and family).", reply="reply"),
        Channel(f"{base}/as/{{mqtt_user}}/{{command}}", "in", "song_create",
                "Every command above, sent under the sender's MQTT login ([household] "
                "identify_by mqtt_username; a broker ACL `pattern write <base>/as/%u/#` "
                "makes the login proof of identity).", reply="reply",
                parameters=(("mqtt_user", "The sender's MQTT login."),
                            ("command", "A command topic, e.g. song/create."))),
        Channel("hermes/intent/{intent_name}", "in", "hermes_intent",
                "Rhasspy/Hermes intents (when [hermes] is enabled); answered on "
                "hermes/dialogueManager/endSession.",
                parameters=(("intent_name", "Configured intent name."),)),
        Channel(f"{base}/reply", "out", "reply",
                "Replies to commands that named neither a response topic nor reply_to."),
        Channel(f"{base}/status", "out", "status", "Daemon availability (last will).",
                retained=True),
        Channel(f"{base}/job/{{job_id}}", "out", "job_event",
                "Every state transition of a job, and its progress.", parameters=(job,)),
        Channel(f"{base}/queue", "out", "queue_state", "Pending and running jobs.",
                retained=True),
        Channel(f"{base}/room/{{room}}/state", "out", "room_state", "A room's playback.",
                retained=True, parameters=(room,)),
        Channel(f"{base}/song/latest", "out", "song_info", "The newest song.", retained=True),
        Channel(f"{base}/library/stats", "out", "library_stats",
                "Songs made, shared and private, votes, top voted.", retained=True),
        Channel(f"{base}/party/state", "out", "party_state", "The party and its queue.",
                retained=True),
        Channel(f"{base}/room/{{room}}/lyrics", "out", "lyrics_display",
                "Timed lyrics (LRC) of the song playing in the room, for a mirror; blank "
                "when nothing with lyrics plays.", retained=True,
                parameters=(room,)),
        Channel(f"{base}/event", "out", "event",
                "song_ready, song_started, song_finished, party_started, party_stopped, "
                "mode_changed, guest_expired, error."),
        Channel(f"{prefix}/status", "in", "ha_status",
                "Home Assistant's birth message: `online` makes the daemon re-publish "
                "discovery."),
        Channel(f"{prefix}/{{component}}/{{node_id}}/{{object_id}}/config", "out",
                "ha_discovery", "Home Assistant MQTT discovery, one topic per entity.",
                retained=True, parameters=(("component", "HA platform (sensor, select, ...)."),
                                           ("node_id", "The base topic, topic-safe."),
                                           ("object_id", "The entity."))),
        Channel(f"{base}/ha/panel/{{entity}}/set", "in", "ha_value",
                "Home Assistant panel commands (prompt, genre, mood, room, lyrics_provider, "
                "duration, bpm, party, child_safe, generate, skip, like, dislike).",
                parameters=(("entity", "Panel entity."),)),
        Channel(f"{base}/ha/room/{{room}}/{{entity}}/set", "in", "ha_value",
                "Home Assistant room commands (volume, skip, sleep).",
                parameters=(room, ("entity", "Room entity."))),
        Channel(f"{base}/ha/panel/state", "out", "ha_panel_state",
                "The panel's values (what Generate will use).", retained=True),
        Channel(f"{base}/ha/generation", "out", "ha_generation",
                "State and progress of the newest job, for HA sensors.", retained=True),
        Channel(f"{base}/ha/rooms", "out", "ha_rooms",
                "Rooms last announced to Home Assistant (to delete removed rooms' entities).",
                retained=True),
    ]


# Commands are described as they are validated (defaults make fields optional); what the
# daemon publishes, as it is serialised (every field with a default is always present).
_INBOUND = {"song_create", "voice", "job_cancel", "room_set", "party_set", "party_playlists",
            "song_vote",
            "song_keep", "library_query", "song_share", "guest_create", "guest_remove",
            "user_quota", "room_mode", "karaoke_start", "child_safe_log"}


def _mode(name: str) -> Literal["validation", "serialization"]:
    return "validation" if name in _INBOUND else "serialization"


def _schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """(components.schemas, message name -> payload $ref)."""
    pairs = [(model, _mode(name)) for name, model in _MODELS.items()]
    keys, top = models_json_schema(pairs, ref_template=REF)
    schemas = dict(top.get("$defs", {}))
    refs = {name: keys[(model, _mode(name))] for name, model in _MODELS.items()}
    return {name: schemas[name] for name in sorted(schemas)}, refs


def _messages(refs: dict[str, Any]) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for name, model in _MODELS.items():
        messages[name] = {
            "name": name, "title": model.__name__, "contentType": "application/json",
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "payload": refs[name],
        }
    for name, (title, content_type, schema) in _RAW.items():
        messages[name] = {"name": name, "title": title, "contentType": content_type,
                          "payload": schema}
    return {name: messages[name] for name in sorted(messages)}


def document(base: str = "cassetted", prefix: str = "homeassistant") -> dict[str, Any]:
    """The whole AsyncAPI document as plain data."""
    schemas, refs = _schemas()
    out: dict[str, Any] = {}
    for channel in channels(base, prefix):
        operation: dict[str, Any] = {
            "operationId": _operation_id(channel),
            "message": {"$ref": f"#/components/messages/{channel.message}"},
            "bindings": {"mqtt": {"qos": 1, "retain": channel.retained,
                                  "bindingVersion": BINDING_VERSION}},
        }
        if channel.reply:
            operation["x-reply"] = {
                "message": {"$ref": f"#/components/messages/{channel.reply}"},
                "topic": "MQTT v5 response topic, else the payload's reply_to, "
                         f"else {base}/reply"}
        item: dict[str, Any] = {"description": channel.description + (
            " Retained." if channel.retained else "")}
        if channel.parameters:
            item["parameters"] = {name: {"description": text, "schema": {"type": "string"}}
                                  for name, text in channel.parameters}
        item["publish" if channel.direction == "in" else "subscribe"] = operation
        out[channel.topic] = item
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "cassetted MQTT contract",
            "version": __version__,
            "description": (
                f"Songs on request over MQTT. `{base}` is the configurable base topic "
                f"([mqtt] base_topic) and `{prefix}` the discovery prefix. Commands are JSON "
                f"(QoS 1); unknown fields are refused. " + REPLY_NOTE),
        },
        "defaultContentType": "application/json",
        "servers": {"broker": {"url": "mqtt://127.0.0.1:1883", "protocol": "mqtt",
                               "protocolVersion": "5",
                               "description": "Your broker; MQTT 3.1.1 works too."}},
        "channels": out,
        "components": {"messages": _messages(refs), "schemas": schemas},
    }


def _operation_id(channel: Channel) -> str:
    words = re.sub(r"[{}]", "", channel.topic).replace("/", "_").split("_")
    return ("send" if channel.direction == "in" else "receive") + "".join(
        w[:1].upper() + w[1:] for w in words if w)


# ---------------------------------------------------------------------------- YAML


_PLAIN = re.compile(r"^[A-Za-z$][A-Za-z0-9_./()$-]*( [A-Za-z0-9_./()$-]+)*$")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text, ensure_ascii=False)


def to_yaml(data: Any, indent: int = 0) -> str:
    """Block-style YAML of dicts, lists and scalars (keys in the order given)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{_scalar(key)}:")
                lines.append(to_yaml(value, indent + 2))
            else:
                empty = "{}" if isinstance(value, dict) else "[]"
                lines.append(f"{pad}{_scalar(key)}: "
                             f"{empty if isinstance(value, (dict, list)) else _scalar(value)}")
    elif isinstance(data, list):
        for value in data:
            if isinstance(value, (dict, list)) and value:
                inner = to_yaml(value, indent + 2)
                lines.append(f"{pad}- {inner[indent + 2:]}")
            else:
                empty = "{}" if isinstance(value, dict) else "[]"
                lines.append(f"{pad}- {empty if isinstance(value, (dict, list)) else _scalar(value)}")
    else:
        lines.append(pad + _scalar(data))
    return "\n".join(lines)


def render(base: str = "cassetted", prefix: str = "homeassistant") -> str:
    header = ("# Generated by `python -m cassetted.contract.asyncapi --out docs/asyncapi.yaml` "
              "from cassetted/contract/schemas.py. Do not edit.\n")
    return header + to_yaml(document(base, prefix)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cassetted.contract.asyncapi",
                                     description="Write the AsyncAPI document of the contract.")
    parser.add_argument("--out", default="-", help="file to write (default: stdout)")
    parser.add_argument("--base", default="cassetted", help="base topic to document")
    parser.add_argument("--prefix", default="homeassistant", help="HA discovery prefix")
    args = parser.parse_args(argv)
    text = render(args.base, args.prefix)
    if args.out == "-":
        print(text, end="")  # noqa: T201 - a command-line tool writes to stdout
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")  # noqa: T201 - a command-line tool writes to stdout
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
