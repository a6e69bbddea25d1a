"""The crash suite: kill -9 the daemon at random moments of a burst, count every request.

A household's automation fires a burst of song requests (QoS 1, each with a request_id),
and the daemon is killed with SIGKILL at a seeded random moment: before it could answer,
while the first song renders, while it encodes. After each restart the broker redelivers
whatever was never acknowledged (the daemon acks a command only once its job row is
committed). At the end, on SQLite and on PostgreSQL alike:

* none lost    — every request_id sent has its job, and every job finished `done`;
* none doubled — one job per request_id, one song row per job, a resent request_id is
                 answered `duplicate` with the same job;
* no orphan    — the library holds exactly the files the song rows name (with their .lrc
                 sidecars), no partial file and nothing left in `.incoming/`.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.probe import MqttProbe

# (round, requests in the burst, seconds of the first song: long enough to be caught rendering)
ROUNDS = [("before_reply", 25, 10), ("mid_render", 8, 150), ("mid_encode", 8, 150)]


def _rows(query: str, backend: str, state_dir: Path, pg_url: str | None) -> list[tuple[Any, ...]]:
    if backend == "sqlite":
        with sqlite3.connect(state_dir / "cassetted.db") as db:
            return db.execute(query).fetchall()
    import psycopg2

    base, options = pg_url.split("?options=")  # type: ignore[union-attr]
    with psycopg2.connect(base, options=options.replace("%3D", "=")) as conn, \
            conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()


def _burst(probe: MqttProbe, ids: list[str], first_duration: float) -> None:
    """Publish every request at once; return when the broker has them all (PUBACK)."""
    infos = []
    for i, request_id in enumerate(ids):
        payload = {"prompt": f"crash test {request_id}", "duration_s": first_duration if i == 0
                   else 10, "request_id": request_id, "instrumental": i % 2 == 0,
                   "reply_to": f"{probe.base}/crash-replies"}
        infos.append(probe.client.publish(f"{probe.base}/song/create", json.dumps(payload),
                                          qos=1))
    for info in infos:
        info.wait_for_publish(10)


def _wait_after(probe: MqttProbe, start: int, predicate: Callable[[Any], bool],
                timeout: float = 60) -> None:
    """A matching message among those received after index `start`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(predicate(m) for m in probe.messages[start:]):
            return
        time.sleep(0.005)
    raise TimeoutError("no matching message")


def _job_state(probe: MqttProbe, request_id: str, states: tuple[str, ...]) -> Callable[[Any], bool]:
    def matches(message: Any) -> bool:
        if not message.topic.startswith(f"{probe.base}/job/"):
            return False
        event = message.json()
        return event.get("request_id") == request_id and event.get("state") in states
    return matches


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill9_at_random_moments_of_bursts_loses_nothing(
        backend: str, daemon_factory, probe: MqttProbe, request: pytest.FixtureRequest) -> None:
    rng = random.Random(f"crash-{backend}")
    pg_url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    env = {"CASSETTED_GENERATION__SAMPLE_RATE": "22050"}
    if pg_url:
        env["CASSETTED_STORAGE__DATABASE_URL"] = pg_url
    daemon = daemon_factory(**env)
    online = lambda m: m.topic == f"{probe.base}/status" and m.payload == b"online"  # noqa: E731

    sent: list[str] = []
    for name, count, first_duration in ROUNDS:
        start = len(probe.messages)
        daemon.start()
        _wait_after(probe, start, online)
        ids = [f"{backend}-{name}-{i}" for i in range(count)]
        sent += ids
        _burst(probe, ids, first_duration)
        if name == "before_reply":
            time.sleep(rng.uniform(0.0, 0.03))  # the window: 15 ms after the burst
        elif name == "mid_render":
            _wait_after(probe, start, _job_state(probe, ids[0], ("composing",)))
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            _wait_after(probe, start, _job_state(probe, ids[0], ("encoding",)))
            time.sleep(rng.uniform(0.0, 0.05))
        daemon.kill()

    start = len(probe.messages)
    daemon.start()  # the last restart drains the queue
    _wait_after(probe, start, online)
    quoted = ", ".join(f"'{request_id}'" for request_id in sent)
    deadline = time.monotonic() + 90
    while True:
        jobs = _rows(f"SELECT request_id, state, song_id FROM job WHERE request_id IN ({quoted})",
                     backend, daemon.state_dir, pg_url)
        if len(jobs) == len(sent) and all(state == "done" for _, state, _ in jobs):
            break
        assert time.monotonic() < deadline, sorted(jobs)
        time.sleep(0.25)

    # None lost, none doubled: one job per request_id, one song per job, nothing else.
    assert sorted(request_id for request_id, _, _ in jobs) == sorted(sent)
    songs = _rows("SELECT id, file, variant_of FROM song", backend, daemon.state_dir, pg_url)
    assert sorted(song_id for _, _, song_id in jobs) == sorted(song_id for song_id, _, _ in songs)
    assert len(songs) == len(sent) and all(variant is None for _, _, variant in songs)

    # No orphan: the library is exactly what the rows name (plus sidecars of sung songs).
    library = daemon.state_dir / "library"
    on_disk = {p.relative_to(library).as_posix() for p in library.rglob("*") if p.is_file()}
    audio = {name for name in on_disk if not name.endswith(".lrc")}
    assert audio == {file for _, file, _ in songs}
    assert all(Path(name).with_suffix(".flac").as_posix() in audio
               for name in on_disk if name.endswith(".lrc"))
    assert not [p for p in (library / ".incoming").rglob("*") if p.is_file()]

    # A resent request_id (a lost reply, an automation's retry) is the same job.
    reply_index = len(probe.messages)
    for request_id in rng.sample(sent, 6):
        reply = probe.command("song/create", {"duration_s": 10, "request_id": request_id})
        assert reply["ok"] and reply["duplicate"] is True and reply["state"] == "done", reply
    assert daemon.proc.poll() is None and reply_index < len(probe.messages)
    assert "Traceback" not in daemon.log()
