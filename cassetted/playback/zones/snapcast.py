"""Snapcast: a JSON-RPC client for snapserver's control port, and the Snapcast zone.

snapserver (TCP port 1705) speaks newline-delimited JSON-RPC 2.0. `SnapcastClient` keeps
one connection, a copy of `Server.GetStatus` updated from snapserver's notifications
(`Client.OnConnect`, `Group.OnStreamChanged`, `Server.OnUpdate`, ...), and reconnects with
backoff when snapserver restarts. snapserver does not notify a connection of the changes it
made itself, so the client applies the results of its own calls to the copy.

A room maps to a snapserver group through its `snapcast_group`, matched in this order:
the group's id, the group's name, then the id, the configured name, or the host name of a
client in it (the first group holding such a client). Client ids are stable (snapclient's
`--hostID`, else its MAC address); groups are re-created by snapserver as clients move, so
naming a client is the robust choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from cassetted.playback.base import StateCallback, Track, ZoneError, ZoneStatus
from cassetted.tasks import BackgroundTasks

if TYPE_CHECKING:  # python-mpd2 is the optional extra `mpd`; a zone without a feeder needs none
    from cassetted.playback.zones.mpd import MpdZone

log = logging.getLogger(__name__)

Listener = Callable[[str], None]  # called with a notification's method, "connected" or "disconnected"
_LINE_LIMIT = 16 * 1024 * 1024    # Server.GetStatus of a large house is one long line


class SnapcastError(Exception):
    """snapserver refused a call or cannot be reached; the message is safe to show."""


class SnapcastClient:
    """One control connection to snapserver, shared by the Snapcast zones and party mode."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1705, *,
                 reconnect_min_s: float = 0.1, reconnect_max_s: float = 10.0,
                 request_timeout_s: float = 5.0) -> None:
        self.host = host
        self.port = port
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._request_timeout_s = request_timeout_s
        self.server: dict[str, Any] | None = None  # the "server" object of Server.GetStatus
        self.connected = False
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._listeners: list[Listener] = []
        self._tasks = BackgroundTasks("snapcast")
        self._connected_event = asyncio.Event()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._tasks.get("connection") is None:
            self._tasks.spawn(self._run(), "connection")

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    async def wait_connected(self, timeout_s: float = 10.0) -> None:
        await asyncio.wait_for(self._connected_event.wait(), timeout_s)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _notify(self, what: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(what)
            except Exception:
                log.exception("snapcast listener failed on %s", what)

    async def _run(self) -> None:
        delay = self._reconnect_min_s
        while True:
            reader_task: asyncio.Task[None] | None = None
            reason = "stopped"
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for turns a cancel that
                # meets a finished connect (refused at once) into the connect's error, and
                # this loop would then reconnect for ever behind a stop that waits for it.
                async with asyncio.timeout(self._request_timeout_s):
                    reader, self._writer = await asyncio.open_connection(
                        self.host, self.port, limit=_LINE_LIMIT)
                reader_task = self._tasks.spawn(self._read(reader), "reader", replace=True)
                result = await self.request("Server.GetStatus")
                self.server = result["server"]
                self.connected = True
                self._connected_event.set()
                delay = self._reconnect_min_s
                log.info("connected to snapserver %s", self.where)
                self._notify("connected")
                await reader_task
                reason = "connection closed"
            except asyncio.CancelledError:
                raise
            except (TimeoutError, OSError, SnapcastError, KeyError, TypeError) as error:
                reason = str(error) or type(error).__name__
            except Exception as error:
                log.exception("snapserver connection failed")
                reason = repr(error)
            finally:
                if reader_task is not None:
                    reader_task.cancel()
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(SnapcastError(f"lost snapserver {self.where}"))
                self._pending.clear()
                self._connected_event.clear()
                was_connected, self.connected = self.connected, False
                if was_connected:
                    log.warning("snapserver %s lost (%s); reconnecting", self.where, reason)
                    self._notify("disconnected")
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # a cancel some await swallowed
                raise asyncio.CancelledError
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max_s)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Until the connection ends; a reset or an over-long line ends it like a close (the
        connection task reconnects), not as a task failure."""
        while True:
            try:
                line = await reader.readline()
            except (OSError, ValueError) as error:
                log.warning("snapserver %s: reading failed: %s", self.where, error)
                return
            if not line:
                return
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("snapserver sent something that is not JSON: %.200r", line)
                continue
            if not isinstance(message, dict):
                continue
            if "id" in message and message.get("id") is not None:
                future = self._pending.pop(message["id"], None)
                if future is not None and not future.done():
                    if "error" in message:
                        fault = message["error"] or {}
                        detail = fault.get("data") or fault.get("message") or "error"
                        future.set_exception(SnapcastError(f"snapserver: {detail}"))
                    else:
                        future.set_result(message.get("result"))
            elif isinstance(message.get("method"), str):
                self._apply(message["method"], message.get("params") or {})

    # ------------------------------------------------------------------ calls

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        writer = self._writer
        if writer is None:
            raise SnapcastError(f"snapserver {self.where} is unreachable")
        request_id = next(self._ids)
        message: dict[str, Any] = {"id": request_id, "jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            writer.write(json.dumps(message).encode() + b"\r\n")
            await writer.drain()
            async with asyncio.timeout(self._request_timeout_s):  # see _run: not wait_for
                return await future
        except TimeoutError:
            raise SnapcastError(f"snapserver {self.where} did not answer {method}") from None
        except OSError as error:
            raise SnapcastError(f"snapserver {self.where}: {error}") from None
        finally:
            self._pending.pop(request_id, None)

    async def set_group_stream(self, group_id: str, stream_id: str) -> None:
        result = await self.request("Group.SetStream", {"id": group_id, "stream_id": stream_id})
        group = self.group(group_id)
        if group is not None:
            group["stream_id"] = (result or {}).get("stream_id", stream_id)
        self._notify("Group.OnStreamChanged")

    async def set_client_volume(self, client_id: str, percent: int,
                                muted: bool | None = None) -> None:
        client = self.client(client_id)
        if muted is None:
            muted = bool(client["config"]["volume"].get("muted")) if client else False
        volume = {"percent": int(percent), "muted": muted}
        result = await self.request("Client.SetVolume", {"id": client_id, "volume": volume})
        if client is not None:
            client["config"]["volume"] = (result or {}).get("volume", volume)
        self._notify("Client.OnVolumeChanged")

    # ------------------------------------------------------------------ the server's model

    def groups(self) -> list[dict[str, Any]]:
        return list((self.server or {}).get("groups", []))

    def streams(self) -> list[dict[str, Any]]:
        return list((self.server or {}).get("streams", []))

    def group(self, group_id: str) -> dict[str, Any] | None:
        return next((g for g in self.groups() if g.get("id") == group_id), None)

    def stream(self, stream_id: str) -> dict[str, Any] | None:
        return next((s for s in self.streams() if s.get("id") == stream_id), None)

    def client(self, client_id: str) -> dict[str, Any] | None:
        for group in self.groups():
            for client in group.get("clients", []):
                if client.get("id") == client_id:
                    return cast("dict[str, Any]", client)
        return None

    def find_group(self, ref: str) -> dict[str, Any] | None:
        """The group a room's `snapcast_group` names (see the module docstring for the order)."""
        groups = self.groups()
        tests: list[Callable[[dict[str, Any]], bool]] = [
            lambda g: g.get("id") == ref,
            lambda g: bool(g.get("name")) and g.get("name") == ref,
            lambda g: any(c.get("id") == ref for c in g.get("clients", [])),
            lambda g: any(c.get("config", {}).get("name") == ref for c in g.get("clients", [])),
            lambda g: any(c.get("host", {}).get("name") == ref for c in g.get("clients", [])),
        ]
        for test in tests:
            for group in groups:
                if test(group):
                    return group
        return None

    def _apply(self, method: str, params: dict[str, Any]) -> None:
        """Fold one notification into the copy of the server's state, then tell listeners."""
        known = True
        if method == "Server.OnUpdate":
            self.server = params.get("server", self.server)
        elif method.startswith("Group."):
            group = self.group(params.get("id", ""))
            known = group is not None
            if group is not None:
                if method == "Group.OnStreamChanged":
                    group["stream_id"] = params.get("stream_id")
                elif method == "Group.OnMute":
                    group["muted"] = params.get("mute")
                elif method == "Group.OnNameChanged":
                    group["name"] = params.get("name")
        elif method.startswith("Client."):
            client = self.client(params.get("id", ""))
            known = client is not None
            if client is not None:
                config = client.setdefault("config", {})
                if method in ("Client.OnConnect", "Client.OnDisconnect") and "client" in params:
                    client.clear()
                    client.update(params["client"])
                elif method == "Client.OnVolumeChanged":
                    config["volume"] = params.get("volume")
                elif method == "Client.OnNameChanged":
                    config["name"] = params.get("name")
                elif method == "Client.OnLatencyChanged":
                    config["latency"] = params.get("latency")
        elif method.startswith("Stream."):
            stream = self.stream(params.get("id", ""))
            known = stream is not None
            if stream is not None:
                if method == "Stream.OnUpdate" and "stream" in params:
                    stream.clear()
                    stream.update(params["stream"])
                elif method == "Stream.OnProperties":
                    stream["properties"] = params.get("properties")
        if not known:
            self._refresh()  # something we have never seen: ask for the whole picture
        self._notify(method)

    def _refresh(self) -> None:
        if self._tasks.get("refresh") is not None:
            return

        async def refresh() -> None:
            try:
                self.server = (await self.request("Server.GetStatus"))["server"]
                self._notify("Server.OnUpdate")
            except (SnapcastError, KeyError, TypeError) as error:
                log.warning("could not refresh snapserver status: %s", error)

        self._tasks.spawn(refresh(), "refresh")


