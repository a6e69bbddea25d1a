"""The daemon's event bus: how its parts hear about each other without holding each other.

A part that has news emits a small typed event; the parts that care subscribed to that
event's type when they were built. Nobody calls back into the emitter, so the object graph
stays a tree: the daemon builds the core (store, MQTT link, playback, job runner) first and
the features (party, modes, karaoke, Hermes, Home Assistant) on top, each subscribing to
what it follows (zigbee2mqtt's extensions work the same way).

Rules of the bus:
- Handlers run synchronously on the event loop, in subscription order, and must not block;
  one that has slow work to do hands it to its own `cassetted.tasks.BackgroundTasks`.
- A handler's exception is logged with its traceback and does not reach the emitter or the
  other handlers: a broken listener must not cost a request or a song.
- Parts subscribe in their constructor. Every part is built before any part starts, so no
  event emitted by a `start()` is missed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cassetted.contract.schemas import Event, JobEvent, QueueState, SongInfo

if TYPE_CHECKING:
    from cassetted.playback.base import ZoneStatus

log = logging.getLogger(__name__)

E = TypeVar("E")


@dataclass(frozen=True)
class BrokerConnected:
    """The MQTT link is (re)connected: retained state and discovery go out again."""


@dataclass(frozen=True)
class JobChanged:
    """A job moved (queued, running with progress, done, failed, cancelled...)."""

    event: JobEvent


@dataclass(frozen=True)
class QueueChanged:
    """The queue's length, running jobs or estimate changed."""

    state: QueueState


@dataclass
class SongReady:
    """A song entered the library. Heard before the runner hands it to its room: a part
    that plays the song itself (the party plays songs in voted order) calls `hold()`, and
    the runner then leaves the song out of its room."""

    song: SongInfo
    job_id: str
    held_by: list[str] = field(default_factory=list)

    def hold(self, by: str) -> None:
        self.held_by.append(by)


@dataclass(frozen=True)
class PlaybackChanged:
    """Playback said something: `song_started`, `song_finished`, `party_started`, ..."""

    event: Event


@dataclass(frozen=True)
class RoomExtras:
    """What a part outside playback adds to a room's retained state (its mode, what the
    household learned there). Playback keeps the latest values per source and re-publishes
    the room when they change."""

    room_id: str
    source: str
    values: dict[str, Any]


@dataclass(frozen=True)
class PartyFeed:
    """What the MPD feeding the party stream reports (its song, position, queue): the party
    host follows it to advance its voted queue."""

    status: ZoneStatus


class EventBus:
    """Typed publish/subscribe inside one process; see the module docstring."""

    def __init__(self) -> None:
        self._handlers: defaultdict[type, list[Callable[[Any], None]]] = defaultdict(list)

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> None:
        self._handlers[kind].append(handler)

    def emit(self, event: object) -> None:
        for handler in tuple(self._handlers.get(type(event), ())):
            try:
                handler(event)
            except Exception:  # a listener's failure is logged, never spread
                log.exception("a handler of %s failed (%s)", type(event).__name__,
                              getattr(handler, "__qualname__", handler))

    def subscribers(self, kind: type) -> int:
        """How many handlers follow `kind` (for the daemon's start log and tests)."""
        return len(self._handlers.get(kind, ()))
