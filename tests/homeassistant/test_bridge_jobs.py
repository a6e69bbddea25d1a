"""End to end on the real broker: Home Assistant's Generate button drives a real job.

The wiring below is the one the daemon uses (Store, JobRunner, Commands, MqttPublisher,
Router, MqttLink, and the bridge as both raw handler and JobListener), so this test also
shows that the bridge plugs in with a few lines.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

from cassetted._app.daemon import home_assistant_bridge
from cassetted.api.commands import Commands
from cassetted.config import Settings
from cassetted.homeassistant.bridge import HomeAssistantBridge
from cassetted.household.service import Household
from cassetted.jobs.runner import FanOut, JobRunner
from cassetted.mqtt.client import MqttLink
from cassetted.mqtt.publisher import MqttPublisher
from cassetted.mqtt.router import Router
from cassetted.store.database import Store, Vote
from tests.probe import MqttProbe


class NoPlayback:
    """Rooms here have output "none": the playback controller's two command entry points."""

    async def handle_room_command(self, room_id: str, command: Any) -> dict:
        return {}

    async def handle_party(self, command: Any) -> dict:
        return {}


class Stack:
    """The daemon's parts on an event loop in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.settings = settings
        self.run(self._start())

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        settings = self.settings
        self.store = Store(None, settings.state_dir)
        await self.store.open()
        router: Router
        bridge: HomeAssistantBridge
        commands: Commands
        link = MqttLink(settings.mqtt, on_message=lambda m: router.dispatch(m),
                        subscriptions=lambda: router.subscriptions(),
                        on_connect=lambda: (publisher.republish(), bridge.announce()))
        router = Router(settings.mqtt.base_topic, link.publish)
        publisher = MqttPublisher(settings.mqtt.base_topic, link.publish)
        bridge = home_assistant_bridge(settings, link.publish, router, lambda: commands)
        self.runner = JobRunner(self.store, settings, listener=FanOut(publisher, bridge))
        household = Household(settings, self.store, publish_stats=lambda stats: None,
                              publish_event=publisher.event, read_prompt=lambda p: (None, None))
        commands = Commands(settings, self.store, self.runner, NoPlayback(),  # type: ignore[arg-type]
                            household)
        commands.register(router)
        await self.runner.start()
        self.link = link
        self.task = asyncio.create_task(link.run())

    def stop(self) -> None:
        async def stop() -> None:
            await self.runner.stop()
            await self.link.flush()
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            await self.store.close()
        self.run(stop(), 60)
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
