"""A deleted or corrupt database is never silently replaced: the daemon refuses to start
with one line that names the file and the way out, and `run --rebuild-library` re-indexes
the library's files from their tags."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.probe import MqttProbe


def _run_once(daemon, *extra: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "cassetted", "run", "--config",
                           str(daemon.config), *extra], env=daemon.env, capture_output=True,
                          text=True, timeout=60, check=False)


def _make_songs(daemon, probe: MqttProbe) -> list[dict]:  # type: ignore[no-untyped-def]
    daemon.start()
    probe.wait_online()
    made = []
    for request in ({"prompt": "a song about the sea", "genre": "jazz", "mood": "relaxing",
                     "bpm": 92, "key": "D minor", "duration_s": 10, "request_id": "loss-1"},
                    {"prompt": "an instrumental", "genre": "rock", "duration_s": 10,
                     "instrumental": True, "request_id": "loss-2"}):
        reply = probe.command("song/create", request)
        made.append(probe.wait_job(reply["job_id"]))
    assert all(job["state"] == "done" for job in made)
    page = probe.command("library/query", {})
    assert daemon.stop() == 0
    return page["songs"]


def _online_after(probe: MqttProbe, start: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not any(m.topic == f"{probe.base}/status" and m.payload == b"online"
                  for m in probe.messages[start:]):
        assert time.monotonic() < deadline, "the daemon did not come online"
        time.sleep(0.05)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 78, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("cassetted:")]
    assert len(ours) == 1, result.stderr
    return ours[0]


def test_deleted_database_refused_then_rebuilt_from_tags(daemon_factory, probe: MqttProbe) -> None:
    daemon = daemon_factory(CASSETTED_GENERATION__SAMPLE_RATE="22050")
    songs = _make_songs(daemon, probe)
    library = daemon.state_dir / "library"
    (library / "holiday recording.flac").write_bytes(b"not ours")  # neither counted nor indexed
    files = sorted(p.name for p in library.iterdir() if p.is_file())
    for name in ("cassetted.db", "cassetted.db-wal", "cassetted.db-shm"):
        (daemon.state_dir / name).unlink(missing_ok=True)

    line = _one_line(_run_once(daemon))
    assert str(daemon.state_dir / "cassetted.db") in line and "is empty" in line
    assert "2 song file(s)" in line and "--rebuild-library" in line
    assert not (daemon.state_dir / "cassetted.db").exists() or \
        (daemon.state_dir / "cassetted.db").stat().st_size == 0
    assert sorted(p.name for p in library.iterdir() if p.is_file()) == files  # untouched

    daemon.start("--rebuild-library")
    start = len(probe.messages)
    _online_after(probe, start)
    page = probe.command("library/query", {})
    assert page["total"] == 2
    before = {song["id"]: song for song in songs}
    for song in page["songs"]:
        original = before[song["id"]]  # the same ids: they are in the file names
        for key in ("title", "genre", "bpm", "key", "lyrics", "prompt", "file", "instrumental"):
            assert song[key] == original[key], (key, song[key], original[key])
        assert abs(song["duration_s"] - original["duration_s"]) < 0.1
    assert "library re-indexed: 2 song(s) added" in daemon.log()
    after = probe.command("song/create", {"duration_s": 10, "request_id": "loss-3"})
    assert probe.wait_job(after["job_id"])["state"] == "done"
    assert daemon.stop() == 0
    # From now on the database is no longer empty: a plain start works.
    start = len(probe.messages)
    daemon.start()
    _online_after(probe, start)
    assert probe.command("library/query", {})["total"] == 3


def test_corrupt_database_exits_with_one_line(daemon_factory, probe: MqttProbe) -> None:
    daemon = daemon_factory(CASSETTED_GENERATION__SAMPLE_RATE="22050")
    _make_songs(daemon, probe)
    db = daemon.state_dir / "cassetted.db"
    (daemon.state_dir / "cassetted.db-wal").unlink(missing_ok=True)
    (daemon.state_dir / "cassetted.db-shm").unlink(missing_ok=True)
    data = bytearray(db.read_bytes())
    data[:100] = b"\x13" * 100  # the header: what a bad sector or a half-copied file leaves
    db.write_bytes(bytes(data))
    line = _one_line(_run_once(daemon))
    assert str(db) in line and "corrupt" in line
    assert "backup" in line and "--rebuild-library" in line


def test_empty_state_directory_starts_as_before(daemon_factory, probe: MqttProbe) -> None:
    """A first start (no library files yet) creates the database as it always did."""
    daemon = daemon_factory().start()
    probe.wait_online()
    assert daemon.proc.poll() is None
    assert (daemon.state_dir / "cassetted.db").exists()


def test_empty_is_told_apart_on_postgresql_too(pg_url: str, tmp_path: Path) -> None:
    from cassetted.store import database as store

    assert store.is_empty(pg_url, tmp_path) is True  # a fresh schema: nothing in it
    store.open_database(pg_url, tmp_path).close()
    assert store.is_empty(pg_url, tmp_path) is False
    assert store.is_empty(None, tmp_path) is True  # and no SQLite file was made meanwhile


def test_unreachable_postgresql_is_one_line_without_the_password(tmp_path: Path) -> None:
    from cassetted.store import database as store

    url = "postgresql://cassetted:s3cret-pw@127.0.0.1:1/nowhere"
    try:
        store.open_database(url, tmp_path)
    except store.StoreError as error:
        text = str(error)
    else:
        raise AssertionError("opened a database on port 1")
    assert "\n" not in text and "s3cret-pw" not in text
    assert text.startswith("cannot open the database postgresql://127.0.0.1:1/nowhere")
