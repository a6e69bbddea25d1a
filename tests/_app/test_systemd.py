"""systemd integration: READY=1 after the broker answered, watchdog pings, STOPPING=1."""

from __future__ import annotations

import configparser
import socket
from pathlib import Path

from tests.probe import MqttProbe

ROOT = Path(__file__).resolve().parents[2]


def test_notify_ready_watchdog_and_stopping(daemon_factory, probe: MqttProbe, tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(30)
    daemon = daemon_factory(NOTIFY_SOCKET=address, WATCHDOG_USEC="200000").start()
    try:
        assert sock.recv(256) == b"READY=1"
        # READY is only sent once online: the retained status must already say so.
        probe.wait_online(timeout=1)
        assert sock.recv(256) == b"WATCHDOG=1"
        assert sock.recv(256) == b"WATCHDOG=1"
        daemon.stop()
        while (message := sock.recv(256)) == b"WATCHDOG=1":
            pass
        assert message == b"STOPPING=1"
    finally:
        sock.close()


def test_unit_file_is_notify_hardened_and_unprivileged() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # keep the keys' case
    unit.read(ROOT / "systemd" / "cassetted.service")
    service = unit["Service"]
    assert service["Type"] == "notify" and service["StateDirectory"] == "cassetted"
    assert service["User"] != "root" and "WatchdogSec" in service
    for key in ("ProtectSystem", "NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert key in service, key
    assert service["ProtectSystem"] == "strict"


def test_worker_unit_runs_the_worker_unprivileged_with_its_own_state() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # keep the keys' case
    unit.read(ROOT / "systemd" / "cassetted-worker.service")
    service = unit["Service"]
    assert service["ExecStart"].split()[1:] == ["worker"]
    assert service["User"] != "root" and service["ProtectSystem"] == "strict"
    # Its own state, never the daemon's database and library.
    assert service["StateDirectory"] == "cassetted-worker"
    assert "CASSETTED_STATE_DIR=/var/lib/cassetted-worker" in service["Environment"].split()
    assert "PrivateDevices" not in service  # the GPU's device nodes
