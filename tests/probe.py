"""A synchronous MQTT client for tests: records every message under the base topic."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def broker_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    correlation: bytes | None

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttProbe:
    """Subscribes to `<base>/#`; tests publish commands and wait for what comes back."""

    def __init__(self, host: str, port: int, base: str, protocol: int = mqtt.MQTTv5,
                 username: str | None = None, password: str | None = None) -> None:
        self.base = base
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"probe-{uuid.uuid4().hex[:8]}", protocol=protocol)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a, **k: subscribed.set()
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(f"{base}/#", qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("probe could not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        correlation = getattr(msg.properties, "CorrelationData", None) if msg.properties else None
        with self._cond:
            self.messages.append(Received(msg.topic, msg.payload, bool(msg.retain), correlation))
            self._cond.notify_all()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    # ------------------------------------------------------------------ sending

    def publish(self, relative: str, payload: Any, *, response: str | None = None,
                correlation: bytes | None = None, raw: bool = False) -> None:
        body = payload if raw else json.dumps(payload)
        props = None
        if response:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = f"{self.base}/{response}"
            props.CorrelationData = correlation or uuid.uuid4().bytes
        info = self.client.publish(f"{self.base}/{relative}", body, qos=1, properties=props)
        info.wait_for_publish(10)

    def command(self, relative: str, payload: Any, raw: bool = False, timeout: float = 15) -> dict:
        """Publish with an MQTT v5 response topic and return the reply."""
        reply_topic = f"replies/{uuid.uuid4().hex[:8]}"
        correlation = uuid.uuid4().bytes
        self.publish(relative, payload, response=reply_topic, correlation=correlation, raw=raw)
        msg = self.wait(lambda m: m.topic == f"{self.base}/{reply_topic}", timeout)
        assert msg.correlation == correlation, "correlation data not echoed"
        return msg.json()

    # ------------------------------------------------------------------ waiting

    def wait(self, predicate: Callable[[Received], bool], timeout: float = 15) -> Received:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for msg in self.messages[seen:]:
                    if predicate(msg):
                        return msg
                seen = len(self.messages)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    topics = [m.topic for m in self.messages[-20:]]
                    raise TimeoutError(f"no matching message; last topics: {topics}")
                self._cond.wait(remaining)

    def wait_online(self, timeout: float = 30) -> None:
        self.wait(lambda m: m.topic == f"{self.base}/status" and m.payload == b"online", timeout)

    def job_events(self, job_id: str) -> list[dict]:
        with self._cond:
            return [m.json() for m in self.messages if m.topic == f"{self.base}/job/{job_id}"]

    def wait_job(self, job_id: str, states: tuple[str, ...] = ("done", "failed", "cancelled"),
                 timeout: float = 60) -> dict:
        msg = self.wait(lambda m: m.topic == f"{self.base}/job/{job_id}"
                        and m.json().get("state") in states, timeout)
        return msg.json()

    def on(self, relative: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == f"{self.base}/{relative}"]
