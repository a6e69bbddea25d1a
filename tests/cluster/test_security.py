"""NATS logins for the cluster, with the account configuration the README ships.

The server runs `docs/nats/home.conf` itself (its listener and store replaced by the
test's): the worker user renders songs with what that file allows, and is refused what it
denies. Passwords never reach a log, not even a refused one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import WorkerProcess, cluster_toml
from tests.fixtures.services import NatsServer, wait_for
from tests.probe import MqttProbe

ROOT = Path(__file__).resolve().parents[2]
DAEMON_PASSWORD = "daemon-Pw-7f3a9c21e8b4"
WORKER_PASSWORD = "worker-Pw-0d6e5b4a3c2f"


@pytest.fixture
def home_nats(tmp_path: Path) -> Iterator[NatsServer]:
    text = (ROOT / "docs" / "nats" / "home.conf").read_text()
    text = re.sub(r"^(listen|jetstream).*$", "", text, flags=re.MULTILINE)
    text = text.replace("DAEMON_PASSWORD", DAEMON_PASSWORD).replace("WORKER_PASSWORD",
                                                                    WORKER_PASSWORD)
    (tmp_path / "nats").mkdir()
    server = NatsServer(tmp_path / "nats", config=text).start()
    yield server
    server.stop()


def _as(user: str, password: str, url: str, **values: object) -> str:
    return cluster_toml(url, user=user, password=password, **values)


async def _try(url: str, user: str, password: str) -> dict[str, bool]:
    """What this login may do beyond a worker's work (True: the server allowed it)."""
    import nats

    async def quiet(error: Exception) -> None:
        """Permission violations arrive here too; the attempts below tell the outcome."""

    nc = await nats.connect(url, user=user, password=password, error_cb=quiet)
    outcome = {}
    try:
        js = nc.jetstream()
        for what, attempt in (
                ("publish a job", lambda: js.publish("cassetted.jobs.builtin", b"{}", timeout=1)),
                ("read the results stream",
                 lambda: js.stream_info("cassetted-results")),
                ("read the dispatch records",
                 lambda: js.stream_info("KV_cassetted-dispatch"))):
            try:
                await asyncio.wait_for(attempt(), 2)
                outcome[what] = True
            except Exception:  # noqa: BLE001 - a refusal shows as no answer or an error
                outcome[what] = False
    finally:
        await nc.close()
    return outcome


def test_a_worker_login_renders_and_can_do_nothing_else(
        daemon_factory: Callable[..., Any], probe: MqttProbe, home_nats: NatsServer,
        worker_factory: Callable[..., WorkerProcess]) -> None:
    daemon = daemon_factory(_as("daemon", DAEMON_PASSWORD, home_nats.url,
                                local_workers=0)).start()
    worker = worker_factory("gpu-box", _as("worker", WORKER_PASSWORD, home_nats.url)).start()
    probe.wait_online()
    reply = probe.command("song/create", {"prompt": "locked down", "duration_s": 10})
    final = probe.wait_job(reply["job_id"], ("done", "failed"), timeout=120)
    assert final["state"] == "done" and final["worker"] == "gpu-box", (
        final, worker.log()[-3000:], home_nats.log.read_text()[-3000:])
    # The worker's login is refused the rest; the daemon's is not (so the probe can tell).
    assert asyncio.run(_try(home_nats.url, "worker", WORKER_PASSWORD)) == {
        "publish a job": False, "read the results stream": False,
        "read the dispatch records": False}
    assert all(asyncio.run(_try(home_nats.url, "daemon", DAEMON_PASSWORD)).values())
    for log in (daemon.log(), worker.log()):
        assert DAEMON_PASSWORD not in log and WORKER_PASSWORD not in log


def test_a_refused_login_is_retried_and_its_password_never_logged(
        daemon_factory: Callable[..., Any], probe: MqttProbe, home_nats: NatsServer,
        worker_factory: Callable[..., WorkerProcess]) -> None:
    wrong = "not-the-Pw-5a4b3c2d1e0f"
    daemon = daemon_factory(_as("daemon", wrong, home_nats.url, local_workers=0)).start()
    worker = worker_factory("box-a", _as("worker", wrong, home_nats.url)).start()
    probe.wait_online()  # the daemon is up on MQTT though NATS refuses it
    wait_for(lambda: "Authorization" in daemon.log() and "Authorization" in worker.log(),
             timeout=30)
    assert daemon.proc.poll() is None and worker.proc is not None and worker.proc.poll() is None
    for log in (daemon.log(), worker.log()):
        assert wrong not in log and "not-the-Pw" not in log
