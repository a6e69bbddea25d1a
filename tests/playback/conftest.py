"""Fixtures for playback: real MPD and snapserver processes, songs in a real SQLite store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cassetted.playback.base import Track
from tests.fixtures.services import MpdServer, SnapClient, SnapServer, fifo_output, wait_for
from tests.playback.helpers import write_flac


@pytest.fixture
def mpd_server(tmp_path: Path) -> Iterator[MpdServer]:
    server = MpdServer(tmp_path / "mpd").start()
    yield server
    server.stop()


@pytest.fixture
def snapserver(tmp_path: Path) -> Iterator[SnapServer]:
    """snapserver with two clients, `kitchen` and `bedroom`, each in its own group on `radio`."""
    server = SnapServer(tmp_path / "snap").start()
    clients = [SnapClient(server, name).start() for name in ("kitchen", "bedroom")]

    def ready() -> bool:
        groups = server.groups()
        ids = {c["id"] for g in groups for c in g["clients"] if c["connected"]}
        return {"kitchen", "bedroom"} <= ids

    wait_for(ready, 10)
    for group in server.groups():  # start from a known place: every group on `radio`
        server.rpc("Group.SetStream", {"id": group["id"], "stream_id": "radio"})
    server.clients = clients  # type: ignore[attr-defined]
    yield server
    for client in clients:
        client.stop()
    server.stop()


@pytest.fixture
def party_mpd(tmp_path: Path, snapserver: SnapServer) -> Iterator[MpdServer]:
    """The MPD that writes into snapserver's `party` pipe."""
    server = MpdServer(tmp_path / "party-mpd", output=fifo_output(snapserver.party_pipe)).start()
    yield server
    server.stop()


@pytest.fixture
def tracks(tmp_path: Path) -> Callable[..., Track]:
    """Make a Track backed by a real FLAC file: tracks("id", seconds=3)."""

    def make(song_id: str, seconds: float = 3.0) -> Track:
        path = write_flac(tmp_path / "library" / f"song-{song_id}.flac", seconds)
        return Track(song_id=song_id, path=path, title=f"Song {song_id}", duration_s=seconds)

    return make
