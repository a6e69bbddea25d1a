"""Bad input, sent as a stranger would, to a running daemon over the real broker.

Each message is answered with `invalid_json`/`invalid_payload` naming the field where there
is one: never `internal_error`, never a traceback in the log, never a lost connection.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from cassetted.config import MqttSettings
from cassetted.mqtt.client import MqttLink
from tests.conftest import BROKER_HOST
from tests.e2e.hostile import HOSTILE, HUGE, assert_clean_log
from tests.probe import MqttProbe


@pytest.fixture
def daemon(daemon_factory, base_topic: str):
    return daemon_factory(
        f'\n[hermes]\nenabled = true\ntopic_prefix = "{base_topic}/hermes"\n').start()


def test_every_hostile_payload_is_answered(daemon, probe: MqttProbe) -> None:
    probe.wait_online()
    for payload, code, field in HOSTILE:
        for topic in ("song/create", "library/query", "song/abc/vote"):
            reply = probe.command(topic, payload, raw=True)
            assert reply["ok"] is False, (topic, payload[:60], reply)
            if topic == "song/create" or field is None or field == "request_id":
                assert reply["error"]["code"] == code, (topic, payload[:60], reply)
                assert reply["error"].get("field") == field, (topic, payload[:60], reply)
            else:  # a song/create field is unknown to the other commands
                assert reply["error"]["code"] == "invalid_payload", (topic, payload[:60], reply)
            assert reply["error"]["message"]
            assert "request_id" not in reply  # a lone surrogate is never echoed
    # Library paging past 64-bit OFFSET, a seek to infinity: refused by the schema.
    reply = probe.command("library/query", {"page": 2**63})
    assert reply["error"] == {"code": "invalid_payload", "field": "page",
                              "message": reply["error"]["message"]}
    reply = probe.command("library/query", b'{"page": 1e999}', raw=True)
    assert reply["error"]["field"] == "page"
    reply = probe.command("room/living_room/set", b'{"action": "seek", "position_s": 1e999}',
                          raw=True)
    assert reply["error"]["field"] == "position_s"
    reply = probe.command("room/living_room/set", {"action": "seek", "position_s": 1e12})
    assert reply["error"]["field"] == "position_s"
    # The daemon still makes songs.
    job = probe.command("song/create", {"prompt": "after the storm", "duration_s": 10})
    assert probe.wait_job(job["job_id"])["state"] == "done"
    daemon.stop()
    assert_clean_log(daemon.log())


def test_lone_surrogate_request_id_with_reply_to(daemon, probe: MqttProbe) -> None:
    """A v3.1.1 client (no response topic) still hears back on its reply_to."""
    probe.wait_online()
    reply_to = f"{probe.base}/nodered/r"
    probe.publish("song/create", b'{"request_id": "\\ud800", "reply_to": "' + reply_to.encode()
                  + b'"}', raw=True)
    reply = probe.wait(lambda m: m.topic == reply_to).json()
    assert reply["error"]["code"] == "invalid_payload" and reply["error"]["field"] == "request_id"
    event = probe.wait(lambda m: m.topic == f"{probe.base}/event").json()
    assert event["type"] == "error" and "request_id" not in event
    daemon.stop()
    assert_clean_log(daemon.log())


def test_a_reply_address_the_broker_refuses_never_drops_the_connection(
        daemon, probe: MqttProbe) -> None:
    """Mosquitto disconnects a client that publishes to a topic with a control character
    or a noncharacter; the QoS 1 retry would do it again after every reconnect."""
    probe.wait_online()
    for bad in ("\\u0001", "\\u007f", "\\u0085", "\\ufffe", "\\ufdd0", "\\udbff\\udfff",
                "\\ud800", "\\t", "#", "+"):
        payload = (f'{{"request_id": "r", "duration_s": 10, "reply_to": '
                   f'"{probe.base}/x{bad}y"}}').encode()
        probe.publish("song/create", payload, raw=True)
        reply = probe.wait(lambda m: m.topic == f"{probe.base}/reply"
                           and m.json()["error"]["field"] == "reply_to").json()
        assert reply["error"]["code"] == "invalid_payload", (bad, reply)
        probe.messages.clear()
    # An MQTT v5 response topic with a wildcard: the broker forwards it, we cannot use it.
    probe.publish("user/quota", {}, response="r/#")
    reply = probe.wait(lambda m: m.topic == f"{probe.base}/reply").json()
    assert reply["error"] == {"code": "invalid_payload", "field": "response_topic",
                              "message": reply["error"]["message"]}
    time.sleep(1.0)
    assert not [m for m in probe.on("status") if m.payload == b"offline"]
    assert probe.command("user/quota", {})["ok"] is True
    daemon.stop()
    assert_clean_log(daemon.log())


def test_home_assistant_volume_that_is_no_number_is_refused(daemon, probe: MqttProbe) -> None:
    probe.wait_online()
    for text in ("1e999", "-1e999", "nan", "inf", "loud", "9" * 1000):
        probe.publish("ha/room/living_room/volume/set", text.encode(), raw=True)
        event = probe.wait(lambda m: m.topic == f"{probe.base}/event"
                           and m.json().get("source") == "homeassistant").json()
        assert event["error"]["code"] == "invalid_payload", (text, event)
        assert "volume" in event["error"]["message"]
        probe.messages.clear()
    # The retained room list is ours, but anyone may overwrite it.
    for text in (HUGE, b"[" * 2000 + b"]" * 2000, b'["\\ud800"]', b"{}", b"\xff"):
        probe.publish("ha/rooms", text, raw=True)
    # A number is still taken (clamped to the slider's range).
    probe.publish("ha/room/living_room/volume/set", b"250", raw=True)
    time.sleep(0.5)
    # The panel numbers keep their value (each refusal re-publishes it, so HA snaps back).
    for text in (b"1e999", b"NaN", b"\xff", b"9" * 1000):
        probe.publish("ha/panel/duration/set", text, raw=True)
        probe.publish("ha/panel/bpm/set", text, raw=True)
    probe.publish("ha/panel/bpm/set", b"120", raw=True)
    state = probe.wait(lambda m: m.topic == f"{probe.base}/ha/panel/state"
                       and m.json()["bpm"] == 120).json()
    assert state["duration"] == 10
    refused = [m.json() for m in probe.on("ha/panel/state")][:-1]
    assert len(refused) == 6 and all(s["bpm"] == 0 and s["duration"] == 10 for s in refused)
    events = [m.json()["error"] for m in probe.on("event")
              if m.json().get("source") == "homeassistant"]
    panel = [e for e in events if e["message"].startswith(("duration:", "bpm:"))]
    assert [e["code"] for e in panel] == ["invalid_payload"] * 6
    # 250 was taken (clamped to 100) and reached the room, whose output (none) cannot play.
    assert [e["code"] for e in events if e not in panel] == ["unsupported"]
    daemon.stop()
    assert_clean_log(daemon.log())


def test_hermes_intents_with_hostile_numbers_get_an_apology(daemon, probe: MqttProbe) -> None:
    probe.wait_online()
    end_session = f"{probe.base}/hermes/dialogueManager/endSession"
    for n, body in enumerate((b'"bpm": ' + HUGE, b'"slots": ' + b"[" * 2000 + b"]" * 2000,
                              b'"input": "\\ud800 jazz"', b'"siteId": "\\udfff"')):
        session = f"s{n}".encode()
        probe.publish("hermes/intent/cassetted:CreateSong",
                      b'{"sessionId": "' + session + b'", ' + body + b"}", raw=True)
        answer = probe.wait(lambda m: m.topic == end_session
                            and m.json()["sessionId"] == session.decode()).json()  # noqa: B023 - waited for here
        assert answer["text"].startswith("Sorry") or answer["text"].startswith("Making")
    daemon.stop()
    assert_clean_log(daemon.log())


def test_hostile_payloads_on_postgresql(daemon_factory, probe: MqttProbe, pg_url: str) -> None:
    """PostgreSQL refuses what SQLite stores (a NUL in text): the same answers there."""
    daemon = daemon_factory(CASSETTED_STORAGE__DATABASE_URL=pg_url).start()
    probe.wait_online()
    for payload, code, field in HOSTILE:
        reply = probe.command("song/create", payload, raw=True)
        assert (reply["error"]["code"], reply["error"].get("field")) == (code, field), reply
    # Strange but valid text is stored and searched like any other.
    for text in ("'; DROP TABLE song; --", "\x01\x1f\x7f", "line\u2028break", "🎷" * 50,
                 "%_\\", "\ufffe\uffff"):
        reply = probe.command("song/create", {"prompt": text, "duration_s": 10,
                                              "request_id": f"pg-{text}"[:128]})
        assert reply["ok"] is True, (text, reply)
        probe.command(f"job/{reply['job_id']}/cancel", {})
        found = probe.command("library/query", {"text": text, "user": text[:64]})
        assert found["ok"] is True, (text, found)
    daemon.stop()
    assert_clean_log(daemon.log())


def test_the_link_never_publishes_a_topic_the_broker_refuses(broker_port: int,
                                                             probe: MqttProbe) -> None:
    """The last line of defence: a topic that slipped through would make Mosquitto drop the
    connection at every retry. The link refuses it and keeps its connection."""
    settings = MqttSettings(host=BROKER_HOST, port=broker_port, base_topic=probe.base,
                            client_id=f"link-{uuid.uuid4().hex[:8]}", reconnect_max_s=1)

    async def scenario() -> int:
        connects = 0

        def connected() -> None:
            nonlocal connects
            connects += 1

        class Nobody:
            def subscriptions(self) -> list[str]:
                return []

            async def dispatch(self, message: object) -> None:
                pass

        link = MqttLink(settings)
        task = asyncio.create_task(link.run(Nobody(), on_connect=connected))
        await asyncio.wait_for(link.connected.wait(), 10)
        for bad in ("\x01", "\x7f", "\x85", "\ufffe", "\U0001fffe", "\ufdd0", "\ud800", "#"):
            link.publish(f"{probe.base}/bad{bad}", b"x")
        link.publish(f"{probe.base}/good", b"after")
        await asyncio.sleep(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return connects

    assert asyncio.run(scenario()) == 1  # never dropped, never reconnected
    assert probe.wait(lambda m: m.topic == f"{probe.base}/good").payload == b"after"
    assert not [m for m in probe.messages if "/bad" in m.topic]


def test_v311_clients_hear_back_on_reply_to(daemon, probe: MqttProbe, broker_port: int) -> None:
    """Node-RED's default client has no response topic: the answer to a hostile payload
    goes to its reply_to with its request_id, whenever the JSON could be read."""
    probe.wait_online()
    legacy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    legacy.connect(BROKER_HOST, broker_port)
    legacy.loop_start()
    reply_to = f"{probe.base}/nodered/replies"
    try:
        for n, (payload, code, field) in enumerate(HOSTILE):
            if not payload.startswith(b'{"') or code == "payload_too_large":
                continue
            envelope = f'{{"reply_to": "{reply_to}", "request_id": "v3-{n}", '.encode()
            legacy.publish(f"{probe.base}/song/create", envelope + payload[1:],
                           qos=1).wait_for_publish(5)
            # Not JSON, or nested past what the parser follows (~1,000 levels): no reply_to
            # can be read, so the answer goes to the shared reply topic.
            readable = code != "invalid_json" and payload.count(b"{") < 1000
            topic = reply_to if readable else f"{probe.base}/reply"
            reply = probe.wait(lambda m: m.topic == topic).json()  # noqa: B023 - waited for here
            assert reply["error"]["code"] == code, (payload[:60], reply)
            if readable and field != "request_id":
                assert reply["request_id"] == f"v3-{n}", (payload[:60], reply)
            probe.messages.clear()
    finally:
        legacy.loop_stop()
        legacy.disconnect()
    daemon.stop()
    assert_clean_log(daemon.log())


def test_sleep_switch_flipped_fast_never_fails(daemon, probe: MqttProbe) -> None:
    """Found by the fuzzer: ON, OFF, ON in quick succession raced two mode changes of one
    room (KeyError, internal_error). Each change now waits for the one before."""
    probe.wait_online()
    for text in (b"ON", b"OFF", b"ON", b"ON", b"OFF", b"OFF", b"ON"):
        probe.publish("ha/room/living_room/sleep/set", text, raw=True)
    time.sleep(2.0)
    assert not [m.json() for m in probe.on("event") if m.json().get("source") == "homeassistant"]
    assert probe.on("room/living_room/state")[-1].json()["mode"] == "sleep"  # the last was ON
    daemon.stop()
    assert_clean_log(daemon.log())
    assert "failed" not in daemon.log()
