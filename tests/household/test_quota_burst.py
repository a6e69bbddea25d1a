"""Quotas stay exact when a household's requests all arrive at once.

The quota is charged in the transaction that queues the job, not under a per-user lock, so
a burst from many members is admitted together; these tests check that nobody gets a song
more than their quota, however the requests interleave, and that a request delivered
several times at once (a QoS 1 redelivery racing its first copy) is one job, charged once.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.probe import MqttProbe

BURST = """
[household]
enabled = true
trusted_user_field = true
unknown_user_role = "family"
rate_burst = 1000

[household.quotas.family]
songs = 5
per_hours = 24

[generation]
max_pending = 1000
"""


def _burst(probe: MqttProbe, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Publish every request before reading any reply; the replies in request order."""
    topic = f"replies/{uuid.uuid4().hex[:8]}"
    correlations = [uuid.uuid4().bytes for _ in requests]
    for payload, correlation in zip(requests, correlations, strict=True):
        probe.publish("song/create", payload, response=topic, correlation=correlation)
    probe.wait(lambda m: len(probe.on(topic)) >= len(requests), timeout=60)
    by_correlation = {m.correlation: m.json() for m in probe.on(topic)}
    return [by_correlation[c] for c in correlations]


def test_a_burst_from_several_members_takes_exactly_each_quota(
        daemon_factory: Callable[..., Any], probe: MqttProbe) -> None:
    daemon = daemon_factory(BURST).start()
    probe.wait_online()
    members = ["anna", "bob", "carl"]
    requests = [{"prompt": f"burst {i}", "user": members[i % 3], "request_id": f"b-{i}",
                 "duration_s": 10} for i in range(60)]
    # Dad's QoS 1 redelivery: the same request_id four times, interleaved with the rest.
    for at in (5, 17, 33, 51):
        requests.insert(at, {"prompt": "again", "user": "dad", "request_id": "dad-1",
                             "duration_s": 10})
    replies = _burst(probe, requests)

    outcome: Counter[tuple[str, str]] = Counter()
    for request, reply in zip(requests, replies, strict=True):
        outcome[(request["user"], "ok" if reply["ok"] else reply["error"]["code"])] += 1
    for member in members:
        assert outcome[(member, "ok")] == 5 and outcome[(member, "quota_exceeded")] == 15, outcome
    dads = [reply for request, reply in zip(requests, replies, strict=True)
            if request["user"] == "dad"]
    assert all(reply["ok"] for reply in dads) and len({r["job_id"] for r in dads}) == 1, dads
    assert sum(1 for reply in dads if not reply.get("duplicate")) == 1, dads
    # Each accepted reply said the standing after it: 1..5 used, each number once.
    for member in members:
        used = sorted(reply["quota"]["used"] for request, reply in zip(requests, replies,
                      strict=True) if request["user"] == member and reply["ok"])
        assert used == [1, 2, 3, 4, 5], (member, used)

    with sqlite3.connect(daemon.state_dir / "cassetted.db") as db:
        rows = dict(db.execute("SELECT user, count(*) FROM job GROUP BY user").fetchall())
    assert rows == {"anna": 5, "bob": 5, "carl": 5, "dad": 1}, rows
    assert probe.command("user/quota", {"user": "dad"})["quota"]["used"] == 1
