"""Growth benchmark: does a request cost the same with 100 or 10,000 songs, an empty queue or
10,000 jobs waiting, one active job or thousands - and how far is it from the floor?

0. `song/create` one at a time (p50, p99) and in bursts of 1,000 and 8,000, next to a
   minimal aiomqtt responder on the same broker (subscribe, parse JSON, reply): the floor
   for a Python MQTT service, measured in the same run; then with the household on (ten
   members named in the payload, quotas counted).
Run on demand (never part of the tests):  .venv/bin/python benchmarks/bench_growth.py
Starts its own Mosquitto (`mosquitto` on the PATH; `--port` uses another broker). Prints
figures; the README quotes them.

1. `library/query` through a running daemon, request -> reply p50, with 100 / 1,000 /
   10,000 songs (10 % of them voted on), for the first page of `newest`, `top_voted`, a
   genre filter and a text search; next to the same page read by a hand-written SQL query on
   the same file (the floor), so a regression shows as a ratio to the smallest library.
2. The queue, in process on the store's own functions: the cost of admitting one request
   and of taking the next job with 0 / 1,000 / 10,000 jobs queued, and the time to drain a
   queue of 1,000 and of 10,000 (linear: 10,000 takes ten times as long, not a hundred).
3. The Home Assistant bridge, in process: the cost of one job event with 1 / 1,000 / 10,000
   jobs active.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cassetted.contract.schemas import GENRES, MOODS
from tests.fixtures.services import free_port, pg_schema, start_mosquitto, stop_process

WORDS = ["rain", "river", "night", "summer", "window", "coffee", "train", "city", "ocean",
         "garden", "winter", "light", "dance", "road", "fire", "morning", "star", "paper",
         "letter", "mountain"]


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# ------------------------------------------------------------------------------ the library


def seed_library(state: Path, songs: int) -> None:
    """A state folder whose database holds `songs` songs, as the daemon's schema has it."""
    from cassetted.store.database import Song, Vote, database, open_database

    rng = random.Random(songs)
    open_database(None, state)
    now = time.time()
    rows = []
    for i in range(songs):
        words = " ".join(rng.choice(WORDS) for _ in range(6))
        rows.append(dict(
            id=uuid.uuid4().hex[:32], title=f"Song {i} {rng.choice(WORDS)}", prompt=words,
            lyrics=(words + "\n") * 8, style="", genre=rng.choice(GENRES),
            mood=rng.choice(MOODS), bpm=rng.randint(60, 160), key="C major",
            time_signature="4/4", duration_s=120.0, language="en", instrumental=False,
            seed=rng.randint(0, 2**31), child_safe=False, room=None,
            user=f"user{rng.randint(0, 9)}", engine="builtin", lyrics_provider="builtin",
            file=f"song-{i}.flac", format="flac", shared=rng.random() > 0.1,
            url_token=uuid.uuid4().hex, created_at=now - songs + i))
    with database.atomic():
        for start in range(0, len(rows), 500):
            Song.insert_many(rows[start:start + 500]).execute()
        votes = [dict(song=row["id"], user=f"user{rng.randint(0, 9)}", value=rng.choice((1, -1)),
                      created_at=now) for row in rng.sample(rows, songs // 10)]
        for start in range(0, len(votes), 500):
            Vote.insert_many(votes[start:start + 500]).on_conflict_ignore().execute()
    database.close()


class Probe:
    """A paho MQTT v5 client that sends a command and waits for its reply."""

    def __init__(self, port: int, base: str) -> None:
        import paho.mqtt.client as mqtt

        self.base = base
        self.replies: dict[bytes, tuple[float, bytes]] = {}
        self.online = threading.Event()
        self.arrived = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()
        self.client.subscribe([(f"{base}/status", 1), (f"{base}/bench-reply", 1)])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic.endswith("/status"):
            if msg.payload == b"online":
                self.online.set()
            return
        with self.arrived:
            self.replies[msg.properties.CorrelationData] = (time.perf_counter(), msg.payload)
            self.arrived.notify_all()

    def command(self, relative: str, payload: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{self.base}/bench-reply"
        props.CorrelationData = corr = uuid.uuid4().bytes
        t0 = time.perf_counter()
        self.client.publish(f"{self.base}/{relative}", json.dumps(payload), qos=1,
                            properties=props)
        with self.arrived:
            if not self.arrived.wait_for(lambda: corr in self.replies, 30):
                raise SystemExit(f"no reply to {relative}")
            at, body = self.replies.pop(corr)
        return at - t0, json.loads(body)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


QUERIES: dict[str, dict[str, Any]] = {
    "newest": {},
    "top_voted": {"sort": "top_voted"},
    "genre=jazz": {"genre": "jazz"},
    "text=garden": {"text": "garden"},
}


def floor_query(db_file: Path) -> list[float]:
    """The first `newest` page read by hand with sqlite3: the least a query can cost."""
    with sqlite3.connect(db_file) as db:
        sql = ("SELECT id, title, genre, mood, created_at FROM song WHERE shared = 1 "
               "ORDER BY created_at DESC LIMIT 20")
        db.execute(sql).fetchall()
        return timed(lambda: db.execute(sql).fetchall(), 200)


def library_growth(port: int, sizes: list[int], repeat: int) -> None:
    print(f"\nlibrary/query, request -> reply p50 (ms), {repeat} queries each; "
          "floor: the newest page read by hand with sqlite3")
    header = f"{'songs':>7} " + " ".join(f"{name:>12}" for name in QUERIES) + f" {'floor':>8}"
    print(header)
    first: dict[str, float] = {}
    for size in sizes:
        state = Path(tempfile.mkdtemp(prefix=f"cassetted-growth-{size}-"))
        seed_library(state, size)
        base = f"bench/{uuid.uuid4().hex[:8]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASSETTED_")}
        env.update(CASSETTED_STATE_DIR=str(state), CASSETTED_MQTT__BASE_TOPIC=base,
                   CASSETTED_MQTT__PORT=str(port), CASSETTED_MQTT__CLIENT_ID=f"bench-{base[6:]}",
                   CASSETTED_LOG__LEVEL="WARNING")
        probe = Probe(port, base)
        daemon = subprocess.Popen([sys.executable, "-m", "cassetted", "run"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        row = {}
        try:
            if not probe.online.wait(60):
                raise SystemExit("daemon did not come online")
            time.sleep(1.0)
            for name, query in QUERIES.items():
                probe.command("library/query", query)  # warm
                samples = []
                for _ in range(repeat):
                    took, reply = probe.command("library/query", query)
                    if not reply.get("ok"):
                        raise SystemExit(f"library/query {query}: {reply}")
                    samples.append(took)
                row[name] = median_ms(samples)
        finally:
            daemon.terminate()
            daemon.wait(60)
            probe.close()
        row["floor"] = median_ms(floor_query(state / "cassetted.db"))
        first = first or row
        print(f"{size:>7} " + " ".join(f"{row[name]:>12.2f}" for name in QUERIES)
              + f" {row['floor']:>8.3f}")
        if size != sizes[0]:
            print(f"{'ratio':>7} " + " ".join(f"{row[n] / first[n]:>11.2f}x" for n in QUERIES)
                  + f" {row['floor'] / first['floor']:>7.2f}x")


# ------------------------------------------------------------------- requests vs the floor

FLOOR_RESPONDER = """
import asyncio, json, socket, sys
import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

async def main(port, base):
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        client._client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await client.subscribe(base + "/song/create", qos=1)
        await client.publish(base + "/status", b"online", qos=1)
        async for message in client.messages:
            request = json.loads(message.payload)
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = message.properties.CorrelationData
            await client.publish(message.properties.ResponseTopic, json.dumps(
                {"ok": True, "request_id": request.get("request_id"), "state": "queued"}),
                qos=1, properties=props)

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"""


def serve(port: int, floor: bool, household: bool,
          database_url: str | None = None) -> tuple[subprocess.Popen[bytes], Probe, str]:
    """The daemon (or the floor responder) on a fresh state folder, and a probe online."""
    base = f"bench/{uuid.uuid4().hex[:8]}"
    state = Path(tempfile.mkdtemp(prefix="cassetted-burst-"))
    probe = Probe(port, base)
    if floor:
        proc = subprocess.Popen([sys.executable, "-c", FLOOR_RESPONDER, str(port), base])
    else:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASSETTED_")}
        env.update(CASSETTED_STATE_DIR=str(state), CASSETTED_MQTT__BASE_TOPIC=base,
                   CASSETTED_MQTT__PORT=str(port), CASSETTED_MQTT__CLIENT_ID=f"bench-{base[6:]}",
                   CASSETTED_GENERATION__DEFAULT_DURATION_S="10",
                   CASSETTED_GENERATION__MAX_PENDING="100000", CASSETTED_LOG__LEVEL="WARNING")
        if database_url:
            env["CASSETTED_STORAGE__DATABASE_URL"] = database_url
        if household:
            env.update(CASSETTED_HOUSEHOLD__ENABLED="true",
                       CASSETTED_HOUSEHOLD__TRUSTED_USER_FIELD="true",
                       CASSETTED_HOUSEHOLD__UNKNOWN_USER_ROLE="family",
                       CASSETTED_HOUSEHOLD__RATE_BURST="100000",
                       CASSETTED_HOUSEHOLD__QUOTAS='{"family": {"songs": 100000}}')
        proc = subprocess.Popen([sys.executable, "-m", "cassetted", "run"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not probe.online.wait(60):
        raise SystemExit("no online status")
    time.sleep(1.0)
    return proc, probe, base


def burst(probe: Probe, count: int, tag: str) -> float:
    """`count` song requests published at once; replies per second until the last."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    correlations = []
    t0 = time.perf_counter()
    for i in range(count):
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{probe.base}/bench-reply"
        props.CorrelationData = corr = uuid.uuid4().bytes
        correlations.append(corr)
        probe.client.publish(f"{probe.base}/song/create", json.dumps(
            {"prompt": f"burst {i}", "request_id": f"{tag}-{i}", "user": f"user{i % 10}",
             "duration_s": 10}), qos=1, properties=props)
    with probe.arrived:
        if not probe.arrived.wait_for(lambda: all(c in probe.replies for c in correlations),
                                      300):
            raise SystemExit(f"only {sum(c in probe.replies for c in correlations)} replies")
        last = max(probe.replies[c][0] for c in correlations)
        for c in correlations:
            probe.replies.pop(c)
    return count / (last - t0)


def requests_vs_floor(port: int, bursts: list[int], single: int, postgres: str | None) -> None:
    print(f"\nsong/create against a minimal aiomqtt responder (the floor), same broker: "
          f"{single} one at a time, then bursts of {', '.join(map(str, bursts))}")
    print(f"{'':>16} {'p50 (ms)':>9} {'p99 (ms)':>9} "
          + " ".join(f"{'burst ' + str(b) + ' rps':>16}" for b in bursts))
    floor_row: dict[str, float] = {}
    runs: list[tuple[str, bool, bool, str | None]] = [
        ("floor", True, False, None), ("cassetted", False, False, None),
        ("household on", False, True, None)]
    if postgres:
        runs.append(("PostgreSQL", False, False, postgres))
    for name, floor, household, database in runs:
        with contextlib.ExitStack() as schema:  # a fresh PostgreSQL schema, dropped after
            url = schema.enter_context(pg_schema(database)) if database else None
            proc, probe, _ = serve(port, floor, household, url)
            try:
                samples = [probe.command("song/create", {"prompt": f"one {i}", "duration_s": 10,
                                                         "request_id": f"one-{i}",
                                                         "user": f"user{i % 10}"})[0]
                           for i in range(single)]
                row = {"p50": median_ms(samples),
                       "p99": sorted(samples)[int(0.99 * (len(samples) - 1))] * 1000}
                for size in bursts:
                    row[f"b{size}"] = burst(probe, size, f"b{size}")
            finally:
                proc.terminate()
                proc.wait(60)
                probe.close()
        floor_row = floor_row or row
        print(f"{name:>16} {row['p50']:>9.2f} {row['p99']:>9.2f} "
              + " ".join(f"{row[f'b{b}']:>16.0f}" for b in bursts))
        if not floor:
            print(f"{'x floor':>16} {row['p50'] / floor_row['p50']:>8.2f}x "
                  f"{row['p99'] / floor_row['p99']:>8.2f}x "
                  + " ".join(f"{row[f'b{b}'] / floor_row[f'b{b}']:>15.2f}x" for b in bursts))


# -------------------------------------------------------------------------------- the queue


def queue_growth(sizes: list[int], drains: list[int]) -> None:
    from cassetted.config import Settings
    from cassetted.contract.schemas import JobState, SongRequest
    from cassetted.jobs import runner
    from cassetted.store.database import Job, database, open_database

    print("\nthe queue, in process (SQLite): per operation with K jobs queued")
    print(f"{'queued':>7} {'admit one (ms)':>15} {'take next (ms)':>15}")
    max_pending = Settings().generation.max_pending * 100
    request = SongRequest(prompt="growth", duration_s=10)
    for size in sizes:
        state = Path(tempfile.mkdtemp(prefix=f"cassetted-queue-{size}-"))
        open_database(None, state)
        _fill_queue(size)
        admit = timed(lambda: runner._insert_batch([request], max_pending), 50)
        take = []
        for _ in range(50):
            t0 = time.perf_counter()
            job = runner._claim_next()
            take.append(time.perf_counter() - t0)
            assert job is not None
            Job.update(state=JobState.done.value).where(Job.id == job.id).execute()
        database.close()
        print(f"{size:>7} {median_ms(admit):>15.3f} {median_ms(take):>15.3f}")
    first: float | None = None
    for size in drains:
        state = Path(tempfile.mkdtemp(prefix=f"cassetted-drain-{size}-"))
        open_database(None, state)
        _fill_queue(size)
        t0 = time.perf_counter()
        while (job := runner._claim_next()) is not None:
            Job.update(state=JobState.done.value).where(Job.id == job.id).execute()
        took = time.perf_counter() - t0
        database.close()
        first = first or took / size
        print(f"drain {size:>6} queued jobs: {took:.2f} s ({took / size * 1e6:.0f} us a job, "
              f"{took / size / first:.2f}x the smallest per job)")


def _fill_queue(size: int) -> None:
    from cassetted.contract.schemas import JobState
    from cassetted.store.database import Job, database

    now = time.time()
    rows = [dict(id=uuid.uuid4().hex, request=json.dumps({"prompt": "x"}),
                 state=JobState.queued.value, created_at=now - size + i, updated_at=now)
            for i in range(size)]
    with database.atomic():
        for start in range(0, len(rows), 500):
            Job.insert_many(rows[start:start + 500]).execute()


# ------------------------------------------------------------------------- the HA bridge


def bridge_growth(sizes: list[int]) -> None:
    from cassetted.config import Settings
    from cassetted.contract.schemas import JobEvent, JobState
    from cassetted.events import EventBus
    from cassetted.homeassistant.bridge import HomeAssistantBridge

    print("\nthe Home Assistant bridge, in process: one job event with N jobs active")
    print(f"{'active':>7} {'per event (us)':>15}")
    first = None
    for size in sizes:
        bridge = HomeAssistantBridge(Settings(), lambda *a, **k: None, EventBus(),
                                     submit=_never, vote=_never, room_command=_never,
                                     party_command=_never)
        now = time.time()
        for i in range(size):
            bridge.job_changed(JobEvent(job_id=f"j{i}", state=JobState.queued, progress=0.0,
                                        ts=now + i * 1e-6))
        event = JobEvent(job_id="j0", state=JobState.composing, progress=0.5, ts=now + 1)
        samples = timed(lambda b=bridge, e=event: b.job_changed(e), 500)
        per = statistics.median(samples) * 1e6
        first = first or per
        print(f"{size:>7} {per:>15.1f}  ({per / first:.2f}x)")


async def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("not called in the benchmark")


def private_broker() -> tuple[subprocess.Popen[bytes], int]:
    """A Mosquitto of our own with `set_tcp_nodelay true`: with the default (Nagle) every
    reply waits for the client's delayed ACK (~40 ms) and hides what the daemon costs. A
    burst of 8,000 is queued for the daemon, not dropped."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="cassetted-growth-broker-"))
    return start_mosquitto(port, workdir, extra="set_tcp_nodelay true\n"
                                                "max_queued_messages 100000\n"), port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0,
                        help="an existing broker's port (default: start a private Mosquitto "
                             "with set_tcp_nodelay true)")
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--skip-library", action="store_true")
    parser.add_argument("--skip-requests", action="store_true")
    parser.add_argument("--bursts", default="1000,8000")
    parser.add_argument("--single", type=int, default=200)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="a PostgreSQL database for the same requests ('' to skip)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    broker, port = private_broker() if not args.port else (None, args.port)
    try:
        if not args.skip_requests:
            requests_vs_floor(port, [int(b) for b in args.bursts.split(",")], args.single,
                              args.postgres or None)
        if not args.skip_library:
            library_growth(port, sizes, args.repeat)
    finally:
        if broker is not None:
            stop_process(broker)
    queue_growth([0, *sizes[1:]], sizes[1:])
    bridge_growth([1, *sizes[1:]])


if __name__ == "__main__":
    main()
