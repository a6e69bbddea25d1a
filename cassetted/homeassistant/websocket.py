"""State changes of one Home Assistant entity, pushed over HA's websocket API.

HA's REST API has no events; its websocket API does. This is the smallest client that
speaks it with the standard library: an RFC 6455 handshake and framing over asyncio
streams (text frames, continuation, ping/pong, close), then HA's protocol:

  server: {"type": "auth_required"}      client: {"type": "auth", "access_token": ...}
  server: {"type": "auth_ok"}            client: {"id": 1, "type": "subscribe_entities",
                                                  "entity_ids": [...]}
  server: {"id": 1, "type": "result", "success": true}
  server: {"id": 1, "type": "event", "event": {"a": {<entity_id>: {"s": state, "a": attrs}}}}
  server: {"id": 1, "type": "event", "event": {"c": {<entity_id>: {"+": {"s"?, "a"?},
                                                                   "-": {"a": [removed]}}}}}

`subscribe_entities` (what HA's own frontend uses) sends the current state first ("a"),
then compressed diffs ("c") of every state or attribute change, and needs no admin rights
(`subscribe_events` and `subscribe_trigger` do). The token is sent only inside the auth
message and never logged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import ssl
import struct
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from cassetted.homeassistant.rest import HomeAssistantError, TokenProvider

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024   # one HA message (a state with attributes) is far less
HEARTBEAT_S = 30.0                     # ping when the socket has been quiet this long

StateHandler = Callable[[dict[str, Any]], Any]


class WebSocket:
    """A client websocket over asyncio streams: text messages in and out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, url: str, *, context: ssl.SSLContext | None,
                      timeout_s: float) -> WebSocket:
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme in ("https", "wss")
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            host, port, ssl=context if secure else None, limit=MAX_MESSAGE_BYTES), timeout_s)
        key = base64.b64encode(os.urandom(16)).decode()
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        writer.write((f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host_header}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as error:
            writer.close()
            raise HomeAssistantError(f"websocket handshake failed: {type(error).__name__}") from None
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if ":" in line)}
        expected = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        if len(status) < 2 or status[1] != "101" or headers.get("sec-websocket-accept") != expected:
            writer.close()
            code = status[1] if len(status) > 1 else "?"
            raise HomeAssistantError(f"websocket handshake refused ({code})")
        return cls(reader, writer)

    async def send(self, text: str) -> None:
        self._frame(0x1, text.encode())
        await self._writer.drain()

    def _frame(self, opcode: int, payload: bytes) -> None:
        """A final, masked frame (clients must mask)."""
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._writer.write(header + mask + masked)

    async def receive(self) -> str:
        """The next text message; answers pings; raises ConnectionError on close."""
        message = bytearray()
        while True:
            first, second = await self._reader.readexactly(2)
            opcode, final = first & 0x0F, bool(first & 0x80)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self._reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self._reader.readexactly(8))
            mask = await self._reader.readexactly(4) if second & 0x80 else b""
            if length + len(message) > MAX_MESSAGE_BYTES:
                raise ConnectionError("websocket message too large")
            payload = await self._reader.readexactly(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("websocket closed by Home Assistant")
            if opcode == 0x9:
                self._frame(0xA, payload)
                await self._writer.drain()
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x0, 0x1):
                message += payload
                if final:
                    return message.decode("utf-8")

    async def close(self) -> None:
        try:
            self._frame(0x8, struct.pack("!H", 1000))
            await asyncio.wait_for(self._writer.drain(), 2)
        except (ConnectionError, TimeoutError, OSError):
            pass
        self._writer.close()


async def follow_entity(base_url: str, token: TokenProvider, entity_id: str,
                        on_state: StateHandler, *, context: ssl.SSLContext | None = None,
                        timeout_s: float = 10.0,
                        on_subscribed: Callable[[], Awaitable[None]] | None = None) -> None:
    """Call `on_state(state)` for every change of `entity_id` until the connection ends.

    Raises HomeAssistantError (refused token, handshake) or ConnectionError (dropped); the
    caller decides when to try again. `on_subscribed` runs once the subscription is live,
    to read the current state without missing a change in between.
    """
    secret = await token()
    if secret is None:
        raise HomeAssistantError("no Home Assistant token stored; run "
                                 "`cassetted keys set homeassistant`")
    scheme = "wss" if base_url.startswith("https") else "ws"
    url = f"{scheme}{base_url[base_url.index(':'):]}/api/websocket"
    ws = await WebSocket.connect(url, context=context, timeout_s=timeout_s)
    try:
        hello = json.loads(await asyncio.wait_for(ws.receive(), timeout_s))
        if hello.get("type") != "auth_required":
            raise HomeAssistantError("unexpected websocket greeting")
        await ws.send(json.dumps({"type": "auth", "access_token": secret.reveal()}))
        auth = json.loads(await asyncio.wait_for(ws.receive(), timeout_s))
        if auth.get("type") != "auth_ok":
            raise HomeAssistantError("Home Assistant refused the token (auth_invalid); store a "
                                     "valid long-lived token with `cassetted keys set "
                                     "homeassistant`", 401)
        await ws.send(json.dumps({"id": 1, "type": "subscribe_entities",
                                  "entity_ids": [entity_id]}))
        result = json.loads(await asyncio.wait_for(ws.receive(), timeout_s))
        if result.get("type") != "result" or not result.get("success"):
            raise HomeAssistantError("Home Assistant refused the state subscription")
        if on_subscribed is not None:
            await on_subscribed()
        next_id = 2
        state: dict[str, Any] | None = None
        while True:
            try:
                text = await asyncio.wait_for(ws.receive(), HEARTBEAT_S)
            except TimeoutError:  # quiet: make sure HA is still there
                await ws.send(json.dumps({"id": next_id, "type": "ping"}))
                next_id += 1
                text = await asyncio.wait_for(ws.receive(), timeout_s)
            message = json.loads(text)
            if message.get("type") != "event" or message.get("id") != 1:
                continue
            state = apply_entity_event(state, entity_id, message.get("event") or {})
            if state is not None:
                outcome = on_state(state)
                if asyncio.iscoroutine(outcome):
                    await outcome
    except (ValueError, asyncio.IncompleteReadError) as error:
        raise ConnectionError(f"websocket: {type(error).__name__}") from None
    finally:
        await ws.close()


def apply_entity_event(state: dict[str, Any] | None, entity_id: str,
                       event: dict[str, Any]) -> dict[str, Any] | None:
    """Fold one `subscribe_entities` event into the entity's state ({"state", "attributes"});
    None when the event does not concern the entity (or it has no state yet)."""
    added = (event.get("a") or {}).get(entity_id)
    if isinstance(added, dict):
        return {"entity_id": entity_id, "state": added.get("s"),
                "attributes": dict(added.get("a") or {})}
    if entity_id in (event.get("r") or []):
        return {"entity_id": entity_id, "state": "unavailable", "attributes": {}}
    diff = (event.get("c") or {}).get(entity_id)
    if not isinstance(diff, dict) or state is None:
        return None
    attributes: dict[str, Any] = dict(state.get("attributes") or {})
    new = {"entity_id": entity_id, "state": state.get("state"), "attributes": attributes}
    plus, minus = diff.get("+") or {}, diff.get("-") or {}
    if "s" in plus:
        new["state"] = plus["s"]
    attributes.update(plus.get("a") or {})
    for name in minus.get("a") or []:
        attributes.pop(name, None)
    return new
