"""The Hermes adapter over the real Mosquitto: Rhasspy's messages in, its answers out.

A test plays Rhasspy with one aiomqtt client (publishes the intent, listens for
endSession and tts/say); the adapter runs on another aiomqtt client exactly as the daemon
would wire it. Every test has its own topic prefix, so parallel runs never meet.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import aiomqtt
import pytest

from cassetted.contract.schemas import SongRequest
from cassetted.voice.hermes import DEFAULT_INTENTS, HermesAdapter, HermesSettings, describe
from tests.voice.conftest import ROOMS

HOST = "127.0.0.1"
SITE_ROOMS = {"kitchen-satellite": "kitchen", "hall-satellite": "hallway"}


class Recorder:
    """A `submit` that records requests and answers like the daemon would."""

    def __init__(self, reply: dict[str, Any] | None = None, fail: bool = False) -> None:
        self.requests: list[SongRequest] = []
        self.reply = reply
        self.fail = fail

    async def __call__(self, request: SongRequest) -> dict[str, Any]:
        self.requests.append(request)
        if self.fail:
            raise RuntimeError("queue exploded")
        return self.reply or {"ok": True, "job_id": f"job-{len(self.requests)}"}


@asynccontextmanager
async def running_adapter(port: int, prefix: str, submit: Recorder, **kwargs: Any
                          ) -> AsyncIterator[HermesAdapter]:
    """The adapter on its own aiomqtt connection, its message loop in a task."""
    async with aiomqtt.Client(HOST, port, identifier=f"adapter-{uuid.uuid4().hex[:8]}") as client:
        async def publish(topic: str, payload: dict[str, Any]) -> None:
            await client.publish(topic, json.dumps(payload), qos=1)

        adapter = HermesAdapter(None, ROOMS, SITE_ROOMS, publish, submit, topic_prefix=prefix, **kwargs)
        for topic in adapter.subscriptions():
            await client.subscribe(topic, qos=1)

        async def loop() -> None:
            async for message in client.messages:
                await adapter.handle(str(message.topic), message.payload)  # type: ignore[arg-type]

        task = asyncio.create_task(loop())
        try:
            yield adapter
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


@asynccontextmanager
async def rhasspy(port: int, prefix: str) -> AsyncIterator[tuple[aiomqtt.Client, asyncio.Queue]]:
    """Rhasspy's side: publishes intents, collects endSession and tts/say in a queue."""
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    async with aiomqtt.Client(HOST, port, identifier=f"rhasspy-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(f"{prefix}/dialogueManager/endSession", qos=1)
        await client.subscribe(f"{prefix}/tts/say", qos=1)

        async def loop() -> None:
            async for message in client.messages:
                await queue.put((str(message.topic), json.loads(message.payload)))  # type: ignore[arg-type]

        task = asyncio.create_task(loop())
        try:
            yield client, queue
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


def intent_payload(text: str, *, session: str = "s-1", site: str = "satellite",
                   slots: list[dict[str, Any]] | None = None,
                   name: str = "cassetted:CreateSong") -> bytes:
    return json.dumps({
        "sessionId": session, "siteId": site, "input": text,
        "intent": {"intentName": name, "confidenceScore": 1.0},
        "slots": slots or [],
    }).encode()


def slot(name: str, value: Any, raw: str | None = None, kind: str = "Unknown") -> dict[str, Any]:
    return {"slotName": name, "entity": name, "rawValue": raw if raw is not None else str(value),
            "value": {"kind": kind, "value": value}}


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 20))


async def next_message(queue: asyncio.Queue,
                       timeout: float = 5) -> tuple[str, dict[str, Any]]:  # noqa: ASYNC109 - a test's wait states its own limit
    return await asyncio.wait_for(queue.get(), timeout)


@pytest.fixture
def prefix() -> str:
    return f"cassetted-test/{uuid.uuid4().hex[:10]}/hermes"


