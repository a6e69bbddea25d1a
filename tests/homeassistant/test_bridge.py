"""The Home Assistant bridge on the real broker: the daemon's own MqttLink and Router carry
it, a paho client plays Home Assistant, and recording callables stand in for the job runner
and playback (the bridge imports neither)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cassetted.config import Settings
from cassetted.contract.schemas import (
    JobEvent,
    JobState,
    PartyCommand,
    RoomCommand,
    RoomModeCommand,
    SongInfo,
    SongRequest,
)
from cassetted.events import BrokerConnected, EventBus
from cassetted.homeassistant.bridge import HomeAssistantBridge
from cassetted.homeassistant.discovery import node_id
from cassetted.mqtt.client import MqttLink
from cassetted.mqtt.router import Router
from tests.probe import MqttProbe

HOST = "127.0.0.1"
ROOMS = {"living_room": {"name": "Living Room"}, "kids_room": {"name": "Kids Room"}}


class Recorder:
    """Thread-safe record of what the bridge asked the daemon to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._cond = threading.Condition()
        self.fail_party = False

    def record(self, kind: str, value: Any) -> None:
        with self._cond:
            self.calls.append((kind, value))
            self._cond.notify_all()

    def wait(self, kind: str, count: int = 1, timeout: float = 10) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [v for k, v in self.calls if k == kind]
                if len(found) >= count:
                    return found
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no {kind} call; calls: {self.calls}")
                self._cond.wait(0.1)

    async def submit(self, request: SongRequest) -> dict:
        self.record("submit", request)
        return {"ok": True, "job_id": "j1", "state": "queued"}

    async def vote(self, song_id: str, value: int) -> None:
        self.record("vote", (song_id, value))

    async def room_command(self, room_id: str, command: RoomCommand) -> None:
        self.record("room", (room_id, command))

    async def mode_command(self, room_id: str, command: RoomModeCommand) -> None:
        self.record("mode", (room_id, command))

    async def party_command(self, command: PartyCommand) -> None:
        self.record("party", command)
        if self.fail_party:
            from cassetted.contract.errors import Unsupported
            raise Unsupported("party mode needs Snapcast zones")


class BridgeInThread:
    """The bridge, a Router and an MqttLink on their own event loop (as in the daemon)."""

    def __init__(self, settings: Settings, recorder: Recorder) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.bridge: HomeAssistantBridge | None = None
        self._task: asyncio.Task[None] | None = None
        self.link: MqttLink | None = None
        self.call(self._start, settings, recorder)

    async def _start(self, settings: Settings, recorder: Recorder) -> None:
        bus = EventBus()
        link = MqttLink(settings.mqtt)
        router = Router(settings.mqtt.base_topic, link.publish)
        bridge = HomeAssistantBridge(settings, link.publish, bus, submit=recorder.submit,
                                     vote=recorder.vote, room_command=recorder.room_command,
                                     party_command=recorder.party_command,
                                     mode_command=recorder.mode_command)
        for topic in bridge.subscriptions():
            router.raw(topic, bridge.handle)
        self.bridge, self.link, self.bus = bridge, link, bus
        self._task = asyncio.create_task(
            link.run(router, on_connect=lambda: bus.emit(BrokerConnected())))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def run() -> Any:
            result = fn(*args)
            return await result if asyncio.iscoroutine(result) else result
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(15)

    def stop(self) -> None:
        async def stop() -> None:
            assert self.link is not None and self._task is not None
            await self.link.flush()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.call(stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def prefix() -> str:
    return f"ha-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def ha(broker_port: int, prefix: str) -> Iterator[MqttProbe]:
    """Home Assistant's side: everything under the discovery prefix."""
    probe = MqttProbe(HOST, broker_port, prefix)
    yield probe
    probe.close()


def _settings(tmp_path: Path, port: int, base: str, prefix: str,
              rooms: dict[str, Any] = ROOMS) -> Settings:
    return Settings(state_dir=tmp_path / "state", rooms=rooms, mqtt={
        "host": HOST, "port": port, "base_topic": base, "discovery_prefix": prefix,
        "client_id": f"ha-bridge-{uuid.uuid4().hex[:8]}", "reconnect_max_s": 1})


@pytest.fixture
def start(tmp_path: Path, broker_port: int, base_topic: str, prefix: str, probe: MqttProbe,
          ha: MqttProbe) -> Iterator[Callable[..., tuple[BridgeInThread, Recorder]]]:
    running: list[BridgeInThread] = []

    def make(rooms: dict[str, Any] = ROOMS) -> tuple[BridgeInThread, Recorder]:
        recorder = Recorder()
        bridge = BridgeInThread(_settings(tmp_path, broker_port, base_topic, prefix, rooms),
                                recorder)
        running.append(bridge)
        return bridge, recorder

    yield make
    for bridge in running:
        if bridge.thread.is_alive():
            bridge.stop()
    # Leave no retained messages behind on the shared broker.
    for p in (probe, ha):
        for topic in {m.topic for m in p.messages if m.retain or m.payload}:
            p.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)


