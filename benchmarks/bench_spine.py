"""Spine benchmark: start -> online, idle RSS, and 1,000 requests published at once.

Run on demand (never part of the tests):  .venv/bin/python benchmarks/bench_spine.py
Needs a broker on 127.0.0.1:1883. Prints figures; the README quotes them with the machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--single", type=int, default=100, help="sequential requests first")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--household", action="store_true",
                        help="[household] on: every request identified, room-checked and "
                             "counted against a quota (ten users, room living_room)")
    args = parser.parse_args()

    base = f"bench/{uuid.uuid4().hex[:8]}"
    state = Path(tempfile.mkdtemp(prefix="cassetted-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASSETTED_")}
    env.update(CASSETTED_STATE_DIR=str(state), CASSETTED_MQTT__BASE_TOPIC=base,
               CASSETTED_MQTT__PORT=str(args.port), CASSETTED_MQTT__CLIENT_ID=f"bench-{base[6:]}",
               CASSETTED_GENERATION__DEFAULT_DURATION_S="10",
               CASSETTED_GENERATION__MAX_PENDING=str(args.requests * 2),
               CASSETTED_LOG__LEVEL="WARNING")
    extra: dict[str, object] = {}
    if args.household:
        # Ten members named in the payload, as a household whose broker ACL pins who may
        # publish (trusted_user_field); each stays within its per-sender rate allowance.
        env.update(CASSETTED_HOUSEHOLD__ENABLED="true",
                   CASSETTED_HOUSEHOLD__TRUSTED_USER_FIELD="true",
                   CASSETTED_HOUSEHOLD__UNKNOWN_USER_ROLE="family",
                   CASSETTED_HOUSEHOLD__QUOTAS='{"family": {"songs": 100000}}',
                   CASSETTED_ROOMS='{"living_room": {"name": "Living Room"}}')
        extra = {"room": "living_room"}

    replies: dict[bytes, float] = {}
    online = threading.Event()
    done = threading.Event()
    single_phase = threading.Event()
    arrived = threading.Event()
    lock = threading.Lock()
    job_ids: list[str] = []
    refused: collections.Counter[str] = collections.Counter()

    def on_message(client, userdata, msg):
        if msg.topic == f"{base}/status":
            if msg.payload == b"online":
                online.set()
            return
        now = time.perf_counter()
        data = json.loads(msg.payload)
        with lock:
            replies[msg.properties.CorrelationData] = now
            arrived.set()
            if data.get("ok"):
                job_ids.append(data["job_id"])
            else:
                refused[data.get("error", {}).get("code", "?")] += 1
            if len(replies) >= args.requests and not single_phase.is_set():
                done.set()

    probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    probe.on_message = on_message
    probe.connect("127.0.0.1", args.port)
    # Like the daemon: no Nagle delay on small packets (paho does not set it itself).
    probe.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    probe.loop_start()
    probe.subscribe([(f"{base}/status", 1), (f"{base}/bench-reply", 1)])
    time.sleep(0.3)

    started = time.perf_counter()
    daemon = subprocess.Popen([sys.executable, "-m", "cassetted", "run"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not online.wait(60):
            raise SystemExit("daemon did not come online")
        start_to_online = time.perf_counter() - started
        time.sleep(2.0)
        idle_rss = rss_mib(daemon.pid)

        # One request at a time on an idle daemon: the latency a single user sees.
        single: list[float] = []
        single_phase.set()
        for i in range(args.single):
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = f"{base}/bench-reply"
            props.CorrelationData = corr = uuid.uuid4().bytes
            arrived.clear()
            start = time.perf_counter()
            probe.publish(f"{base}/song/create",
                          json.dumps({"prompt": f"single {i}", "request_id": f"single-{i}",
                                      "user": f"user{i % 10}", **extra}),
                          qos=1, properties=props)
            while corr not in replies:
                arrived.wait(5)
                arrived.clear()
            single.append((replies.pop(corr) - start) * 1000)
        with lock:
            job_ids.clear()
            replies.clear()
        single_phase.clear()

        sent: dict[bytes, float] = {}
        t0 = time.perf_counter()
        for i in range(args.requests):
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = f"{base}/bench-reply"
            props.CorrelationData = corr = uuid.uuid4().bytes
            sent[corr] = time.perf_counter()
            probe.publish(f"{base}/song/create",
                          json.dumps({"prompt": f"song {i}", "request_id": f"bench-{i}",
                                      "user": f"user{i % 10}", **extra}),
                          qos=1, properties=props)
        publish_s = time.perf_counter() - t0
        if not done.wait(120):
            raise SystemExit(f"only {len(replies)} replies of {args.requests}")
        latencies = [(replies[c] - sent[c]) * 1000 for c in sent if c in replies]
        total_s = max(replies.values()) - t0
    finally:
        daemon.terminate()
        daemon.wait(60)
        probe.loop_stop()

    with sqlite3.connect(state / "cassetted.db") as db:
        jobs = db.execute("SELECT count(*), count(DISTINCT request_id) FROM job").fetchone()

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"start -> online: {start_to_online * 1000:.0f} ms")
    print(f"idle RSS: {idle_rss:.1f} MiB")
    print(f"one request at a time ({args.single}): request -> queued reply "
          f"p50 {statistics.median(single):.1f} ms, p99 {percentile(single, 0.99):.1f} ms")
    print(f"{args.requests} requests published in {publish_s * 1000:.0f} ms; "
          f"all answered after {total_s * 1000:.0f} ms "
          f"({args.requests / total_s:.0f} requests/s)")
    print(f"request -> queued reply latency: p50 {statistics.median(latencies):.1f} ms, "
          f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms")
    print(f"replies: {len(replies)}, distinct job ids: {len(set(job_ids))}, "
          f"job rows: {jobs[0]} ({jobs[1]} distinct request ids, {args.single} of them "
          f"from the sequential phase)")
    if refused:
        print(f"refused: {dict(refused)}")
    ok = len(set(job_ids)) == args.requests and jobs[0] == jobs[1] == args.requests + args.single
    print("none lost or doubled" if ok else "MISMATCH: lost or doubled requests")


if __name__ == "__main__":
    main()
