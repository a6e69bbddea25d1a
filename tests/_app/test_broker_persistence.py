"""The broker must keep cassetted's session: requests sent while the daemon restarts wait
there. With `persistence true` they survive a broker restart too; without it they are lost,
and the daemon says so at its next connection; `cassetted doctor` checks both."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import BROKER_HOST
from tests.fixtures.services import free_port, start_mosquitto, stop_process
from tests.probe import MqttProbe

WARNING = "did not resume cassetted's session"


def _request_while_away(port: int, base: str, request_id: str) -> None:
    sender = MqttProbe(BROKER_HOST, port, f"{base}-sender")
    try:
        info = sender.client.publish(f"{base}/song/create", json.dumps(
            {"duration_s": 10, "request_id": request_id, "reply_to": f"{base}/r"}), qos=1)
        info.wait_for_publish(10)
    finally:
        sender.close()


def _scenario(daemon_factory, base_topic: str, tmp_path: Path,  # type: ignore[no-untyped-def]
              persistence: bool) -> tuple[str, MqttProbe, int, subprocess.Popen[bytes]]:
    """Daemon up, killed; a request sent meanwhile; the broker restarted; daemon back."""
    port = free_port()
    broker = start_mosquitto(port, tmp_path, persistence)
    daemon = daemon_factory(port=port)
    daemon.start()
    probe = MqttProbe(BROKER_HOST, port, base_topic)
    probe.wait_online()
    daemon.kill()
    _request_while_away(port, base_topic, "while-away")
    probe.close()
    time.sleep(1.5)  # autosave_interval: the queued request is on disk
    stop_process(broker)
    broker = start_mosquitto(port, tmp_path, persistence)
    probe = MqttProbe(BROKER_HOST, port, base_topic)
    start = len(probe.messages)
    daemon.start()
    deadline = time.monotonic() + 30
    while not any(m.topic == f"{base_topic}/status" and m.payload == b"online"
                  for m in probe.messages[start:]):
        assert time.monotonic() < deadline, "the daemon did not come back"
        time.sleep(0.05)
    time.sleep(1.0)
    return daemon.log(), probe, port, broker


def test_with_persistence_a_request_sent_while_away_survives_a_broker_restart(
        daemon_factory, base_topic: str, tmp_path: Path) -> None:
    log, probe, _, broker = _scenario(daemon_factory, base_topic, tmp_path, persistence=True)
    try:
        reply = probe.wait(lambda m: m.topic == f"{base_topic}/r", timeout=20).json()
        assert reply["ok"] and reply["request_id"] == "while-away"
        assert probe.wait_job(reply["job_id"])["state"] == "done"
        assert WARNING not in log
    finally:
        probe.close()
        stop_process(broker)


def test_without_persistence_the_daemon_warns_that_the_session_was_lost(
        daemon_factory, base_topic: str, tmp_path: Path) -> None:
    log, probe, _, broker = _scenario(daemon_factory, base_topic, tmp_path, persistence=False)
    try:
        assert WARNING in log and "persistence true" in log
        assert not probe.on("r")  # the request sent meanwhile is gone, as documented
    finally:
        probe.close()
        stop_process(broker)


def test_a_first_connection_does_not_warn(daemon_factory, probe: MqttProbe) -> None:
    daemon = daemon_factory().start()
    probe.wait_online()
    assert WARNING not in daemon.log()
    assert (daemon.state_dir / "mqtt-session").read_text().strip().startswith("cassetted-")


def _doctor(tmp_path: Path, port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {"CASSETTED_STATE_DIR": str(tmp_path / "state"), "CASSETTED_MQTT__HOST": BROKER_HOST,
           "CASSETTED_MQTT__PORT": str(port), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": ":".join(p for p in sys.path if p)}
    config = tmp_path / "doctor.toml"
    config.write_text("")
    return subprocess.run([sys.executable, "-m", "cassetted", "doctor", "--config", str(config),
                           *extra], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_doctor_checks_persistence_and_the_session(tmp_path: Path, broker_port: int) -> None:
    off = tmp_path / "off.conf"
    included = tmp_path / "conf.d"
    included.mkdir()
    off.write_text(f"persistence true\ninclude_dir {included}\n")
    (included / "late.conf").write_text("persistence false  # the last word wins\n")
    result = _doctor(tmp_path, broker_port, "--mosquitto-conf", str(off))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL broker persistence: off in" in result.stdout
    assert "ok   broker session:" in result.stdout  # the broker does keep sessions meanwhile

    on = tmp_path / "on.conf"
    on.write_text("# household broker\npersistence true\npersistence_location /var/lib/mosquitto/\n")
    result = _doctor(tmp_path, broker_port, "--mosquitto-conf", str(on))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * 4, lines
    assert not (tmp_path / "state" / "cassetted.db").exists()  # doctor changes nothing


def test_doctor_without_a_broker_fails_plainly(tmp_path: Path) -> None:
    result = _doctor(tmp_path, free_port(), "--mosquitto-conf", "/nonexistent.conf")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "FAIL broker:" in result.stdout