def _config_topic(prefix: str, base: str, component: str, object_id: str) -> str:
    return f"{prefix}/{component}/{node_id(base)}/{object_id}/config"


def _panel(probe: MqttProbe, predicate: Callable[[dict], bool]) -> dict:
    return probe.wait(lambda m: m.topic == f"{probe.base}/ha/panel/state"
                      and predicate(m.json())).json()


def test_generate_submits_the_panel_values(start, probe: MqttProbe, ha: MqttProbe,
                                           base_topic: str, prefix: str) -> None:
    _bridge, recorder = start()
    ha.wait(lambda m: m.topic == _config_topic(prefix, base_topic, "button", "generate"))
    _panel(probe, lambda s: s["genre"] == "auto")
    for entity, value in [("prompt", "a song about rain on the roof"), ("genre", "jazz"),
                          ("mood", "relaxing"), ("room", "Living Room"), ("duration", "45"),
                          ("bpm", "95"), ("child_safe", "ON"), ("lyrics_provider", "builtin"),
                          ("genre", "polka"), ("bpm", "900"),  # these three are refused:
                          ("prompt", "rain\x00")]:  # PostgreSQL cannot store a NUL
        probe.publish(f"ha/panel/{entity}/set", value, raw=True)
    state = _panel(probe, lambda s: s["lyrics_provider"] == "builtin")
    assert state == {"prompt": "a song about rain on the roof", "genre": "jazz",
                     "mood": "relaxing", "room": "Living Room", "lyrics_provider": "builtin",
                     "duration": 45.0, "bpm": 95, "party": "OFF", "child_safe": "ON"}
    probe.publish("ha/panel/generate/set", "PRESS", raw=True)
    [request] = recorder.wait("submit")
    assert request == SongRequest(prompt="a song about rain on the roof", genre="jazz",
                                  mood="relaxing", room="living_room", duration_s=45, bpm=95,
                                  child_safe=True, lyrics_provider="builtin",
                                  user="homeassistant")
    # bpm 0 means auto: the next request leaves the tempo to the daemon.
    probe.publish("ha/panel/bpm/set", "0", raw=True)
    _panel(probe, lambda s: s["bpm"] == 0)
    probe.publish("ha/panel/generate/set", "PRESS", raw=True)
    assert recorder.wait("submit", 2)[1].bpm is None


def test_values_survive_a_restart(start, probe: MqttProbe) -> None:
    bridge, _ = start()
    _panel(probe, lambda s: True)
    probe.publish("ha/panel/mood/set", "energetic", raw=True)
    _panel(probe, lambda s: s["mood"] == "energetic")
    bridge.stop()
    probe.messages.clear()
    start()
    assert _panel(probe, lambda s: True)["mood"] == "energetic"


def test_homeassistant_online_republishes_discovery(start, ha: MqttProbe, base_topic: str,
                                                    prefix: str) -> None:
    _bridge, _ = start()
    generate = _config_topic(prefix, base_topic, "button", "generate")
    ha.wait(lambda m: m.topic == generate)
    count = len([m for m in ha.messages if m.topic.endswith("/config")])
    ha.messages.clear()
    ha.client.publish(f"{prefix}/status", "online", qos=1).wait_for_publish(5)
    ha.wait(lambda m: m.topic == generate)
    deadline = time.monotonic() + 5
    while len([m for m in ha.messages if m.topic.endswith("/config")]) < count:
        assert time.monotonic() < deadline, "not every config was re-published"
        time.sleep(0.05)
    config = json.loads(next(m.payload for m in ha.messages if m.topic == generate))
    assert config["availability_topic"] == f"{base_topic}/status"


