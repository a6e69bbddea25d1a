"""The media server over real sockets: GET, HEAD, ranges, types, and everything it refuses."""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cassetted.library.media import MediaServer, MediaSettings, media_url, parse_range, public_base_url

TOKENS = {
    "A" * 32: "song.flac", "B" * 32: "song.ogg", "C" * 32: "song.mp3", "D" * 32: "song.wav",
    "E" * 32: "missing.flac", "F" * 32: "notes.txt", "G" * 32: "song.flac",
}
GATED = "G" * 32  # its lookup waits for ServerInThread.gate: a connection kept busy


class ServerInThread:
    def __init__(self, library: Path, **settings: object) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.lookups: list[str] = []
        self.gate = asyncio.Event()

        async def lookup(token: str) -> Path | None:
            self.lookups.append(token)
            if token == GATED:
                await self.gate.wait()
            name = TOKENS.get(token)
            return library / name if name else None

        self.server = MediaServer(MediaSettings(enabled=True, host="127.0.0.1", port=0,
                                                **settings), lookup)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)
        assert self.server.port
        self.port = self.server.port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    data = os.urandom(300_000)
    for name in ("song.flac", "song.ogg", "song.mp3", "song.wav", "notes.txt"):
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.fixture
def server(library: Path) -> Iterator[ServerInThread]:
    s = ServerInThread(library, header_timeout_s=2, keepalive_s=2, max_connections=4)
    yield s
    s.stop()


