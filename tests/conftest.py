"""Fixtures: the real broker, a daemon subprocess per test, an MQTT probe, PostgreSQL.

Each test gets its own base topic on the machine's Mosquitto, its own state directory and
its own PostgreSQL schema, so tests never see each other's retained messages or rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.services import HOST, free_port, pg_schema, start_mosquitto, stop_process
from tests.probe import MqttProbe, broker_answers

BROKER_HOST = HOST
PG_URL = os.environ.get("CASSETTED_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def broker_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The machine's Mosquitto on 1883, or a private one if it does not answer."""
    if broker_answers(BROKER_HOST, 1883):
        yield 1883
        return
    port = free_port()
    proc = start_mosquitto(port, tmp_path_factory.mktemp("broker"))
    yield port
    stop_process(proc)


@pytest.fixture
def base_topic() -> str:
    return f"cassetted-test/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def probe(broker_port: int, base_topic: str) -> Iterator[MqttProbe]:
    p = MqttProbe(BROKER_HOST, broker_port, base_topic)
    yield p
    p.close()


ROOMS_TOML = """
[rooms.living_room]
name = "Living Room"
aliases = ["lounge"]

[rooms.kids_room]
name = "Kids Room"
child_safe = true
"""


class DaemonProcess:
    """`python -m cassetted run` as a real subprocess, with its own env and state."""

    def __init__(self, state_dir: Path, env: dict[str, str], config: Path) -> None:
        self.state_dir = state_dir
        self.env = env
        self.config = config
        self.cwd: Path | None = None  # a test that watches where files land sets its own
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir / "daemon.log"

    def start(self, *args: str) -> DaemonProcess:
        """Run it; `args` go after `run --config FILE` (e.g. "--rebuild-library")."""
        with open(self.log_path, "ab") as log:  # the child keeps its own copy open
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cassetted", "run", "--config", str(self.config), *args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
            )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def daemon_factory(tmp_path: Path, broker_port: int, base_topic: str) -> Iterator:
    """Make (not yet started) daemons; every one is stopped at the end of the test."""
    made: list[DaemonProcess] = []

    def make(extra_toml: str = "", port: int | None = None, **env_overrides: str) -> DaemonProcess:
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        config = tmp_path / "cassetted.toml"
        config.write_text(ROOMS_TOML + extra_toml)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASSETTED_")}
        env.update({
            "CASSETTED_STATE_DIR": str(state),
            "CASSETTED_MQTT__HOST": BROKER_HOST,
            "CASSETTED_MQTT__PORT": str(port or broker_port),
            "CASSETTED_MQTT__BASE_TOPIC": base_topic,
            # Discovery under the test's own topic: nothing retained lands in homeassistant/.
            "CASSETTED_MQTT__DISCOVERY_PREFIX": f"{base_topic}/discovery",
            "CASSETTED_MQTT__CLIENT_ID": f"cassetted-{base_topic.replace('/', '-')}",
            "CASSETTED_MQTT__RECONNECT_MAX_S": "1",
            "CASSETTED_GENERATION__DEFAULT_DURATION_S": "10",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(env_overrides)
        daemon = DaemonProcess(state, env, config)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema in database `test`, dropped afterwards."""
    pytest.importorskip("psycopg2")
    with pg_schema(PG_URL) as url:
        yield url


# In CI every dependency is installed by .ci/run, so a skip can only mean a broken
# install hiding tests: there, a skip fails the run instead.
_NO_SKIPS = bool(os.environ.get("CI"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if _NO_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (every dependency should be installed): {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if _NO_SKIPS and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (every dependency should be installed): {report.longrepr}"
