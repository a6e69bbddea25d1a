"""`cassetted request`: publish a song request to the running daemon and follow its job."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cassetted.config import MqttSettings
from cassetted.contract.schemas import JobState, SongRequest
from cassetted.mqtt.client import make_client

# `ready` ends the wait: the file exists even if playback keeps the job open.
_FINAL = {JobState.ready.value, JobState.done.value, JobState.failed.value, JobState.cancelled.value}


async def follow_request(settings: MqttSettings, request: SongRequest, timeout_s: float,
                         progress: Callable[[float, str], None]) -> dict[str, Any]:
    """Send the request, then return the job's last event (done, failed or cancelled)."""
    base = settings.base_topic
    reply_topic = f"{base}/cli/{uuid.uuid4().hex}/reply"
    payload = request.model_dump(exclude_none=True)
    properties = None
    if settings.protocol == "5":
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = reply_topic
        properties.CorrelationData = uuid.uuid4().bytes
    else:
        payload["reply_to"] = reply_topic

    async with make_client(settings) as client:
        # Subscribe to every job topic first: events may come before the reply does.
        await client.subscribe(reply_topic, qos=1)
        await client.subscribe(f"{base}/job/+", qos=1)
        await client.publish(f"{base}/song/create", json.dumps(payload), qos=1,
                             properties=properties)
        return await asyncio.wait_for(_follow(client, base, reply_topic, progress), timeout_s)


async def _follow(client: Any, base: str, reply_topic: str,
                  progress: Callable[[float, str], None]) -> dict[str, Any]:
    job_id: str | None = None
    early: dict[str, list[dict[str, Any]]] = {}
    async for message in client.messages:
        data = json.loads(message.payload)
        if message.topic.value == reply_topic:
            if not data.get("ok"):
                return {"state": "failed", "error": data.get("error")}
            job_id = data["job_id"]
            for event in early.pop(job_id, []):
                if (final := _show(event, progress)) is not None:
                    return final
            early.clear()
            continue
        event_job = message.topic.value.rsplit("/", 1)[-1]
        if job_id is None:
            early.setdefault(event_job, []).append(data)
        elif event_job == job_id and (final := _show(data, progress)) is not None:
            return final
    raise ConnectionError("the broker closed the connection")


def _show(event: dict[str, Any], progress: Callable[[float, str], None]) -> dict[str, Any] | None:
    progress(float(event.get("progress", 0.0)), event.get("state", ""))
    return event if event.get("state") in _FINAL else None