def test_intent_to_request_to_end_session_and_ready(broker_port: int, prefix: str) -> None:
    submit = Recorder()

    async def scenario() -> None:
        async with rhasspy(broker_port, prefix) as (client, queue), \
                running_adapter(broker_port, prefix, submit, tts_lang="en-GB") as adapter:
            await client.publish(f"{prefix}/intent/cassetted:CreateSong", intent_payload(
                "create a relaxing jazz song for the living room", session="abc",
                site="kitchen-satellite"), qos=1)
            topic, answer = await next_message(queue)
            assert topic == f"{prefix}/dialogueManager/endSession"
            assert answer == {"sessionId": "abc",
                              "text": "Making a relaxing jazz song for the living room."}
            request = submit.requests[0]
            assert (request.genre, request.mood, request.room) == ("jazz", "relaxing", "living_room")
            assert request.request_id == "hermes-abc"

            assert await adapter.on_song_ready("job-1", "Blue Sofa") is True
            topic, say = await next_message(queue)
            assert topic == f"{prefix}/tts/say"
            assert say == {"text": "Your song 'Blue Sofa' is ready", "siteId": "kitchen-satellite",
                           "lang": "en-GB"}
            assert await adapter.on_song_ready("job-1", "again") is False  # said once
            assert await adapter.on_song_ready("someone-elses-job", "x") is False

    run(scenario)


def test_slots_win_and_site_gives_the_room(broker_port: int, prefix: str) -> None:
    submit = Recorder()

    async def scenario() -> None:
        async with rhasspy(broker_port, prefix) as (client, queue), \
                running_adapter(broker_port, prefix, submit):
            slots = [slot("genre", "EDM"), slot("mood", "happy"),
                     slot("bpm", 128, "one twenty eight", "Number"),
                     {"slotName": "duration", "rawValue": "two minutes",
                      "value": {"kind": "Duration", "minutes": 2, "seconds": 0}},
                     slot("key", "F sharp minor"), slot("language", "Spanish"),
                     slot("instrumental", True), slot("topic", "my cat")]
            await client.publish(f"{prefix}/intent/CreateSong", intent_payload(
                "make a sad rock song at 90 bpm", slots=slots, site="kitchen-satellite",
                name="CreateSong"), qos=1)
            _, answer = await next_message(queue)
            assert answer["text"] == ("Making an uplifting electronic instrumental about my cat "
                                      "for the kitchen.")
            request = submit.requests[0]
            assert request.genre == "electronic" and request.mood == "uplifting"  # slots win
            assert request.bpm == 128 and request.duration_s == 120.0
            assert request.key == "F# minor" and request.language == "es"
            assert request.instrumental is True and request.prompt == "my cat"
            assert request.room == "kitchen"  # from the satellite

    run(scenario)


def test_room_slot_and_unknown_room(broker_port: int, prefix: str) -> None:
    submit = Recorder()

    async def scenario() -> None:
        async with rhasspy(broker_port, prefix) as (client, queue), \
                running_adapter(broker_port, prefix, submit):
            await client.publish(f"{prefix}/intent/CreateSong", intent_payload(
                "a pop song", slots=[slot("room", "Kids Room")], site="kitchen-satellite",
                name="CreateSong"), qos=1)
            _, answer = await next_message(queue)
            assert answer["text"] == "Making a pop song for the kids room."
            await client.publish(f"{prefix}/intent/CreateSong", intent_payload(
                "a pop song for the garage", session="s-2", site="nowhere", name="CreateSong"), qos=1)
            _, answer = await next_message(queue)
            assert answer == {"sessionId": "s-2",
                              "text": "Making a pop song. I don't know a room called garage."}
            assert submit.requests[1].room is None  # never a guess

    run(scenario)


def test_refusal_and_failure_are_spoken(broker_port: int, prefix: str) -> None:
    async def scenario() -> None:
        async with rhasspy(broker_port, prefix) as (client, queue):
            full = Recorder(reply={"ok": False, "error": {"code": "queue_full", "message": "full"}})
            async with running_adapter(broker_port, prefix, full):
                await client.publish(f"{prefix}/intent/CreateSong",
                                     intent_payload("jazz", name="CreateSong"), qos=1)
                _, answer = await next_message(queue)
                assert answer["text"] == "Sorry, the song queue is full. Please try again later."
            broken = Recorder(fail=True)
            async with running_adapter(broker_port, prefix, broken):
                await client.publish(f"{prefix}/intent/CreateSong",
                                     intent_payload("jazz", session="s-9", name="CreateSong"), qos=1)
                _, answer = await next_message(queue)
                assert answer == {"sessionId": "s-9",
                                  "text": "Sorry, I could not start the song right now."}

    run(scenario)


