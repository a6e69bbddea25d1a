"""A community hub and a home joining it as a leaf node, all on loopback.

The home runs its own nats-server (JetStream domain `home-a`: its queue, results and
buckets stay at home) and connects to the hub as a leaf node bound to the hub's account
HOME_A. A pool worker on the hub, logged in to HOME_A, reaches the home's queue through that
domain and takes only jobs that waited `overflow_after_s`, so the home's own GPU gets them
first. Another home's account (HOME_B) on the same hub sees nothing of home A.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import WorkerProcess, cluster_toml
from tests.fixtures.services import NatsServer, free_port
from tests.probe import MqttProbe

SONG = {"prompt": "overflow", "instrumental": False}


@pytest.fixture
def hub_and_home(tmp_path: Path) -> Iterator[tuple[NatsServer, NatsServer]]:
    leaf_port = free_port()
    (tmp_path / "hub").mkdir()
    hub = NatsServer(tmp_path / "hub", name="hub", domain="hub", config=f"""
leafnodes {{ listen: 127.0.0.1:{leaf_port} }}
accounts {{
  HOME_A: {{ users: [ {{user: a-leaf, password: a-leaf-pw}}, {{user: a-pool, password: a-pool-pw}} ] }}
  HOME_B: {{ users: [ {{user: b-leaf, password: b-leaf-pw}}, {{user: b-pool, password: b-pool-pw}} ] }}
}}
""").start()
    (tmp_path / "home").mkdir()
    home = NatsServer(tmp_path / "home", name="home-a", domain="home-a", config=f"""
leafnodes {{ remotes: [ {{ url: "nats://a-leaf:a-leaf-pw@127.0.0.1:{leaf_port}" }} ] }}
""").start()
    yield hub, home
    home.stop()
    hub.stop()


async def _can_reach_home_queue(url: str, user: str, password: str) -> bool:
    import nats

    async def quiet(error: Exception) -> None:
        """No responders is the answer looked for; nothing to report."""

    nc = await nats.connect(url, user=user, password=password, error_cb=quiet)
    try:
        await asyncio.wait_for(nc.jetstream(domain="home-a").stream_info("cassetted-jobs"), 3)
        return True
    except Exception:  # noqa: BLE001 - no responders / timeout: the queue is out of reach
        return False
    finally:
        await nc.close()



def test_the_home_gpu_goes_first_and_the_pool_takes_the_overflow(
        daemon_factory: Callable[..., Any], probe: MqttProbe,
        hub_and_home: tuple[NatsServer, NatsServer],
        worker_factory: Callable[..., WorkerProcess]) -> None:
    hub, home = hub_and_home
    daemon_factory(cluster_toml(home.url, local_workers=0)).start()
    worker_factory("home-gpu", cluster_toml(home.url)).start()
    pool = worker_factory("pool-1", cluster_toml(
        f"nats://127.0.0.1:{hub.port}", user="a-pool", password="a-pool-pw", domain="home-a",
        overflow_after_s=2.0)).start()
    probe.wait_online()
    # One song at a time: the home's worker takes each at once, the pool never.
    for i in range(2):
        reply = probe.command("song/create", {**SONG, "duration_s": 10, "seed": i})
        final = probe.wait_job(reply["job_id"], ("done", "failed"), timeout=120)
        assert final["worker"] == "home-gpu", (final, pool.log()[-2000:])
    # A burst longer than the home's worker can take within two seconds: the pool helps.
    jobs = [probe.command("song/create", {**SONG, "duration_s": 120, "seed": 10 + i})["job_id"]
            for i in range(6)]
    finals = [probe.wait_job(job, ("done", "failed"), timeout=240) for job in jobs]
    assert all(final["state"] == "done" for final in finals), finals
    makers = {final["worker"] for final in finals}
    assert makers == {"home-gpu", "pool-1"}, (makers, pool.log()[-3000:])
    assert "JetStream domain home-a" in pool.log()


def test_one_home_cannot_reach_another_homes_queue(
        daemon_factory: Callable[..., Any], probe: MqttProbe,
        hub_and_home: tuple[NatsServer, NatsServer]) -> None:
    hub, home = hub_and_home
    daemon_factory(cluster_toml(home.url, local_workers=0)).start()
    probe.wait_online()

    async def both() -> tuple[bool, bool]:
        for _ in range(50):  # the daemon makes the stream once it reached its server
            if await _can_reach_home_queue(f"nats://127.0.0.1:{hub.port}", "a-pool", "a-pool-pw"):
                break
            await asyncio.sleep(0.2)
        return (await _can_reach_home_queue(f"nats://127.0.0.1:{hub.port}", "a-pool",
                                            "a-pool-pw"),
                await _can_reach_home_queue(f"nats://127.0.0.1:{hub.port}", "b-pool",
                                            "b-pool-pw"))

    assert asyncio.run(both()) == (True, False)
