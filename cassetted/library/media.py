"""A small HTTP/1.1 server for library audio, so network players (HA media players, Cast,
Sonos) can fetch songs: `GET|HEAD /media/<url_token><ext>`.

Why its own server: the daemon needs exactly one thing from HTTP — serve a file by an
unguessable token with Range support — and asyncio streams do that in one module with no
dependency. The URL carries no path: the token is looked up (injected `lookup`), so there
is nothing to traverse, and anything not shaped like a token is a 404 before any lookup.

Bounded on every side: connections in all and per client address, request head size (431),
idle/header/write timeouts, and files are sent with `loop.sendfile` (zero-copy; asyncio
falls back to chunked reads), never read whole into memory. Idle connections (waiting for a
request head, a trickle included) never lock players out: when the server or one client is
at its limit, a new connection takes the place of the oldest idle one, and only when every
connection is busy sending is the newcomer answered 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

CONTENT_TYPES: dict[str, str] = {
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
}
MEDIA_PREFIX = "/media/"
# secrets.token_urlsafe(24) gives 32 characters of [A-Za-z0-9_-]; accept a sane range.
_TARGET = re.compile(r"^/media/(?P<token>[A-Za-z0-9_-]{16,128})(?P<ext>\.(?:flac|ogg|mp3|wav))?$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
MIN_SEND_RATE = 16 * 1024  # bytes/s a client must sustain while we send a body
# Range positions beyond this many digits are larger than any file (and than what int()
# parses by default: 4,300 digits); they are read as "huge", not parsed.
_MAX_POSITION_DIGITS = 18
_HUGE = 10 ** _MAX_POSITION_DIGITS

Lookup = Callable[[str], Awaitable[Path | None]]


class MediaSettings(BaseModel):
    """`[media]`: the HTTP server that gives songs URLs for network players."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Serve library audio over HTTP.")
    host: str = Field("0.0.0.0", description="Address to listen on.")
    port: int = Field(8765, ge=0, le=65535, description="0 = any free port (tests).")
    public_url: str | None = Field(
        None, pattern=r"^https?://[^\s?#]+$",
        description="Base URL players use, e.g. http://192.168.1.10:8765. Empty = this "
                    "host's primary address and the port.")
    max_connections: int = Field(32, ge=1, le=1024)
    max_connections_per_client: int = Field(
        16, ge=1, le=1024, description="Connections one address may hold; beyond it, its "
        "oldest idle one is closed (or 503 when all of them are busy).")
    max_header_bytes: int = Field(8192, ge=1024, le=65536)
    header_timeout_s: float = Field(10.0, gt=0)
    keepalive_s: float = Field(15.0, gt=0)


class _SongLike(Protocol):
    url_token: str
    file: str


def media_url(public_url: str, song: _SongLike) -> str:
    """The URL a player fetches a song at: `<public_url>/media/<url_token><ext>`."""
    ext = Path(song.file).suffix.lower()
    if ext not in CONTENT_TYPES:
        ext = ""
    return f"{public_url.rstrip('/')}{MEDIA_PREFIX}{song.url_token}{ext}"


def _primary_address() -> str:
    """The address other hosts reach us at: the one the default route uses (no packet sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            address: str = sock.getsockname()[0]
            return address
        except OSError:
            return "127.0.0.1"


def public_base_url(settings: MediaSettings, bound_port: int | None = None) -> str:
    """`public_url` if set, else http://<primary address>:<port>."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else _primary_address()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{bound_port or settings.port}"


def song_file_lookup(store: Any, library_dir: Path) -> Lookup:
    """The lookup the daemon uses: a token -> the song's file inside the library, or None."""
    from cassetted.store.database import Song  # the media server itself knows nothing of the store

    root = library_dir.resolve()

    def find(token: str) -> Path | None:
        song = Song.get_or_none(Song.url_token == token)
        if song is None:
            return None
        path = (root / song.file).resolve()
        return path if path.is_relative_to(root) else None

    async def lookup(token: str) -> Path | None:
        path: Path | None = await store.call(find, token)
        return path

    return lookup


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]