@pytest.mark.parametrize(("payload", "answer"), [
    (b'{"sessionId": "bad-1", "siteId": "x", "input": "jazz", ',
     "Sorry, I could not understand that request."),
    (b'\xff\xfe{"sessionId": "bad-2"}', "Sorry, I could not understand that request."),
    (b'["sessionId", "bad-3"]', None),
    (b'{"sessionId": "bad-4", "slots": "nope", "input": 7}', "Making a song."),
    ((b'{"sessionId": "bad-5", "slots": [1, null, {"slotName": 3},'
      b' {"slotName": "bpm", "value": {"value": "fast"}}], "input": "jazz"}'), "Making a jazz song."),
    (b"[" * 5000 + b"]" * 5000, None),
    (b"", None),
])
def test_malformed_payloads_never_raise(broker_port: int, prefix: str, payload: bytes,
                                        answer: str | None) -> None:
    submit = Recorder()

    async def scenario() -> None:
        async with rhasspy(broker_port, prefix) as (client, queue), \
                running_adapter(broker_port, prefix, submit) as adapter:
            await client.publish(f"{prefix}/intent/CreateSong", payload, qos=1)
            if answer is None:
                # no session id to answer: a valid message right after still works
                await client.publish(f"{prefix}/intent/CreateSong",
                                     intent_payload("jazz", session="after", name="CreateSong"), qos=1)
                _, reply = await next_message(queue)
                assert reply["sessionId"] == "after"
            else:
                _, reply = await next_message(queue)
                assert reply["text"] == answer
            await adapter.handle("some/other/topic", b"{}")  # not ours: ignored
            await adapter.handle(f"{prefix}/intent/CreateSong", b"\x00" * 100_000)  # too big

    run(scenario)


def test_without_session_the_answer_is_said_on_the_site(broker_port: int, prefix: str) -> None:
    submit = Recorder()

    async def scenario() -> None:
        async with rhasspy(broker_port, prefix) as (client, queue), \
                running_adapter(broker_port, prefix, submit, announce_ready=False) as adapter:
            payload = json.dumps({"siteId": "hall-satellite", "input": "a sad piano sonata"})
            await client.publish(f"{prefix}/intent/CreateSong", payload, qos=1)
            topic, say = await next_message(queue)
            assert topic == f"{prefix}/tts/say"
            assert say == {"text": "Making a melancholic classical song.", "siteId": "hall-satellite"}
            assert submit.requests[0].room is None  # the hall's room is not configured
            assert await adapter.on_song_ready("job-1", "x") is False  # announcements off

    run(scenario)


def test_unit_behaviour_without_broker() -> None:
    async def publish(topic: str, payload: dict[str, Any]) -> None:
        raise ConnectionError("broker gone")

    adapter = HermesAdapter(["MakeMusic"], ROOMS, {}, publish, Recorder())
    assert adapter.subscriptions() == ["hermes/intent/MakeMusic"]
    assert adapter.matches("hermes/intent/MakeMusic") and not adapter.matches("hermes/intent/Other")
    asyncio.run(adapter.handle("hermes/intent/MakeMusic", intent_payload("jazz")))  # publish fails quietly
    with pytest.raises(ValueError, match="MQTT topic"):
        HermesAdapter(["a/#"], ROOMS, {}, publish, Recorder())
    assert HermesSettings().intents == list(DEFAULT_INTENTS)
    settings = HermesSettings(topic_prefix="rhasspy", intents=["X"])
    built = HermesAdapter.from_settings(settings, ROOMS, {}, publish, Recorder())
    assert built.subscriptions() == ["rhasspy/intent/X"]


def test_describe_sentences() -> None:
    assert describe(SongRequest(), ROOMS) == "Making a song."
    assert describe(SongRequest(genre="hip-hop", party=True), ROOMS) == \
        "Making a hip hop song for every room."
    assert describe(SongRequest(mood="energetic", room="emma"), ROOMS) == \
        "Making an energetic song for Emma's Room."


def test_settings_refuse_wildcards_in_intent_names() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        HermesSettings(intents=["Create#Song"])
    with pytest.raises(ValidationError):
        HermesSettings(unknown_key=1)