class SnapcastZone:
    """A room that is a snapserver group; what it plays comes from an MPD feeding a stream.

    `feeder` is the MPD writing to the pipe source `stream_id`. play_now and set_queue move
    the group onto that stream first, so a track asked for this room is heard in it. Volume
    is Snapcast's (each client of the group); the other controls go to the feeding MPD.
    The state is the feeder's while the group listens to its stream, else the state of the
    stream the group is on.
    """

    def __init__(self, room_id: str, group_ref: str, client: SnapcastClient,
                 feeder: MpdZone | None, stream_id: str | None) -> None:
        self.room_id = room_id
        self.group_ref = group_ref
        self._client = client
        self._feeder = feeder
        self._stream_id = stream_id
        self._on_state: StateCallback | None = None
        self._status = ZoneStatus("unavailable", extra={"reason": "not connected yet"})

    @property
    def status(self) -> ZoneStatus:
        return self._status

    async def start(self, on_state: StateCallback) -> None:
        self._on_state = on_state
        self._client.add_listener(self._changed)
        if self._feeder is not None:
            await self._feeder.start(self._changed)
        self._changed()

    async def stop(self) -> None:
        self._client.remove_listener(self._changed)
        if self._feeder is not None:
            await self._feeder.stop()

    def group(self) -> dict[str, Any] | None:
        return self._client.find_group(self.group_ref) if self._client.connected else None

    def _changed(self, *_: object) -> None:
        status = self._compute()
        if status != self._status:
            self._status = status
            if self._on_state is not None:
                self._on_state(status)

    def _compute(self) -> ZoneStatus:
        if not self._client.connected:
            return ZoneStatus("unavailable", extra={
                "reason": f"snapserver at {self._client.where} unreachable"})
        group = self._client.find_group(self.group_ref)
        if group is None:
            return ZoneStatus("unavailable", extra={
                "reason": f"no snapserver group or client matches {self.group_ref!r}"})
        clients = group.get("clients", [])
        percents = [c.get("config", {}).get("volume", {}).get("percent") for c in clients]
        percents = [p for p in percents if isinstance(p, int)]
        volume = round(sum(percents) / len(percents)) if percents else None
        extra: dict[str, object] = {"group": group.get("id"), "stream": group.get("stream_id"),
                                    "clients": [c.get("id") for c in clients]}
        if self._feeder is not None and group.get("stream_id") == self._stream_id:
            fed = self._feeder.status
            if fed.state == "unavailable":
                return ZoneStatus("unavailable", volume=volume, extra={**extra, **fed.extra})
            return ZoneStatus(fed.state, song_id=fed.song_id, volume=volume,
                              elapsed_s=fed.elapsed_s, extra=extra)
        stream = self._client.stream(str(group.get("stream_id")))
        playing = stream is not None and stream.get("status") == "playing"
        return ZoneStatus("playing" if playing else "idle", volume=volume, extra=extra)

    def _require_feeder(self) -> MpdZone:
        if self._feeder is None or self._stream_id is None:
            raise ZoneError(f"room {self.room_id!r} has no MPD feeding a Snapcast stream "
                            "(set [snapcast.mpd] and party_stream)")
        return self._feeder

    async def _join_stream(self) -> None:
        group = self.group()
        if group is None:
            raise ZoneError(self._compute().extra.get("reason", "snapserver unavailable"))
        if self._stream_id is not None and group.get("stream_id") != self._stream_id:
            try:
                await self._client.set_group_stream(group["id"], self._stream_id)
            except SnapcastError as error:
                raise ZoneError(str(error)) from None

    async def play_now(self, track: Track) -> None:
        feeder = self._require_feeder()
        await self._join_stream()
        await feeder.play_now(track)

    async def set_queue(self, tracks: list[Track], start_index: int = 0, play: bool = True) -> None:
        feeder = self._require_feeder()
        if play:
            await self._join_stream()
        await feeder.set_queue(tracks, start_index, play)

    async def control(self, action: str, *, volume: int | None = None,
                      position_s: float | None = None) -> None:
        if action != "volume":
            if action == "play":
                await self._join_stream()
            await self._require_feeder().control(action, position_s=position_s)
            return
        if volume is None:
            raise ZoneError("volume needs a value from 0 to 100")
        group = self.group()
        if group is None:
            raise ZoneError(str(self._compute().extra.get("reason")))
        try:
            for client in group.get("clients", []):
                await self._client.set_client_volume(client["id"], volume)
        except SnapcastError as error:
            raise ZoneError(str(error)) from None

    async def save_playlist(self, name: str, tracks: list[Track]) -> None:
        if self._feeder is not None:
            await self._feeder.save_playlist(name, tracks)

    async def append_to_playlist(self, name: str, track: Track) -> None:
        if self._feeder is not None:
            await self._feeder.append_to_playlist(name, track)