_REASONS = {200: "OK", 206: "Partial Content", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 416: "Range Not Satisfiable",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable", 505: "HTTP Version Not Supported"}


def parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """A single `bytes=` range -> (start, end inclusive); None = ignore (serve all);
    "unsatisfiable" = 416. Several ranges are answered with the whole file (RFC 9110 allows)."""
    match = _RANGE.match(value.strip())
    if match is None:
        return None
    first, last = (_position(part) for part in match.groups())
    if first is None and last is None:
        return None
    if first is None:  # suffix: the last N bytes
        assert last is not None
        length = last
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    start = first
    end = last if last is not None else size - 1
    if last is not None and end < start:
        return None  # syntactically invalid: ignore the header
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


def _position(digits: str) -> int | None:
    if not digits:
        return None
    return _HUGE if len(digits) > _MAX_POSITION_DIGITS else int(digits)


@dataclass(eq=False)
class _Connection:
    """One client connection; `idle` while it waits for (or trickles) a request head."""

    peer: str
    task: asyncio.Task[Any]
    idle: bool = True
    idle_since: float = field(default_factory=time.monotonic)


class MediaServer:
    """Serves `/media/<token><ext>` (GET, HEAD, Range) for files the lookup resolves."""

    def __init__(self, settings: MediaSettings, lookup: Lookup) -> None:
        self._settings = settings
        self._lookup = lookup
        self._server: asyncio.base_events.Server | None = None
        self._connections: dict[asyncio.Task[Any], _Connection] = {}
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        return public_base_url(self._settings, self.port)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self._settings.host, self._settings.port,
            limit=self._settings.max_header_bytes, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("media server on %s:%d (public %s)", self._settings.host, self.port,
                 self.base_url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            if self._connections:
                await asyncio.wait(set(self._connections), timeout=5)
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except TimeoutError:
                log.warning("media server: connections still open at stop")
            self._server = None

    # ------------------------------------------------------------------ connections

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else "?"
        if not self._make_room(peer):
            await self._simple(writer, 503, close=True, extra={"Retry-After": "5"})
            await self._close(writer)
            return
        connection = _Connection(peer, task)
        self._connections[task] = connection
        try:
            await self._serve(reader, writer, connection)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("media connection failed")
        finally:
            self._connections.pop(task, None)
            await self._close(writer)

    def _make_room(self, peer: str) -> bool:
        """Room for one more connection from `peer`: free, or made by closing the oldest
        idle connection (the client's own first). False when every candidate is busy."""
        mine = [c for c in self._connections.values() if c.peer == peer]
        if len(mine) >= self._settings.max_connections_per_client:
            candidates = mine
        elif len(self._connections) >= self._settings.max_connections:
            candidates = list(self._connections.values())
        else:
            return True
        idle = [c for c in candidates if c.idle]
        if not idle:
            log.warning("media server: %s refused, %d connections busy", peer, len(candidates))
            return False
        victim = min(idle, key=lambda c: c.idle_since)
        del self._connections[victim.task]  # counted out now; the task closes its socket
        victim.task.cancel()
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     connection: _Connection) -> None:
        first = True
        while True:
            timeout = self._settings.header_timeout_s if first else self._settings.keepalive_s
            connection.idle, connection.idle_since = True, time.monotonic()
            try:
                request = await asyncio.wait_for(self._read_head(reader), timeout)
            except TimeoutError:
                if first:
                    await self._simple(writer, 408, close=True)
                return
            except _BadRequest as error:
                await self._simple(writer, error.status, close=True)
                return
            if request is None:
                return  # the client closed the connection
            connection.idle = False
            first = False
            keep = await self._respond(request, writer)
            if not keep:
                return

    async def _read_head(self, reader: asyncio.StreamReader) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if not error.partial.strip():
                return None
            raise _BadRequest(400, "incomplete request") from None
        except asyncio.LimitOverrunError:
            raise _BadRequest(431, "request head too large") from None
        except ValueError:  # the limit was hit inside the separator search
            raise _BadRequest(431, "request head too large") from None
        if len(head) > self._settings.max_header_bytes:
            raise _BadRequest(431, "request head too large")
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:
            raise _BadRequest(400, "bad encoding") from None
        lines = text[:-4].split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise _BadRequest(400, "bad request line")
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _BadRequest(505, "unsupported HTTP version")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, "bad header line")
            headers[name.lower()] = value.strip()
        return _Request(method, target, version, headers)

    # ------------------------------------------------------------------ responses

    async def _respond(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True when the connection may serve another."""
        keep = self._keep_alive(request)
        if request.method not in ("GET", "HEAD"):
            await self._simple(writer, 405, close=not keep, extra={"Allow": "GET, HEAD"})
            return keep
        # Bodies on GET/HEAD are not expected; refuse rather than mis-frame the next request.
        if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
            await self._simple(writer, 400, close=True)
            return False
        target = request.target.split("?", 1)[0]
        match = _TARGET.match(target)
        path = await self._lookup(match["token"]) if match else None
        if path is None or not self._acceptable(path, match["ext"] if match else None):
            await self._simple(writer, 404, close=not keep, head=request.method == "HEAD")
            return keep
        try:
            # Not one `with`: a failed open is answered 404, apart from errors while sending.
            handle = open(path, "rb")  # noqa: ASYNC230, SIM115 - a quick local open; `with handle` closes it
        except OSError:
            await self._simple(writer, 404, close=not keep, head=request.method == "HEAD")
            return keep
        with handle:
            stat = os.fstat(handle.fileno())
            size = stat.st_size
            headers = {
                "Content-Type": CONTENT_TYPES[path.suffix.lower()],
                "Accept-Ranges": "bytes",
                "Last-Modified": email.utils.formatdate(stat.st_mtime, usegmt=True),
                "Cache-Control": "private, max-age=3600",
                "X-Content-Type-Options": "nosniff",
            }
            status, start, length = 200, 0, size
            wanted = parse_range(request.headers["range"], size) if "range" in request.headers else None
            if wanted == "unsatisfiable":
                await self._simple(writer, 416, close=not keep, head=request.method == "HEAD",
                                   extra={"Content-Range": f"bytes */{size}"})
                return keep
            if isinstance(wanted, tuple):
                status, start = 206, wanted[0]
                length = wanted[1] - wanted[0] + 1
                headers["Content-Range"] = f"bytes {wanted[0]}-{wanted[1]}/{size}"
            headers["Content-Length"] = str(length)
            self._write_head(writer, status, headers, close=not keep)
            await asyncio.wait_for(writer.drain(), self._settings.keepalive_s)
            if request.method == "GET" and length:
                deadline = self._settings.keepalive_s + length / MIN_SEND_RATE
                loop = asyncio.get_running_loop()
                await asyncio.wait_for(
                    loop.sendfile(writer.transport, handle, start, length, fallback=True),
                    deadline)
        return keep

    @staticmethod
    def _acceptable(path: Path, ext: str | None) -> bool:
        """A regular file of a served type, reached by the extension the URL names (if any)."""
        suffix = path.suffix.lower()
        if suffix not in CONTENT_TYPES or (ext is not None and ext != suffix):
            return False
        return path.is_file()

    @staticmethod
    def _keep_alive(request: _Request) -> bool:
        connection = request.headers.get("connection", "").lower()
        if request.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"

    @staticmethod
    def _write_head(writer: asyncio.StreamWriter, status: int, headers: dict[str, str],
                    close: bool) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
                 f"Date: {email.utils.formatdate(usegmt=True)}",
                 "Server: cassetted"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append("Connection: close" if close else "Connection: keep-alive")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def _simple(self, writer: asyncio.StreamWriter, status: int, *, close: bool,
                      head: bool = False, extra: dict[str, str] | None = None) -> None:
        body = f"{status} {_REASONS.get(status, 'Error')}\n".encode()
        headers = {"Content-Type": "text/plain; charset=utf-8",
                   "Content-Length": str(len(body)), **(extra or {})}
        self._write_head(writer, status, headers, close)
        if not head:
            writer.write(body)
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.drain(), self._settings.keepalive_s)

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError, OSError):
            await asyncio.wait_for(writer.wait_closed(), 2)
