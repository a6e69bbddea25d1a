"""No fault stalls production: a full disk, a killed worker, a failure that is the system's.

Each test breaks the real thing under a real daemon: the state directory on a small tmpfs
that a test fills while a song renders (needs root for `mount -t tmpfs`; skipped otherwise),
the worker process killed with SIGKILL mid-song. The request's own faults stay failed.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.probe import MqttProbe


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def _final_after(probe: MqttProbe, job_id: str, start: int, timeout: float = 120) -> dict:
    """The job's first done/failed event among the messages after index `start`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in probe.messages[start:]:
            if message.topic == f"{probe.base}/job/{job_id}" and \
                    message.json()["state"] in ("done", "failed"):
                return message.json()
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} did not end")


def _log_waits_for(daemon, text: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while text not in daemon.log():
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{daemon.log()[-3000:]}"
        time.sleep(0.1)


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 48 MiB tmpfs: the state directory (database and library) of the daemon."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path) -> Path:
    """Write until the disk says ENOSPC."""
    filler = mount / "filler.bin"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as error:
            stopped_by = error.errno
    assert stopped_by == errno.ENOSPC
    with open(filler, "ab", buffering=0) as out:  # the last partial megabyte too
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def _start_with_a_long_song(daemon, probe: MqttProbe, request_id: str) -> dict:  # type: ignore[no-untyped-def]
    """Start the daemon and ask for a 300 s song (long enough to be caught rendering)."""
    daemon.start()
    probe.wait_online()
    reply = probe.command("song/create", {"prompt": f"long {request_id}", "duration_s": 300,
                                          "instrumental": True, "request_id": request_id})
    assert reply["ok"], reply
    return reply


FAST_RETRIES = {"CASSETTED_GENERATION__SAMPLE_RATE": "22050",
                "CASSETTED_GENERATION__RETRY_MIN_S": "0.5"}


def test_full_disk_mid_song_then_freed_the_queue_drains(daemon_factory, probe: MqttProbe,
                                                        small_disk: Path) -> None:
    daemon = daemon_factory(CASSETTED_STATE_DIR=str(small_disk), **FAST_RETRIES)
    try:
        long = _start_with_a_long_song(daemon, probe, "disk-long")
        short = [probe.command("song/create", {"prompt": f"short {i}", "duration_s": 10,
                                               "request_id": f"disk-{i}"}) for i in range(3)]
        assert long["ok"] and all(reply["ok"] for reply in short)
        probe.wait_job(long["job_id"], ("composing",))
        filler = _fill(small_disk)

        # Said plainly, in the log and in the job's event, and retried.
        _log_waits_for(daemon, "no space left on the")
        # (whether the audio or the database write failed first, the event says so).
        retry = probe.wait(lambda m: m.topic == f"{probe.base}/job/{long['job_id']}"
                           and (m.json().get("error") or {}).get("code") == "disk_full"
                           and m.json().get("retry_in_s") is not None, timeout=30).json()
        assert retry["state"] == "queued" and "no space left on the" in retry["error"]["message"]
        time.sleep(2.0)  # full for a while: the queue must not die meanwhile
        filler.unlink()

        for reply in [long, *short]:
            assert probe.wait_job(reply["job_id"], ("done", "failed"), timeout=120)["state"] \
                == "done"
        after = probe.command("song/create", {"duration_s": 10, "request_id": "disk-after"})
        assert probe.wait_job(after["job_id"], ("done", "failed"))["state"] == "done"
        assert daemon.proc.poll() is None
        log = daemon.log()
        assert "LibsndfileError" not in log and "System error" not in log
        assert "ERROR" in log
        # Nothing half-written stays behind in the library.
        library = small_disk / "library"
        assert not [p for p in library.rglob("*") if p.name.endswith(".part")]
        assert not [p for p in (library / ".incoming").rglob("*") if p.is_file()]
    finally:
        daemon.stop()


def test_a_killed_worker_is_retried_and_a_resent_request_restarts_a_system_failure(
        daemon_factory, probe: MqttProbe) -> None:
    # No automatic retries here, so that the job fails for the system's fault at once.
    daemon = daemon_factory(CASSETTED_GENERATION__SAMPLE_RATE="22050",
                            CASSETTED_GENERATION__RETRIES="0").start()
    probe.wait_online()
    first = probe.command("song/create", {"prompt": "killed", "duration_s": 400,
                                          "instrumental": True, "request_id": "killed-1"})
    probe.wait_job(first["job_id"], ("composing",))
    for child in _children(daemon.proc.pid):
        os.kill(child, signal.SIGKILL)
    failed = probe.wait_job(first["job_id"], ("failed",))
    assert failed["error"]["code"] == "interrupted"

    start = len(probe.messages)
    again = probe.command("song/create", {"prompt": "killed", "duration_s": 400,
                                          "instrumental": True, "request_id": "killed-1"})
    assert again["ok"] and again["job_id"] == first["job_id"]
    assert again["retry"] is True and again["duplicate"] is False and again["state"] == "queued"
    done = _final_after(probe, first["job_id"], start)
    assert done["state"] == "done"

    # A request's own fault (a repaint the built-in engine cannot do) stays failed.
    song_id = done["song_id"]
    own = {"task": "repaint", "source_song_id": song_id, "repaint_start_s": 1,
           "repaint_end_s": 5, "request_id": "own-fault"}
    reply = probe.command("song/create", own)
    assert probe.wait_job(reply["job_id"])["state"] == "failed"
    resent = probe.command("song/create", own)
    assert resent["duplicate"] is True and resent["state"] == "failed" and "retry" not in resent


def test_a_killed_worker_is_retried_with_backoff(daemon_factory, probe: MqttProbe) -> None:
    daemon = daemon_factory(CASSETTED_GENERATION__SAMPLE_RATE="22050",
                            CASSETTED_GENERATION__RETRY_MIN_S="0.5").start()
    probe.wait_online()
    job = probe.command("song/create", {"prompt": "survives", "duration_s": 400,
                                        "instrumental": True})
    probe.wait_job(job["job_id"], ("composing",))
    for child in _children(daemon.proc.pid):
        os.kill(child, signal.SIGKILL)
    retry = probe.wait(lambda m: m.topic == f"{probe.base}/job/{job['job_id']}"
                       and m.json().get("retry_in_s") is not None).json()
    assert retry["state"] == "queued" and retry["error"]["code"] == "interrupted"
    assert retry["attempt"] == 1 and retry["retry_in_s"] == 0.5
    final = probe.wait_job(job["job_id"], ("done", "failed"), timeout=120)
    assert final["state"] == "done" and Path(final["file"]).is_file()


def test_read_only_library_mid_song_then_writable_again(daemon_factory, probe: MqttProbe,
                                                        small_disk: Path) -> None:
    # The library alone on the small disk (no file is open there while a song composes,
    # so it can be remounted read-only under the daemon); the database stays writable.
    library = small_disk / "library"
    daemon = daemon_factory(CASSETTED_STORAGE__LIBRARY_DIR=str(library), **FAST_RETRIES)
    try:
        job = _start_with_a_long_song(daemon, probe, "ro-1")
        probe.wait_job(job["job_id"], ("composing",))
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        retry = probe.wait(lambda m: m.topic == f"{probe.base}/job/{job['job_id']}"
                           and (m.json().get("error") or {}).get("code") == "storage_unavailable"
                           and m.json().get("retry_in_s") is not None, timeout=30).json()
        assert retry["error"]["message"] == f"the library disk is read-only ({library})"
        time.sleep(1.0)
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
        final = probe.wait_job(job["job_id"], ("done", "failed"), timeout=120)
        assert final["state"] == "done" and Path(final["file"]).is_file()
        assert "LibsndfileError" not in daemon.log() and daemon.proc.poll() is None
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=False)
        daemon.stop()
