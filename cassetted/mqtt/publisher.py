"""Job and library events onto MQTT topics, as the event bus tells them.

Retained topics (queue, latest song) are remembered and re-sent on every connection, so a
broker restarted without persistence still shows the current state.

Everything here is readable by every client of the broker, so a private song never shows
in full: `song/latest` carries shared songs only, and a private song's event or room state
says that a song is there, not its title, lyrics, file or URL (its maker finds it with a
library query).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from cassetted.contract.schemas import Event, JobEvent, QueueState, RoomState, SongInfo
from cassetted.events import BrokerConnected, EventBus, JobChanged, QueueChanged, SongReady

log = logging.getLogger(__name__)

Publish = Callable[..., None]
_FLUSH_DELAY_S = 0.2


class ReplyFirst:
    """Replies before bulk, in front of the link's bounded outbox.

    The outbox drops its oldest message when full, so a burst of bulk (discovery, state,
    events) could push out the answers people wait for. Here bulk may fill at most
    `bulk_limit` of the outbox (`backlog` says how full it is): beyond that, retained state
    waits here - only its newest value per topic, it is state - and is sent when the outbox
    has room again, while an event (a moment, worthless late) is dropped with a warning.
    Replies always go straight to the outbox and keep the rest of it for themselves.
    """

    def __init__(self, publish: Publish, backlog: Callable[[], int], bulk_limit: int,
                 base_topic: str) -> None:
        self._publish = publish
        self._backlog = backlog
        self._limit = bulk_limit
        self._event_topic = f"{base_topic}/event"
        self._waiting: dict[str, tuple[bytes | str, dict[str, Any]]] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._dropped = 0

    def reply(self, topic: str, payload: bytes | str, **options: Any) -> None:
        self._publish(topic, payload, **options)

    def command_output(self, topic: str, payload: bytes | str, **options: Any) -> None:
        """The router's publish: its replies are replies, its error events are bulk."""
        if topic == self._event_topic:
            self.bulk(topic, payload, **options)
        else:
            self.reply(topic, payload, **options)

    def bulk(self, topic: str, payload: bytes | str, **options: Any) -> None:
        self._send_waiting()
        if not self._waiting and self._backlog() < self._limit:
            self._publish(topic, payload, **options)
        elif options.get("retain"):
            self._waiting.pop(topic, None)  # keep the order of the newest values
            self._waiting[topic] = (payload, options)
            self._schedule()
        else:
            self._dropped += 1
            if self._dropped in (1, 10, 100) or self._dropped % 1000 == 0:
                log.warning("MQTT outbox busy with bulk: %d events dropped so far, replies "
                            "kept", self._dropped)

    def _send_waiting(self) -> None:
        while self._waiting and self._backlog() < self._limit:
            topic = next(iter(self._waiting))
            payload, options = self._waiting.pop(topic)
            self._publish(topic, payload, **options)

    def _schedule(self) -> None:
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(_FLUSH_DELAY_S, self._tick)

    def _tick(self) -> None:
        self._flush = None
        self._send_waiting()
        if self._waiting:
            self._schedule()


class LatestWins:
    """State whose latest value is all that matters (the queue, Home Assistant's generation
    sensor), published at most every `interval_s` per topic: at once when the topic was
    quiet, else at the end of the interval with the newest value. A burst of a thousand
    requests then costs ten messages a second on these topics instead of a thousand, and
    the final value is always sent."""

    def __init__(self, publish: Publish, interval_s: float = 0.1) -> None:
        self._publish = publish
        self._interval = interval_s
        self._sent_at: dict[str, float] = {}
        self._waiting: dict[str, tuple[bytes | str, dict[str, Any]]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def send(self, topic: str, payload: bytes | str, **options: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a unit test, a shutdown): nothing to wait on
            self._publish(topic, payload, **options)
            return
        now = loop.time()
        if topic not in self._waiting and now - self._sent_at.get(topic, -1e9) >= self._interval:
            self._sent_at[topic] = now
            self._publish(topic, payload, **options)
            return
        self._waiting[topic] = (payload, options)
        if self._timer is None:
            self._timer = loop.call_at(self._sent_at[topic] + self._interval, self._flush)

    def _flush(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        for topic in [t for t in self._waiting if now - self._sent_at[t] >= self._interval]:
            payload, options = self._waiting.pop(topic)
            self._sent_at[topic] = now
            self._publish(topic, payload, **options)
        if self._waiting:
            due = min(self._sent_at[t] for t in self._waiting) + self._interval
            self._timer = asyncio.get_running_loop().call_at(due, self._flush)


class MqttPublisher:
    """Publishes what the bus says about jobs, the queue and new songs, and the state and
    events other parts hand it; re-sends retained state on every (re)connection."""

    def __init__(self, base_topic: str, publish: Publish, bus: EventBus) -> None:
        self._base = base_topic
        self._publish = publish
        self._retained: dict[str, str] = {}
        self._state = LatestWins(publish)
        bus.subscribe(BrokerConnected, lambda connected: self.republish())
        bus.subscribe(JobChanged, lambda changed: self.job_changed(changed.event))
        bus.subscribe(QueueChanged, lambda changed: self.queue_changed(changed.state))
        bus.subscribe(SongReady, lambda ready: self.song_ready(ready.song, ready.job_id))

    def _retain(self, topic: str, payload: str) -> None:
        self._retained[topic] = payload
        self._publish(topic, payload, retain=True)

    def republish(self) -> None:
        """Called on (re)connection."""
        for topic, payload in self._retained.items():
            self._publish(topic, payload, retain=True)

    def job_changed(self, event: JobEvent) -> None:
        self._publish(f"{self._base}/job/{event.job_id}", event.model_dump_json(exclude_none=True))

    def queue_changed(self, state: QueueState) -> None:
        # Changes with every request: latest wins, at most every 100 ms (see LatestWins).
        topic, payload = f"{self._base}/queue", state.model_dump_json()
        self._retained[topic] = payload
        self._state.send(topic, payload, retain=True)

    def song_ready(self, song: SongInfo, job_id: str) -> None:
        if song.shared:
            self._retain(f"{self._base}/song/latest", song.model_dump_json())
            event = Event(  # Event allows extra fields (extra="allow")
                type="song_ready", ts=time.time(), job_id=job_id, song_id=song.id, room=song.room,
                title=song.title, file=song.file)
        else:
            event = Event(type="song_ready", ts=time.time(), job_id=job_id, song_id=song.id,
                          room=song.room)
        self.event(event)

    def room_state(self, room: str, state: RoomState) -> None:
        if state.song is not None and not state.song.shared:
            state = state.model_copy(update={"song": public_view(state.song)})
        self._retain(f"{self._base}/room/{room}/state", state.model_dump_json())

    def state(self, relative: str, model: BaseModel) -> None:
        """A retained state topic under the base (`library/stats`, `party/state`, ...)."""
        self._retain(f"{self._base}/{relative}", model.model_dump_json())

    def event(self, event: Event) -> None:
        self._publish(f"{self._base}/event", event.model_dump_json(exclude_none=True))


def public_view(song: SongInfo) -> SongInfo:
    """What everybody may know of a private song: that it is there, not what it says."""
    return song.model_copy(update={"title": "Private song", "prompt": "", "lyrics": "",
                                   "file": "", "url": None})
