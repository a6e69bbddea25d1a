"""The `homeassistant` zone against a loopback stand-in for Home Assistant's REST API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from cassetted.homeassistant.rest import HomeAssistantClient, HomeAssistantError
from cassetted.homeassistant.settings import HomeAssistantSettings, HomeAssistantZoneSettings
from cassetted.playback.base import Track, ZoneError, ZoneStatus
from cassetted.playback.zones.homeassistant import HomeAssistantZone
from cassetted.store.credentials import Secret
from tests.fixtures.services import LoopbackHTTP

TOKEN = "eyJhbGciOiJIUzI1NiJ9.very-secret-long-lived-token"
ENTITY = "media_player.kitchen"


class FakeHomeAssistant:
    """Speaks the two REST endpoints the zone uses; keeps one media_player's state."""

    def __init__(self, websocket: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.auth_headers: list[str] = []
        self.websocket = websocket
        self.subscribers: list[tuple[socket.socket, int]] = []
        self.ws_auth: list[str] = []
        self.pushed: dict[str, Any] | None = None  # the state subscribers last heard
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {"entity_id": ENTITY, "state": "idle",
                                      "attributes": {"volume_level": 0.3}}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                header = self.headers.get("Authorization", "")
                fake.auth_headers.append(header)
                if header != f"Bearer {TOKEN}":
                    self._reply(401, {"message": "401: Unauthorized"})
                    return False
                return True

            def do_GET(self) -> None:
                if self.path == "/api/websocket":
                    if fake.websocket:
                        fake.serve_websocket(self)
                    else:  # e.g. a proxy without websocket support
                        self._reply(404, {"message": "Not Found"})
                    return
                if not self._authorised():
                    return
                if self.path == f"/api/states/{ENTITY}":
                    self._reply(200, fake.state)
                else:
                    self._reply(404, {"message": "Entity not found."})

            def do_POST(self) -> None:
                if not self._authorised():
                    return
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                prefix = "/api/services/media_player/"
                if not self.path.startswith(prefix):
                    self._reply(400, {"message": "bad service"})
                    return
                service = self.path[len(prefix):]
                fake.calls.append((service, body))
                fake.apply(service, body)
                self._reply(200, [fake.state])

        self.http = LoopbackHTTP(Handler)
        self.url = self.http.url

    # -------------------------------------------------------------- websocket (server side)

    @staticmethod
    def _send_frame(sock: socket.socket, text: str) -> None:
        data = text.encode()
        header = struct.pack("!BB", 0x81, len(data)) if len(data) < 126 else \
            struct.pack("!BBH", 0x81, 126, len(data))
        sock.sendall(header + data)

    @staticmethod
    def _recv_frame(sock: socket.socket) -> str | None:
        def exactly(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = sock.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError
                buf += chunk
            return buf
        first, second = exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", exactly(8))
        mask = exactly(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(exactly(length)))
        return None if first & 0x0F == 0x8 else payload.decode()

    def serve_websocket(self, handler: BaseHTTPRequestHandler) -> None:
        key = handler.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        handler.send_response(101)
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", accept)
        handler.end_headers()
        handler.wfile.flush()
        sock = handler.connection
        try:
            self._send_frame(sock, json.dumps({"type": "auth_required"}))
            auth = json.loads(self._recv_frame(sock) or "{}")
            self.ws_auth.append(auth.get("access_token", ""))
            if auth.get("access_token") != TOKEN:
                self._send_frame(sock, json.dumps({"type": "auth_invalid",
                                                   "message": "Invalid access token"}))
                return
            self._send_frame(sock, json.dumps({"type": "auth_ok"}))
            while (text := self._recv_frame(sock)) is not None:
                message = json.loads(text)
                if message.get("type") == "subscribe_entities" and \
                        message["entity_ids"] == [ENTITY]:
                    self._send_frame(sock, json.dumps({"id": message["id"], "type": "result",
                                                       "success": True, "result": None}))
                    with self.lock:  # the current state first, then diffs (see push)
                        self._send_frame(sock, json.dumps({"id": message["id"], "type": "event",
                                                           "event": {"a": {ENTITY: {
                                                               "s": self.state["state"],
                                                               "a": self.state["attributes"],
                                                               "lu": 1.0}}}}))
                        self.pushed = json.loads(json.dumps(self.state))
                        self.subscribers.append((sock, message["id"]))
        except (ConnectionError, OSError):
            pass
        finally:
            with self.lock:
                self.subscribers = [(s, i) for s, i in self.subscribers if s is not sock]
        handler.close_connection = True

    def push(self) -> None:
        """What HA sends subscribers when the entity changes: a compressed diff."""
        with self.lock:
            old, new = self.pushed, json.loads(json.dumps(self.state))
            if not self.subscribers or old is None:
                return
            plus: dict[str, Any] = {}
            if old["state"] != new["state"]:
                plus["s"] = new["state"]
            changed = {k: v for k, v in new["attributes"].items()
                       if old["attributes"].get(k) != v}
            if changed:
                plus["a"] = changed
            diff: dict[str, Any] = {"+": plus}
            removed = sorted(set(old["attributes"]) - set(new["attributes"]))
            if removed:
                diff["-"] = {"a": removed}
            self.pushed = new
            for sock, sub_id in self.subscribers:
                self._send_frame(sock, json.dumps({"id": sub_id, "type": "event",
                                                   "event": {"c": {ENTITY: diff}}}))

    def apply(self, service: str, body: dict[str, Any]) -> None:
        attributes = self.state["attributes"]
        if service == "play_media":
            self.state["state"] = "playing"
            attributes["media_content_id"] = body["media_content_id"]
            attributes["media_position"] = 0
        elif service in ("media_play", "media_pause", "media_stop"):
            self.state["state"] = {"media_play": "playing", "media_pause": "paused",
                                   "media_stop": "idle"}[service]
        elif service == "volume_set":
            attributes["volume_level"] = body["volume_level"]
        self.push()

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def ha() -> Iterator[FakeHomeAssistant]:
    fake = FakeHomeAssistant()
    yield fake
    fake.close()


def _track(n: int) -> Track:
    return Track(song_id=f"s{n}", path=Path(f"/lib/s{n}.flac"), title=f"Song {n}",
                 duration_s=10, url=f"http://box:8765/media/{'t' * 31}{n}.flac")


async def _token() -> Secret:
    return Secret(TOKEN)


async def _wait_for(statuses: list[ZoneStatus], predicate: Any,
                    timeout: float = 5) -> ZoneStatus:  # noqa: ASYNC109 - a test's wait states its own limit
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for status in statuses:
            if predicate(status):
                return status
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no matching status in {statuses}")


def _zone(ha: FakeHomeAssistant, token: Any = _token) -> HomeAssistantZone:
    settings = HomeAssistantSettings(url=ha.url + "/", timeout_s=5)
    zone = HomeAssistantZone.from_settings("kitchen", HomeAssistantZoneSettings(entity_id=ENTITY),
                                           settings, token)
    zone._poll_interval_s = 0.1  # the settings floor (1 s) is for real homes
    return zone


def test_play_controls_and_state(ha: FakeHomeAssistant) -> None:
    async def main() -> None:
        statuses: list[ZoneStatus] = []
        zone = _zone(ha)
        await zone.start(statuses.append)
        try:
            await _wait_for(statuses, lambda s: s.state == "idle" and s.volume == 30)
            await zone.play_now(_track(1))
            assert ha.calls[-1] == ("play_media", {
                "entity_id": ENTITY, "media_content_id": _track(1).url,
                "media_content_type": "music"})
            await _wait_for(statuses, lambda s: s.state == "playing" and s.song_id == "s1")
            await zone.control("pause")
            await _wait_for(statuses, lambda s: s.state == "paused")
            await zone.control("play")
            await zone.control("volume", volume=55)
            await _wait_for(statuses, lambda s: s.volume == 55)
            await zone.control("seek", position_s=12.5)
            await zone.control("stop")
            services = [name for name, _ in ha.calls]
            assert services == ["play_media", "media_pause", "media_play", "volume_set",
                                "media_seek", "media_stop"]
            assert ha.calls[3][1] == {"entity_id": ENTITY, "volume_level": 0.55}
            assert ha.calls[4][1] == {"entity_id": ENTITY, "seek_position": 12.5}
            with pytest.raises(ZoneError):
                await zone.control("shuffle")
            with pytest.raises(ZoneError, match="media server"):
                await zone.play_now(Track("s9", Path("/x.flac"), "x", 1.0))
        finally:
            await zone.stop()

    asyncio.run(main())
    assert all(header == f"Bearer {TOKEN}" for header in ha.auth_headers)


def test_queue_advances_when_a_song_ends(ha: FakeHomeAssistant) -> None:
    async def main() -> None:
        statuses: list[ZoneStatus] = []
        zone = _zone(ha)
        await zone.start(statuses.append)
        try:
            await zone.set_queue([_track(1), _track(2), _track(3)])
            await _wait_for(statuses, lambda s: s.song_id == "s1" and s.state == "playing")
            ha.state["state"] = "idle"  # the speaker reached the end of the song
            await _wait_for(statuses, lambda s: s.song_id == "s2" and s.state == "playing")
            await zone.control("next")
            assert ha.calls[-1][1]["media_content_id"] == _track(3).url
            await zone.control("previous")
            assert ha.calls[-1][1]["media_content_id"] == _track(2).url
        finally:
            await zone.stop()

    asyncio.run(main())


def test_wrong_token_is_refused_and_never_shown(ha: FakeHomeAssistant,
                                                caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-" + TOKEN[::-1]

    async def bad_token() -> Secret:
        return Secret(wrong)

    async def no_token() -> None:
        return None

    async def main() -> tuple[str, str, list[ZoneStatus]]:
        statuses: list[ZoneStatus] = []
        zone = _zone(ha, bad_token)
        await zone.start(statuses.append)
        try:
            with pytest.raises(ZoneError) as refused:
                await zone.play_now(_track(1))
            await _wait_for(statuses, lambda s: s.state == "unavailable")
        finally:
            await zone.stop()
        with pytest.raises(HomeAssistantError) as missing:
            await HomeAssistantClient(ha.url, no_token).get_state(ENTITY)
        return str(refused.value), str(missing.value), statuses

    caplog.set_level(logging.DEBUG)
    refused, missing, statuses = asyncio.run(main())
    assert "401" in refused and "cassetted keys set homeassistant" in refused
    assert "cassetted keys set homeassistant" in missing
    shown = " ".join([refused, missing, caplog.text, repr(statuses),
                      repr(HomeAssistantClient(ha.url, bad_token))])
    assert wrong not in shown and TOKEN not in shown
    assert ha.calls == []


def test_unreachable_home_assistant_is_unavailable() -> None:
    async def main() -> ZoneStatus:
        statuses: list[ZoneStatus] = []
        zone = HomeAssistantZone("kitchen", ENTITY,
                                 HomeAssistantClient("http://127.0.0.1:9", _token, timeout_s=2),
                                 poll_interval_s=0.1)
        await zone.start(statuses.append)
        try:
            status = await _wait_for(statuses, lambda s: s.state == "unavailable")
            with pytest.raises(ZoneError, match="cannot reach"):
                await zone.control("pause")
            return status
        finally:
            await zone.stop()

    status = asyncio.run(main())
    assert TOKEN not in repr(status)


def test_settings() -> None:
    with pytest.raises(ValueError, match="media_player"):
        HomeAssistantZoneSettings(entity_id="light.kitchen")
    with pytest.raises(ZoneError, match="url"):
        HomeAssistantZone.from_settings("k", HomeAssistantZoneSettings(entity_id=ENTITY),
                                        HomeAssistantSettings(), _token)
    assert HomeAssistantSettings(url="http://ha.local:8123/").url == "http://ha.local:8123"


def test_factory_for_the_zone_registry(ha: FakeHomeAssistant) -> None:
    from types import SimpleNamespace

    from cassetted.contract import errors
    from cassetted.playback.zones.homeassistant import homeassistant_zone

    room = SimpleNamespace(homeassistant=HomeAssistantZoneSettings(entity_id=ENTITY))
    ctx = SimpleNamespace(homeassistant=HomeAssistantSettings(url=ha.url),
                          homeassistant_token=_token)
    zone = homeassistant_zone("kitchen", room, ctx)
    assert zone.entity_id == ENTITY and zone.room_id == "kitchen"
    with pytest.raises(errors.InvalidState, match="entity_id"):
        homeassistant_zone("kitchen", SimpleNamespace(), ctx)
    with pytest.raises(errors.InvalidState, match="url"):
        homeassistant_zone("kitchen", room, SimpleNamespace(homeassistant=HomeAssistantSettings(),
                                                            homeassistant_token=_token))


def test_state_is_pushed_over_the_websocket() -> None:
    fake = FakeHomeAssistant(websocket=True)

    async def main() -> None:
        statuses: list[ZoneStatus] = []
        zone = _zone(fake)
        zone._poll_interval_s = 3600  # no polling: anything seen after the start was pushed
        await zone.start(statuses.append)
        try:
            await _wait_for(statuses, lambda s: s.state == "idle")
            assert zone.pushed
            gets = len(list(fake.auth_headers))
            await zone.set_queue([_track(1), _track(2)])
            await _wait_for(statuses, lambda s: s.song_id == "s1" and s.state == "playing")
            # The song ended on the speaker: state and attributes change, one attribute goes.
            fake.state = {**fake.state, "state": "idle", "attributes": {
                k: v for k, v in fake.state["attributes"].items() if k != "media_position"}}
            fake.push()
            await _wait_for(statuses, lambda s: s.song_id == "s2" and s.state == "playing")
            await zone.control("volume", volume=20)
            await _wait_for(statuses, lambda s: s.volume == 20)
            assert len(fake.auth_headers) - gets == 3  # only the service calls used REST
            assert statuses[-1].elapsed_s == 0  # media_position is back after play_media
        finally:
            await zone.stop()

    try:
        asyncio.run(main())
    finally:
        fake.close()
    assert fake.ws_auth == [TOKEN]


def test_websocket_with_a_wrong_token_falls_back_and_stays_quiet(
        caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeHomeAssistant(websocket=True)
    wrong = "nope-" + TOKEN[::-1]

    async def bad_token() -> Secret:
        return Secret(wrong)

    async def main() -> list[ZoneStatus]:
        statuses: list[ZoneStatus] = []
        zone = _zone(fake, bad_token)
        await zone.start(statuses.append)
        try:
            await _wait_for(statuses, lambda s: s.state == "unavailable"
                            and "401" in str(s.extra.get("reason")))
            assert not zone.pushed
            return statuses
        finally:
            await zone.stop()

    caplog.set_level(logging.DEBUG)
    try:
        statuses = asyncio.run(main())
    finally:
        fake.close()
    assert fake.ws_auth == [wrong]
    assert wrong not in caplog.text + repr(statuses)


def test_entity_events_fold_into_a_state() -> None:
    from cassetted.homeassistant.websocket import apply_entity_event

    other = {"c": {"media_player.other": {"+": {"s": "playing"}}}}
    assert apply_entity_event(None, ENTITY, other) is None
    assert apply_entity_event(None, ENTITY, {"c": {ENTITY: {"+": {"s": "idle"}}}}) is None
    state = apply_entity_event(None, ENTITY, {"a": {ENTITY: {"s": "idle", "a": {"x": 1, "y": 2}}}})
    assert state == {"entity_id": ENTITY, "state": "idle", "attributes": {"x": 1, "y": 2}}
    state = apply_entity_event(state, ENTITY, {"c": {ENTITY: {"+": {"a": {"x": 5}, "lu": 2.0},
                                                              "-": {"a": ["y"]}}}})
    assert state == {"entity_id": ENTITY, "state": "idle", "attributes": {"x": 5}}
    assert apply_entity_event(state, ENTITY, {"r": [ENTITY]})["state"] == "unavailable"


def test_a_stopped_zone_starts_again(ha: FakeHomeAssistant) -> None:
    """stop() ends the state loop for good only until the next start(): a room re-added
    after a configuration reload follows its player again."""
    async def main() -> None:
        statuses: list[ZoneStatus] = []
        zone = _zone(ha)
        await zone.start(statuses.append)
        await _wait_for(statuses, lambda s: s.state == "idle")
        await zone.stop()
        assert zone._tasks.running() == []
        statuses.clear()
        ha.state["state"] = "paused"
        await zone.start(statuses.append)
        try:
            await _wait_for(statuses, lambda s: s.state == "paused")
        finally:
            await zone.stop()
        assert zone._tasks.running() == []

    asyncio.run(main())
