"""Job and library events onto MQTT topics: the daemon's JobListener.

Retained topics (queue, latest song) are remembered and re-sent on every connection, so a
broker restarted without persistence still shows the current state.

Everything here is readable by every client of the broker, so a private song never shows
in full: `song/latest` carries shared songs only, and a private song's event or room state
says that a song is there, not its title, lyrics, file or URL (its maker finds it with a
library query).
"""

from __future__ import annotations

import time
from typing import Callable

from pydantic import BaseModel

from cassetted.schemas import Event, JobEvent, QueueState, RoomState, SongInfo

Publish = Callable[..., None]


class MqttPublisher:
    """Implements cassetted.jobs.JobListener by publishing through the MQTT link."""

    def __init__(self, base_topic: str, publish: Publish) -> None:
        self._base = base_topic
        self._publish = publish
        self._retained: dict[str, str] = {}

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
        self._retain(f"{self._base}/queue", state.model_dump_json())

    def song_ready(self, song: SongInfo, job_id: str) -> None:
        if song.shared:
            self._retain(f"{self._base}/song/latest", song.model_dump_json())
            event = Event(type="song_ready", ts=time.time(), job_id=job_id, song_id=song.id,
                          room=song.room, title=song.title, file=song.file)
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