def test_a_removed_room_loses_its_entities(start, broker_port: int, probe: MqttProbe,
                                           ha: MqttProbe, base_topic: str, prefix: str) -> None:
    bridge, _ = start()
    probe.wait(lambda m: m.topic == f"{base_topic}/ha/rooms"
               and m.json() == ["kids_room", "living_room"])
    kids_volume = _config_topic(prefix, base_topic, "number", "room_kids_room_volume")
    ha.wait(lambda m: m.topic == kids_volume and m.payload)
    # The room's retained state, as the daemon left it before the room was removed.
    for what in ("state", "lyrics"):
        probe.client.publish(f"{base_topic}/room/kids_room/{what}", b'{"room": "kids_room"}',
                             qos=1, retain=True).wait_for_publish(10)
    bridge.stop()
    start(rooms={"living_room": {"name": "Living Room"}})
    ha.wait(lambda m: m.topic == kids_volume and m.payload == b"")
    for what in ("state", "lyrics"):
        probe.wait(lambda m, what=what: m.topic == f"{base_topic}/room/kids_room/{what}"
                   and m.payload == b"")
    probe.wait(lambda m: m.topic == f"{base_topic}/ha/rooms" and m.json() == ["living_room"])
    # A newcomer (Home Assistant starting later) sees only the living room's retained configs.
    time.sleep(0.3)
    late = MqttProbe(HOST, broker_port, prefix)
    try:
        time.sleep(0.5)
        retained = {m.topic for m in late.messages if m.payload}
        assert not any("kids_room" in topic for topic in retained)
        assert _config_topic(prefix, base_topic, "number", "room_living_room_volume") in retained
    finally:
        late.close()
    late = MqttProbe(HOST, broker_port, base_topic)  # the daemon's own topics, retained
    try:
        time.sleep(0.5)
        assert not [m.topic for m in late.messages if m.payload and "kids_room" in m.topic]
    finally:
        late.close()


def test_buttons_switches_and_job_state(start, probe: MqttProbe, base_topic: str) -> None:
    bridge, recorder = start()
    _panel(probe, lambda s: True)
    assert bridge.bridge is not None
    song = SongInfo(id="s1", title="T", prompt="", lyrics="", genre="jazz", mood="relaxing",
                    bpm=90, key="A minor", time_signature="4/4", duration_s=10, language="en",
                    instrumental=False, seed=1, engine="builtin", lyrics_provider="builtin",
                    file="/x.flac", format="flac", created_at=0)
    bridge.call(bridge.bridge.song_ready, song, "j1")
    probe.publish("ha/panel/like/set", "PRESS", raw=True)
    probe.publish("ha/panel/dislike/set", "PRESS", raw=True)
    assert recorder.wait("vote", 2) == [("s1", 1), ("s1", -1)]

    probe.publish("ha/panel/room/set", "Kids Room", raw=True)
    _panel(probe, lambda s: s["room"] == "Kids Room")
    probe.publish("ha/panel/skip/set", "PRESS", raw=True)
    probe.publish("ha/room/living_room/volume/set", "55", raw=True)
    probe.publish("ha/room/living_room/skip/set", "PRESS", raw=True)
    rooms = recorder.wait("room", 3)
    assert rooms == [("kids_room", RoomCommand(action="next")),
                     ("living_room", RoomCommand(action="volume", volume=55)),
                     ("living_room", RoomCommand(action="next"))]

    probe.publish("ha/room/kids_room/sleep/set", "ON", raw=True)
    probe.publish("ha/room/kids_room/sleep/set", "OFF", raw=True)
    assert recorder.wait("mode", 2) == [("kids_room", RoomModeCommand(mode="sleep")),
                                        ("kids_room", RoomModeCommand(mode="normal"))]

    probe.publish("ha/panel/party/set", "ON", raw=True)
    assert recorder.wait("party")[0] == PartyCommand(action="start", rooms="all")
    _panel(probe, lambda s: s["party"] == "ON")
    recorder.fail_party = True
    probe.publish("ha/panel/party/set", "OFF", raw=True)
    error = probe.wait(lambda m: m.topic == f"{base_topic}/event"
                       and m.json().get("type") == "error").json()
    assert error["error"]["code"] == "unsupported"
    time.sleep(0.3)
    latest = list(probe.on("ha/panel/state"))[-1].json()
    assert latest["party"] == "ON"  # HA flips the switch back

    event = JobEvent(job_id="j2", state=JobState.composing, progress=0.4, ts=time.time())
    bridge.call(bridge.bridge.job_changed, event)
    state = probe.wait(lambda m: m.topic == f"{base_topic}/ha/generation"
                       and m.json()["state"] == "composing").json()
    assert state["progress_pct"] == 40 and state["job_id"] == "j2" and state["active_jobs"] == 1
    bridge.call(bridge.bridge.job_changed, event.model_copy(
        update={"state": JobState.done, "progress": 1.0}))
    done = probe.wait(lambda m: m.topic == f"{base_topic}/ha/generation"
                      and m.json()["state"] == "done").json()
    assert done["progress_pct"] == 100 and done["active_jobs"] == 0
