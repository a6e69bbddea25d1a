"""End to end on the real broker: Home Assistant's Generate button drives a real job.

The daemon runs in this process with its own wiring (the bridge both a raw handler and a
follower of the bus), so the test also reads the daemon's store for the vote.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

from cassetted._app.daemon import Daemon
from cassetted.config import Settings
from cassetted.store.database import Vote
from tests.probe import MqttProbe


class Stack:
    """The daemon itself, in this process on an event loop in a thread (the test reads its
    store). Before issue 15 this test wired a copy of the daemon's parts by hand."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.daemon = Daemon(settings)
        self.store = self.daemon.store
        self.running = asyncio.run_coroutine_threadsafe(self.daemon.run(), self.loop)

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.daemon.request_stop)
        self.running.result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_generate_button_makes_a_song(tmp_path: Path, broker_port: int, base_topic: str,
                                      probe: MqttProbe) -> None:
    prefix = f"ha-test-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        state_dir=tmp_path / "state",
        rooms={"living_room": {"name": "Living Room"}},
        generation={"default_duration_s": 10},
        mqtt={"host": "127.0.0.1", "port": broker_port, "base_topic": base_topic,
              "discovery_prefix": prefix, "client_id": f"ha-e2e-{uuid.uuid4().hex[:8]}"})
    stack = Stack(settings)
    try:
        probe.wait(lambda m: m.topic == f"{base_topic}/ha/panel/state")
        for entity, value in [("prompt", "a lullaby about the moon"), ("genre", "classical"),
                              ("mood", "relaxing"), ("duration", "10"), ("bpm", "70")]:
            probe.publish(f"ha/panel/{entity}/set", value, raw=True)
        probe.wait(lambda m: m.topic == f"{base_topic}/ha/panel/state" and m.json()["bpm"] == 70)
        probe.publish("ha/panel/generate/set", "PRESS", raw=True)

        composing = probe.wait(lambda m: m.topic == f"{base_topic}/ha/generation"
                               and m.json()["state"] in ("writing_lyrics", "composing"), 30)
        job_id = composing.json()["job_id"]
        done = probe.wait(lambda m: m.topic == f"{base_topic}/ha/generation"
                          and m.json()["state"] == "done", 90).json()
        assert done["job_id"] == job_id and done["progress_pct"] == 100
        latest = probe.wait(lambda m: m.topic == f"{base_topic}/song/latest").json()
        assert (latest["genre"], latest["mood"], latest["bpm"]) == ("classical", "relaxing", 70)
        assert latest["prompt"] == "a lullaby about the moon" and latest["user"] == "homeassistant"
        ready = probe.wait(lambda m: m.topic == f"{base_topic}/event"
                           and m.json()["type"] == "song_ready").json()
        assert ready["song_id"] == latest["id"]

        probe.publish("ha/panel/like/set", "PRESS", raw=True)
        for _ in range(100):
            votes = stack.run(stack.store.call(
                lambda: [(v.song_id, v.user, v.value) for v in Vote.select()]))
            if votes:
                break
            threading.Event().wait(0.05)
        assert votes == [(latest["id"], "homeassistant", 1)]
    finally:
        stack.stop()
        for topic in {m.topic for m in probe.messages if m.retain or m.topic.endswith(
                ("/ha/panel/state", "/ha/generation", "/ha/rooms", "/queue", "/song/latest",
                 "/status"))}:
            probe.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        cleaner = MqttProbe("127.0.0.1", broker_port, prefix)
        threading.Event().wait(0.5)
        for topic in {m.topic for m in cleaner.messages if m.payload}:
            cleaner.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        cleaner.close()
