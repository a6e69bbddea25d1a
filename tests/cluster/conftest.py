"""A private nats-server per test, and `cassetted worker` processes to point at it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.services import NatsServer, kill_with_children, stop_process

pytest.importorskip("nats")

# Fast beats and short leases, so that a dead worker is noticed within seconds here.
CLUSTER_TIMING: dict[str, object] = {"heartbeat_s": 0.5, "lease_s": 3.0, "max_deliver": 3}


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    (tmp_path / "nats").mkdir()
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


def cluster_toml(url: str, **values: object) -> str:
    """A `[cluster]` table: the test's server, fast timing, and `values` on top."""
    lines = [f'nats_url = "{url}"']
    for key, value in {**CLUSTER_TIMING, **values}.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n[cluster]\n" + "\n".join(lines) + "\n"


class WorkerProcess:
    """`python -m cassetted worker` as a real subprocess with its own state folder."""

    def __init__(self, workdir: Path, name: str, config_text: str) -> None:
        self.name = name
        self.dir = workdir / f"worker-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "cassetted.toml"
        self.config.write_text(config_text)
        self.log_path = self.dir / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASSETTED_")}
        env.update({"CASSETTED_STATE_DIR": str(self.dir / "state"), "PYTHONUNBUFFERED": "1",
                    "CASSETTED_LOG__LEVEL": "INFO"})
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cassetted", "worker", "--config", str(self.config),
                 "--name", self.name], env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        """SIGKILL the worker and its render child (a power cut takes both)."""
        assert self.proc is not None
        kill_with_children(self.proc)

    def stop(self) -> None:
        """SIGTERM: it hands its job back and leaves; SIGKILL if it does not within 30 s."""
        stop_process(self.proc, grace_s=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    made: list[WorkerProcess] = []

    def make(name: str, config_text: str) -> WorkerProcess:
        worker = WorkerProcess(tmp_path, name, config_text)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()
