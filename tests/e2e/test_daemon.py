"""The spine end to end: a real daemon process, the real broker, real files and rows."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import soundfile

from tests.conftest import BROKER_HOST
from tests.fixtures.services import free_port, start_mosquitto, stop_process, wait_for
from tests.probe import MqttProbe

ORDER = ["queued", "writing_lyrics", "composing", "encoding", "ready", "done"]


def _states(events: list[dict]) -> list[str]:
    """Distinct states in the order they were first announced."""
    seen: list[str] = []
    for event in events:
        if event["state"] not in seen:
            seen.append(event["state"])
    return seen


def test_request_to_song(daemon_factory, probe: MqttProbe) -> None:
    daemon = daemon_factory().start()
    probe.wait_online()
    reply = probe.command("song/create", {
        "prompt": "a song about my cat", "genre": "jazz", "mood": "relaxing", "bpm": 96,
        "key": "D minor", "duration_s": 12, "seed": 7, "room": "living_room",
        "request_id": "req-1",
    })
    assert reply["ok"] is True and reply["state"] == "queued" and reply["request_id"] == "req-1"
    job_id = reply["job_id"]
    final = probe.wait_job(job_id)
    assert final["state"] == "done", final
    events = probe.job_events(job_id)
    assert _states(events) == ORDER
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert all(0.0 <= p <= 1.0 for p in progress)
    assert any(e.get("eta_s") is not None for e in events)

    path = Path(final["file"])
    assert path.is_file() and path.parent == daemon.state_dir / "library"
    data, rate = soundfile.read(path)
    assert data.shape == (12 * rate, 2)

    latest = probe.wait(lambda m: m.topic == f"{probe.base}/song/latest").json()
    assert latest["file"] == str(path) and latest["genre"] == "jazz" and latest["bpm"] == 96
    assert latest["key"] == "D minor" and latest["room"] == "living_room"

    with sqlite3.connect(daemon.state_dir / "cassetted.db") as db:
        row = db.execute("SELECT genre, mood, bpm, key, duration_s, seed, room, lyrics, file,"
                         " lyrics_provider, engine FROM song WHERE id = ?",
                         (final["song_id"],)).fetchone()
    assert row[:7] == ("jazz", "relaxing", 96, "D minor", 12.0, 7, "living_room")
    assert "[Chorus]" in row[7] or "[Verse]" in row[7]
    assert (daemon.state_dir / "library" / row[8]) == path
    assert row[9] == "builtin" and row[10] == "builtin"

    event = probe.wait(lambda m: m.topic == f"{probe.base}/event"
                       and m.json()["type"] == "song_ready").json()
    assert event["song_id"] == final["song_id"]
    queue = [m.json() for m in probe.on("queue")]
    assert queue[-1]["pending"] == 0 and queue[-1]["running"] == []


def test_duplicate_request_id_makes_one_song(daemon_factory, probe: MqttProbe) -> None:
    daemon_factory().start()
    probe.wait_online()
    request = {"prompt": "twice", "duration_s": 10, "request_id": "same-id"}
    first = probe.command("song/create", request)
    second = probe.command("song/create", request)
    assert second["job_id"] == first["job_id"] and second["duplicate"] is True
    assert first.get("duplicate") is False
    probe.wait_job(first["job_id"])
    third = probe.command("song/create", request)
    assert third["job_id"] == first["job_id"] and third["state"] == "done"
    page = probe.command("library/query", {"text": "twice"})
    assert page["ok"] and page["total"] == 1


def test_cancel_queued_and_running(daemon_factory, probe: MqttProbe) -> None:
    daemon_factory().start()
    probe.wait_online()
    long = probe.command("song/create", {"prompt": "long one", "duration_s": 600})
    waiting = probe.command("song/create", {"prompt": "waiting", "duration_s": 10})
    probe.wait_job(long["job_id"], ("composing",))

    cancelled = probe.command(f"job/{waiting['job_id']}/cancel", {})
    assert cancelled == {"ok": True, "job_id": waiting["job_id"], "state": "cancelled"}
    assert probe.command(f"job/{long['job_id']}/cancel", {})["ok"] is True
    assert probe.wait_job(long["job_id"])["state"] == "cancelled"

    again = probe.command(f"job/{long['job_id']}/cancel", {})
    assert again["ok"] is False and again["error"]["code"] == "invalid_state"
    unknown = probe.command("job/nope/cancel", {})
    assert unknown["error"]["code"] == "unknown_job"
    after = probe.command("song/create", {"prompt": "after", "duration_s": 10})
    assert probe.wait_job(after["job_id"])["state"] == "done"


BAD = [
    (b"{not json", "invalid_json", None),
    (b'["a list"]', "invalid_payload", None),
    (b'{"duration_s": "long"}', "invalid_payload", "duration_s"),
    (b'{"duration_s": 5}', "invalid_payload", "duration_s"),
    (b'{"duration_s": 601}', "invalid_payload", "duration_s"),
    (b'{"bpm": 29}', "invalid_payload", "bpm"),
    (b'{"bpm": 301}', "invalid_payload", "bpm"),
    (b'{"key": "H major"}', "invalid_payload", "key"),
    (b'{"genre": "polka"}', "invalid_payload", "genre"),
    (b'{"room": "garage"}', "unknown_room", "room"),
    (b'{"colour": "blue"}', "invalid_payload", "colour"),
    (b'{"engine": "nope"}', "unknown_engine", "engine"),
    (b'\xff\xfe', "invalid_json", None),
    (b'{"prompt": "' + b"x" * (64 * 1024) + b'"}', "payload_too_large", None),
]


def test_bad_payloads_answered_while_a_job_runs(daemon_factory, probe: MqttProbe) -> None:
    daemon = daemon_factory().start()
    probe.wait_online()
    job = probe.command("song/create", {"prompt": "keeps going", "duration_s": 30})
    for payload, code, field in BAD:
        reply = probe.command("song/create", payload, raw=True)
        assert reply["ok"] is False, payload[:40]
        assert reply["error"]["code"] == code, (payload[:40], reply)
        assert reply["error"].get("field") == field, (payload[:40], reply)
        assert reply["error"]["message"]
    # The error event follows each reply; the last may still be on its way.
    last_message = BAD[-1][2]
    probe.wait(lambda m: m.topic == f"{probe.base}/event"
               and m.json()["error"]["code"] == "payload_too_large")
    errors = [m.json() for m in probe.on("event") if m.json()["type"] == "error"]
    assert len(errors) == len(BAD) and last_message is None
    assert probe.wait_job(job["job_id"], timeout=120)["state"] == "done"
    assert daemon.proc.poll() is None
    # Other command topics validate the same way.
    assert probe.command("song/abc/vote", {"vote": 2})["error"]["field"] == "vote"
    assert probe.command("song/abc/vote", {"vote": 1})["error"]["code"] == "unknown_song"
    assert probe.command("room/garage/set", {"action": "play"})["error"]["code"] == "unknown_room"
    assert probe.command("library/query", {"page": 0})["error"]["field"] == "page"


def test_reply_to_for_v311_clients(daemon_factory, probe: MqttProbe, broker_port: int) -> None:
    daemon_factory().start()
    probe.wait_online()
    legacy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    legacy.connect(BROKER_HOST, broker_port)
    legacy.loop_start()
    try:
        reply_topic = f"{probe.base}/nodered/{uuid.uuid4().hex[:6]}"
        legacy.publish(f"{probe.base}/song/create", b'{"duration_s": 3, "request_id": "nr-1",'
                       b' "reply_to": "' + reply_topic.encode() + b'"}', qos=1).wait_for_publish(5)
        reply = probe.wait(lambda m: m.topic == reply_topic).json()
        assert reply["ok"] is False and reply["request_id"] == "nr-1"
        assert reply["error"]["field"] == "duration_s"
        legacy.publish(f"{probe.base}/song/create", b'{"duration_s": 10, "request_id": "nr-2",'
                       b' "reply_to": "' + reply_topic.encode() + b'"}', qos=1).wait_for_publish(5)
        ok = probe.wait(lambda m: m.topic == reply_topic and m.json()["request_id"] == "nr-2")
        assert ok.json()["ok"] is True
        # Without any reply address the answer goes to <base>/reply.
        legacy.publish(f"{probe.base}/song/create", b"{oops", qos=1).wait_for_publish(5)
        fallback = probe.wait(lambda m: m.topic == f"{probe.base}/reply").json()
        assert fallback["error"]["code"] == "invalid_json"
    finally:
        legacy.loop_stop()
        legacy.disconnect()


def test_sigkill_mid_job_then_restart_completes(daemon_factory, probe: MqttProbe) -> None:
    daemon = daemon_factory()
    daemon.start()
    probe.wait_online()
    job = probe.command("song/create", {"prompt": "survivor", "duration_s": 120, "seed": 3,
                                        "request_id": "survive"})
    probe.wait_job(job["job_id"], ("composing",))
    queued = probe.command("song/create", {"prompt": "also waiting", "duration_s": 10})
    daemon.kill()
    # The will fired: the broker itself announced the killed daemon offline.
    probe.wait(lambda m: m.topic == f"{probe.base}/status" and m.payload == b"offline")

    daemon.start()
    final = probe.wait_job(job["job_id"], ("done",), timeout=180)
    assert Path(final["file"]).is_file()
    assert probe.wait_job(queued["job_id"], ("done",), timeout=60)["state"] == "done"
    # The redelivered/repeated request still maps to the one job.
    assert probe.command("song/create", {"prompt": "survivor", "duration_s": 120, "seed": 3,
                                          "request_id": "survive"})["job_id"] == job["job_id"]
    with sqlite3.connect(daemon.state_dir / "cassetted.db") as db:
        attempts = db.execute("SELECT attempts FROM job WHERE id = ?", (job["job_id"],)).fetchone()
        songs = db.execute("SELECT count(*) FROM song").fetchone()
    assert attempts == (2,) and songs == (2,)


def test_broker_absent_at_start_then_appears(daemon_factory, base_topic: str, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemon_factory(port=port).start()
    # The daemon retries against the closed port (on a loaded machine its start alone can
    # take seconds, so wait for it to say so rather than for a fixed time).
    wait_for(lambda: "unavailable" in daemon.log(), timeout=60)
    assert daemon.proc.poll() is None
    broker = start_mosquitto(port, tmp_path)
    try:
        late = MqttProbe(BROKER_HOST, port, base_topic)
        try:
            late.wait_online(timeout=30)
            reply = late.command("song/create", {"duration_s": 10})
            assert late.wait_job(reply["job_id"])["state"] == "done"
        finally:
            late.close()
    finally:
        daemon.stop()
        stop_process(broker)


def test_clean_stop_publishes_offline(daemon_factory, probe: MqttProbe) -> None:
    daemon = daemon_factory().start()
    probe.wait_online()
    assert daemon.stop() == 0
    probe.wait(lambda m: m.topic == f"{probe.base}/status" and m.payload == b"offline")


def test_invalid_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[mqtt]\nport = 70000\n")
    result = subprocess.run([sys.executable, "-m", "cassetted", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "mqtt.port" in lines[0]


def test_broker_restart_restores_subscriptions(daemon_factory, base_topic: str,
                                               tmp_path: Path) -> None:
    port = free_port()
    broker = start_mosquitto(port, tmp_path)
    daemon = daemon_factory(port=port).start()
    try:
        probe = MqttProbe(BROKER_HOST, port, base_topic)
        probe.wait_online()
        probe.close()
        stop_process(broker)
        time.sleep(1.0)
        broker = start_mosquitto(port, tmp_path)  # no persistence: subscriptions are gone
        probe = MqttProbe(BROKER_HOST, port, base_topic)
        try:
            probe.wait_online(timeout=30)
            reply = probe.command("song/create", {"duration_s": 10}, timeout=30)
            assert reply["ok"] and probe.wait_job(reply["job_id"])["state"] == "done"
        finally:
            probe.close()
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()
        stop_process(broker)


def test_mqtt_311_daemon(daemon_factory, probe: MqttProbe) -> None:
    daemon_factory(CASSETTED_MQTT__PROTOCOL="3.1.1").start()
    probe.wait_online()
    probe.publish("song/create", {"duration_s": 10, "request_id": "v3", "reply_to": f"{probe.base}/r"})
    reply = probe.wait(lambda m: m.topic == f"{probe.base}/r").json()
    assert reply["ok"] and probe.wait_job(reply["job_id"])["state"] == "done"


def test_postgresql_store_end_to_end(daemon_factory, probe: MqttProbe, pg_url: str) -> None:
    daemon_factory(CASSETTED_STORAGE__DATABASE_URL=pg_url).start()
    probe.wait_online()
    reply = probe.command("song/create", {"prompt": "stored in postgres", "duration_s": 10,
                                          "genre": "rock"})
    final = probe.wait_job(reply["job_id"])
    assert final["state"] == "done" and Path(final["file"]).is_file()
    page = probe.command("library/query", {"genre": "rock"})
    assert page["total"] == 1 and page["songs"][0]["id"] == final["song_id"]
    import psycopg2

    with psycopg2.connect(pg_url.split("?")[0], options=pg_url.split("options=")[1]
                          .replace("%3D", "=")) as conn, conn.cursor() as cur:
        cur.execute("SELECT genre, state FROM song JOIN job ON job.song_id = song.id")
        assert cur.fetchall() == [("rock", "done")]
