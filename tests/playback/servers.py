"""Real `mpd`, `snapserver` and `snapclient` processes on loopback ports, for the tests.

Every server gets a temporary configuration: its own ports, music and data folders, a null
(or fifo) audio output, never the defaults of the machine it runs on.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import mpd

from tests.playback.helpers import write_flac

__all__ = ["HOST", "MpdServer", "SnapClient", "SnapServer", "fifo_output", "free_port",
           "wait_for", "write_flac"]

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy (tests only; the code never polls)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


NULL_OUTPUT = 'audio_output {\n  type "null"\n  name "null"\n  mixer_type "software"\n}\n'


def fifo_output(path: Path) -> str:
    return (f'audio_output {{\n  type "fifo"\n  name "snapcast"\n  path "{path}"\n'
            f'  format "48000:16:2"\n  mixer_type "software"\n}}\n')


class MpdServer:
    """One MPD with everything in `workdir`."""

    def __init__(self, workdir: Path, output: str = NULL_OUTPUT) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.music_dir = workdir / "music"
        self.playlist_dir = workdir / "playlists"
        self.output = output
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MpdServer:
        self.music_dir.mkdir(parents=True, exist_ok=True)
        self.playlist_dir.mkdir(parents=True, exist_ok=True)
        w = self.workdir
        conf = w / "mpd.conf"
        conf.write_text(
            f'music_directory "{self.music_dir}"\nplaylist_directory "{self.playlist_dir}"\n'
            f'db_file "{w / "db"}"\nstate_file "{w / "state"}"\npid_file "{w / "pid"}"\n'
            f'bind_to_address "{HOST}"\nport "{self.port}"\nzeroconf_enabled "no"\n'
            f'{self.output}')
        binary = shutil.which("mpd") or "/usr/bin/mpd"
        self.proc = subprocess.Popen([binary, "--no-daemon", "--stderr", str(conf)],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(w / "mpd.log", "ab"))
        wait_for(lambda: port_answers(self.port) or self._died(), 10)
        return self

    def _died(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"mpd exited: {(self.workdir / 'mpd.log').read_text()[-2000:]}")
        return False

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def client(self) -> mpd.MPDClient:
        """A synchronous client: how the tests look at MPD from outside."""
        client = mpd.MPDClient()
        client.timeout = 5
        client.connect(HOST, self.port)
        return client

    def status(self) -> dict[str, str]:
        client = self.client()
        try:
            return client.status()
        finally:
            client.disconnect()

    def currentsong(self) -> dict[str, str]:
        client = self.client()
        try:
            return client.currentsong()
        finally:
            client.disconnect()

    def stored_playlist(self, name: str) -> list[str]:
        client = self.client()
        try:
            return list(client.listplaylist(name))
        except mpd.CommandError:
            return []
        finally:
            client.disconnect()


class SnapServer:
    """snapserver with two pipe sources: `party` (fed by the party MPD) and `radio`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.control_port = free_port()
        self.stream_port = free_port()
        self.party_pipe = workdir / "party.fifo"
        self.radio_pipe = workdir / "radio.fifo"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SnapServer:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "snapserver.conf"
        conf.write_text(
            f"[server]\ndatadir = {data}\n"
            f"[http]\nenabled = false\n"
            f"[tcp]\nenabled = true\nbind_to_address = {HOST}\nport = {self.control_port}\n"
            f"[stream]\nbind_to_address = {HOST}\nport = {self.stream_port}\n"
            f"source = pipe://{self.radio_pipe}?name=radio\n"
            f"source = pipe://{self.party_pipe}?name=party\n"
            f"[logging]\nfilter = *:warning\n")
        binary = shutil.which("snapserver") or "/usr/bin/snapserver"
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "snapserver.log", "ab"))
        wait_for(lambda: port_answers(self.control_port), 10)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One JSON-RPC call on a fresh connection: the tests' independent view."""
        with socket.create_connection((HOST, self.control_port), timeout=5) as sock:
            message: dict[str, Any] = {"id": 1, "jsonrpc": "2.0", "method": method}
            if params is not None:
                message["params"] = params
            sock.sendall(json.dumps(message).encode() + b"\r\n")
            reader = sock.makefile("rb")
            while True:
                reply = json.loads(reader.readline())
                if reply.get("id") == 1:
                    if "error" in reply:
                        raise RuntimeError(reply["error"])
                    return reply["result"]

    def groups(self) -> list[dict[str, Any]]:
        return self.rpc("Server.GetStatus")["server"]["groups"]

    def group_of(self, client_id: str) -> dict[str, Any]:
        for group in self.groups():
            if any(c["id"] == client_id for c in group["clients"]):
                return group
        raise AssertionError(f"no group holds {client_id}")

    def volume_of(self, client_id: str) -> int:
        for client in (c for g in self.groups() for c in g["clients"]):
            if client["id"] == client_id:
                return client["config"]["volume"]["percent"]
        raise AssertionError(f"no client {client_id}")


class SnapClient:
    """A snapclient that plays into nothing, so that its group exists on the server."""

    def __init__(self, server: SnapServer, host_id: str) -> None:
        self.server = server
        self.host_id = host_id
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SnapClient:
        binary = shutil.which("snapclient") or "/usr/bin/snapclient"
        self.proc = subprocess.Popen(
            [binary, "-h", HOST, "-p", str(self.server.stream_port), "--hostID", self.host_id,
             "--player", "file:filename=null", "--logsink", "null"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