def request(server: ServerInThread, method: str, path: str,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def raw(server: ServerInThread, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_get_and_head_serve_the_whole_file(server: ServerInThread, library: Path) -> None:
    data = (library / "song.flac").read_bytes()
    status, headers, body = request(server, "GET", f"/media/{'A' * 32}.flac")
    assert status == 200 and body == data
    assert headers["content-type"] == "audio/flac"
    assert headers["content-length"] == str(len(data))
    assert headers["accept-ranges"] == "bytes"
    status, headers, body = request(server, "HEAD", f"/media/{'A' * 32}.flac")
    assert status == 200 and body == b"" and headers["content-length"] == str(len(data))


def test_content_types(server: ServerInThread) -> None:
    for token, ext, kind in (("A", ".flac", "audio/flac"), ("B", ".ogg", "audio/ogg"),
                             ("C", ".mp3", "audio/mpeg"), ("D", ".wav", "audio/wav")):
        status, headers, _ = request(server, "HEAD", f"/media/{token * 32}{ext}")
        assert (status, headers["content-type"]) == (200, kind)
    # The extension may be left out, but a wrong one is not served.
    assert request(server, "HEAD", f"/media/{'B' * 32}")[0] == 200
    assert request(server, "HEAD", f"/media/{'B' * 32}.mp3")[0] == 404


def test_ranges(server: ServerInThread, library: Path) -> None:
    data = (library / "song.flac").read_bytes()
    size = len(data)
    path = f"/media/{'A' * 32}.flac"
    status, headers, body = request(server, "GET", path, {"Range": "bytes=0-99"})
    assert status == 206 and body == data[:100]
    assert headers["content-range"] == f"bytes 0-99/{size}"
    assert headers["content-length"] == "100"
    status, headers, body = request(server, "GET", path, {"Range": "bytes=-500"})
    assert status == 206 and body == data[-500:]
    assert headers["content-range"] == f"bytes {size - 500}-{size - 1}/{size}"
    status, _, body = request(server, "GET", path, {"Range": "bytes=299000-"})
    assert status == 206 and body == data[299000:]
    status, _, body = request(server, "GET", path, {"Range": f"bytes=10-{size * 2}"})
    assert status == 206 and body == data[10:]
    status, headers, _ = request(server, "GET", path, {"Range": f"bytes={size}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{size}"
    assert request(server, "GET", path, {"Range": "bytes=-0"})[0] == 416
    # Malformed or multi-range headers are ignored: the whole file.
    for value in ("bytes=5-1", "items=0-1", "bytes=0-1,5-6"):
        status, _, body = request(server, "GET", path, {"Range": value})
        assert status == 200 and body == data


def test_unknown_guessed_and_traversing_paths(server: ServerInThread) -> None:
    for path in (f"/media/{'Z' * 32}.flac",           # unknown token
                 f"/media/{'E' * 32}.flac",           # known token, file gone
                 f"/media/{'F' * 32}",                # not audio
                 "/media/", "/media", "/", "/media/short.flac",
                 "/media/../../etc/passwd", "/media/..%2f..%2fetc%2fpasswd",
                 "/media/%2e%2e/%2e%2e/etc/passwd", "/media/%252e%252e/etc/passwd",
                 "/media/....//....//etc/passwd", f"/media/{'A' * 32}.flac/../../x",
                 f"/media/{'A' * 32}%00.flac", "/etc/passwd", "//etc/passwd"):
        status, _headers, body = request(server, "GET", path)
        assert status in (400, 404), path
        assert b"root:" not in body
    # Shapes that are not tokens never reach the lookup.
    assert set(server.lookups) <= set(TOKENS) | {"Z" * 32}


def test_methods_and_malformed_requests(server: ServerInThread) -> None:
    status, headers, _ = request(server, "POST", f"/media/{'A' * 32}.flac")
    assert status == 405 and "GET" in headers["allow"]
    assert raw(server, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(server, b"GET / HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505")


def test_oversize_headers_are_rejected(server: ServerInThread) -> None:
    big = b"GET /media/x HTTP/1.1\r\nX-Fill: " + b"a" * 20_000 + b"\r\n\r\n"
    assert raw(server, big).startswith(b"HTTP/1.1 431")


def test_keep_alive_serves_several_requests(server: ServerInThread, library: Path) -> None:
    data = (library / "song.ogg").read_bytes()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for first in (0, 1000, 2000):
            conn.request("GET", f"/media/{'B' * 32}.ogg", headers={"Range": f"bytes={first}-"})
            response = conn.getresponse()
            assert response.status == 206 and response.read() == data[first:]
    finally:
        conn.close()


def test_idle_and_excess_connections(server: ServerInThread) -> None:
    # A client that never finishes its request head is answered 408 and dropped.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /media/")
        assert sock.recv(100).startswith(b"HTTP/1.1 408")
    # At max_connections (4) idle ones, a player still gets its song: the oldest idle
    # connection makes room (closed without a word, as HTTP lets a server close idle ones).
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.2)
        held[1].sendall(b"GET /med")  # a trickle is idle too
        time.sleep(0.1)
        assert request(server, "GET", f"/media/{'A' * 32}.flac")[0] == 200
        assert held[0].recv(100) == b""  # the oldest went
        held[2].settimeout(0.3)
        with pytest.raises(socket.timeout):
            held[2].recv(100)  # the others stay
    finally:
        for sock in held:
            sock.close()


def test_busy_connections_are_never_dropped_and_the_excess_gets_503(
        server: ServerInThread) -> None:
    busy = []
    try:
        for _ in range(4):  # every slot mid-request (its lookup waits)
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(f"GET /media/{GATED}.flac HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            busy.append(sock)
        deadline = time.monotonic() + 5
        while server.lookups.count(GATED) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            answer = sock.recv(200)
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 5" in answer
        server.loop.call_soon_threadsafe(server.gate.set)
        for sock in busy:  # each busy one is served in full
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        for sock in busy:
            sock.close()


def test_forty_idle_sockets_do_not_lock_out_a_player(library: Path) -> None:
    """The defaults (32 in all, 16 per client): a stranger's 40 idle sockets, then players."""
    s = ServerInThread(library)
    idle = []
    try:
        idle.extend(socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(40))
        time.sleep(0.3)
        for _ in range(3):
            status, _headers, body = request(s, "GET", f"/media/{'A' * 32}.flac")
            assert status == 200 and len(body) == 300_000
        assert len(s.server._connections) <= 16
    finally:
        for sock in idle:
            sock.close()
        s.stop()


def test_huge_range_numbers(server: ServerInThread) -> None:
    digits = "9" * 5000  # beyond what int() parses by default (4,300 digits)
    status, headers, _ = request(server, "GET", f"/media/{'A' * 32}.flac",
                                 {"Range": f"bytes={digits}-"})
    assert status == 416 and headers["content-range"] == "bytes */300000"
    status, headers, body = request(server, "GET", f"/media/{'A' * 32}.flac",
                                    {"Range": f"bytes=0-{digits}"})
    assert status == 206 and len(body) == 300_000
    status, _, body = request(server, "GET", f"/media/{'A' * 32}.flac",
                              {"Range": f"bytes=-{digits}"})
    assert status == 206 and len(body) == 300_000


def test_parse_range_and_urls() -> None:
    assert parse_range("bytes=0-0", 10) == (0, 0)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=-30", 10) == (0, 9)
    assert parse_range("bytes=9-", 10) == (9, 9)
    assert parse_range("bytes=10-", 10) == "unsatisfiable"
    assert parse_range("bytes=-", 10) is None

    class Song:
        url_token = "tok" * 10
        file = "2026/11/abc.flac"

    assert media_url("http://box:8765/", Song()) == f"http://box:8765/media/{'tok' * 10}.flac"
    assert public_base_url(MediaSettings(public_url="http://nas.local:9000/")) == \
        "http://nas.local:9000"
    assert public_base_url(MediaSettings(host="10.0.0.5", port=8000)) == "http://10.0.0.5:8000"


def test_store_lookup_resolves_tokens_inside_the_library(tmp_path: Path) -> None:
    from cassetted.library.media import song_file_lookup
    from cassetted.store.database import Song, Store

    library = tmp_path / "library"
    library.mkdir()
    (library / "a.flac").write_bytes(b"x")

    async def main() -> tuple[Path | None, Path | None, Path | None]:
        store = Store(None, tmp_path)
        await store.open()
        fields = {"title": "t", "genre": "jazz", "mood": "relaxing", "bpm": 90, "key": "A minor",
                  "time_signature": "4/4", "duration_s": 10, "language": "en", "seed": 1,
                  "engine": "builtin", "lyrics_provider": "builtin", "format": "flac"}
        good = await store.call(Song.create, file="a.flac", **fields)
        evil = await store.call(Song.create, file="../../etc/passwd", **fields)
        lookup = song_file_lookup(store, library)
        try:
            return (await lookup(good.url_token), await lookup(evil.url_token),
                    await lookup("nope" * 8))
        finally:
            await store.close()

    found, escaped, unknown = asyncio.run(main())
    assert found == (library / "a.flac").resolve()
    assert escaped is None and unknown is None
