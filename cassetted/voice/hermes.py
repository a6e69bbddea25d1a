"""Hermes (Rhasspy) adapter: a recognised intent in, a spoken answer out.

Rhasspy publishes `hermes/intent/<intentName>` with the sentence (`input`), the slots it
filled and the `siteId` of the satellite that heard it; it waits for
`hermes/dialogueManager/endSession` to say something and close the session. This module
turns the intent into a SongRequest (slots first, then the intent parser on `input` for
whatever the slots did not give, then the satellite's room), hands it to `submit`, and
answers the session. When the song is ready, `on_song_ready` says so on the satellite
that asked (`hermes/tts/say`).

It owns no MQTT client: `publish` and `submit` are injected, so the daemon wires it to
its own connection and tests wire it to a real broker. Malformed payloads never raise:
they are answered with an apology when a session id can be found, and logged.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from cassetted.config import DEFAULT_HERMES_INTENTS as DEFAULT_INTENTS
from cassetted.config import HermesSettings, RoomSettings
from cassetted.contract import errors
from cassetted.contract.schemas import MAX_PAYLOAD_BYTES, SongRequest
from cassetted.events import EventBus, SongReady
from cassetted.mqtt import wire
from cassetted.tasks import BackgroundTasks
from cassetted.voice import intent

log = logging.getLogger(__name__)


Publish = Callable[[str, dict[str, Any]], Awaitable[None]]
Submit = Callable[[SongRequest], Awaitable[Mapping[str, Any]]]

# Hermes slot names → SongRequest fields. Rhasspy users name slots freely; these are the
# names the example sentences use plus the obvious variants.
SLOT_FIELDS: dict[str, str] = {
    "genre": "genre", "style": "genre",
    "mood": "mood", "feel": "mood",
    "room": "room", "location": "room", "area": "room", "zone": "room",
    "bpm": "bpm", "tempo": "bpm",
    "duration": "duration_s", "duration_s": "duration_s", "seconds": "duration_s",
    "length": "duration_s", "duration_min": "duration_min", "minutes": "duration_min",
    "key": "key",
    "language": "language", "lang": "language",
    "instrumental": "instrumental",
    "topic": "prompt", "prompt": "prompt", "subject": "prompt", "about": "prompt",
    "party": "party", "child_safe": "child_safe",
}

_SESSION_SNIFF = re.compile(rb'"sessionId"\s*:\s*"([^"\\]{1,128})"')
_UNSPEAKABLE = re.compile(r'[\x00-\x1f\x7f"“”]')  # control characters, double quotes
_TOPIC_SAFE = re.compile(r"^[^#+\x00]{1,128}$")
_MAX_REMEMBERED_JOBS = 1000


def _duration_slot(value: Any) -> Any:
    """Rhasspy's Duration entity ({"kind": "Duration", "minutes": 2, ...}) → seconds."""
    if isinstance(value, Mapping) and value.get("kind") == "Duration":
        total = 0.0
        for unit, seconds in (("hours", 3600), ("minutes", 60), ("seconds", 1)):
            part = value.get(unit, 0)
            if isinstance(part, (int, float)) and not isinstance(part, bool):
                total += part * seconds
        return total
    return value


def _slot_value(slot: Mapping[str, Any]) -> Any:
    value = slot.get("value")
    if isinstance(value, Mapping):
        if value.get("kind") == "Duration":
            return _duration_slot(value)
        value = value.get("value")
    if value is None or isinstance(value, (Mapping, list)):
        value = slot.get("rawValue")
    return value


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def describe(request: SongRequest, rooms: Mapping[str, RoomSettings]) -> str:
    """'Making a relaxing jazz song for the living room.' — what the person will get."""
    words = [w for w in (request.mood, (request.genre or "").replace("-", " ")) if w]
    noun = "instrumental" if request.instrumental else "song"
    phrase = " ".join([*words, noun])
    text = f"Making {_article(phrase)} {phrase}"
    prompt = request.prompt.strip()
    if prompt and len(prompt) <= 60 and not prompt.lower().startswith("for "):
        text += f" about {prompt}"
    if request.party:
        text += " for every room"
    elif request.room and request.room in rooms:
        name = rooms[request.room].name
        text += f" for {name}" if "'" in name else f" for the {name.lower()}"
    return text + "."


def _error_sentence(reply: Mapping[str, Any]) -> str:
    error = reply.get("error")
    code = error.get("code") if isinstance(error, Mapping) else None
    message = error.get("message") if isinstance(error, Mapping) else None
    if code == "queue_full":
        return "Sorry, the song queue is full. Please try again later."
    if code == "unknown_room":
        return "Sorry, I don't know that room."
    if isinstance(message, str) and 0 < len(message) <= 120:
        return f"Sorry, I could not make that song: {message.rstrip('.')}."
    return "Sorry, I could not make that song."


class HermesAdapter:
    """Hermes intents → SongRequests → spoken answers; one instance per daemon."""

    def __init__(
        self,
        intents: Sequence[str] | None,
        rooms: Mapping[str, RoomSettings],
        site_rooms: Mapping[str, str],
        publish: Publish,
        submit: Submit,
        announce_ready: bool = True,
        *,
        topic_prefix: str = "hermes",
        tts_lang: str | None = None,
        llm: intent.LlmParser | None = None,
    ) -> None:
        names = list(intents) if intents else list(DEFAULT_INTENTS)
        for name in names:
            if not _TOPIC_SAFE.match(name) or "/" in name:
                raise ValueError(f"intent name {name!r} cannot be part of an MQTT topic")
        if not _TOPIC_SAFE.match(topic_prefix):
            raise ValueError(f"topic prefix {topic_prefix!r} is not a valid MQTT topic")
        self.intents = names
        self.rooms = rooms
        self.site_rooms = dict(site_rooms)
        self.announce_ready = announce_ready
        self.prefix = topic_prefix.rstrip("/")
        self.tts_lang = tts_lang
        self._publish = publish
        self._submit = submit
        self._llm = llm
        self._intent_topic = f"{self.prefix}/intent/"
        # job id → siteId of the session that asked, for on_song_ready (bounded).
        self._job_sites: OrderedDict[str, str] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: HermesSettings, rooms: Mapping[str, RoomSettings],
                      site_rooms: Mapping[str, str], publish: Publish, submit: Submit,
                      **kwargs: Any) -> HermesAdapter:
        return cls(settings.intents, rooms, site_rooms, publish, submit, settings.announce_ready,
                   topic_prefix=settings.topic_prefix, tts_lang=settings.tts_lang, **kwargs)

    # ------------------------------------------------------------------ topics

    def subscriptions(self) -> list[str]:
        """The topics to subscribe to: one per configured intent name."""
        return [self._intent_topic + name for name in self.intents]

    def matches(self, topic: str) -> bool:
        """True for a topic `handle` wants (lets a router pass only these)."""
        return topic.startswith(self._intent_topic) and topic[len(self._intent_topic):] in self.intents

    @property
    def end_session_topic(self) -> str:
        return f"{self.prefix}/dialogueManager/endSession"

    @property
    def tts_topic(self) -> str:
        return f"{self.prefix}/tts/say"

    # ------------------------------------------------------------------ inbound

    async def handle(self, topic: str, payload: bytes | bytearray | str) -> None:
        """Answer one Hermes intent message; never raises (errors are logged and spoken)."""
        try:
            await self._handle(topic, bytes(payload, "utf-8") if isinstance(payload, str) else bytes(payload))
        except Exception:  # a bug here must not take the MQTT loop down
            log.exception("hermes: failed to handle a message on %s", topic)

    async def _handle(self, topic: str, raw: bytes) -> None:
        if not self.matches(topic):
            log.debug("hermes: ignoring %s", topic)
            return
        if len(raw) > MAX_PAYLOAD_BYTES:
            await self._apologise(raw, "Sorry, that request was too long.")
            return
        try:
            data = wire.decode_object(raw) if raw else None  # an empty intent is no intent
        except errors.CassettedError:
            data = None
        if data is None:
            log.warning("hermes: malformed intent payload on %s", topic)
            await self._apologise(raw, "Sorry, I could not understand that request.")
            return

        session, site, said = data.get("sessionId"), data.get("siteId"), data.get("input")
        session_id = session if isinstance(session, str) else None
        site_id = (site if isinstance(site, str) else "default")[:128]
        text = said if isinstance(said, str) else ""

        request, unknown_room, warnings = self.request_from_intent(data, text, site_id, session_id)
        for warning in warnings:
            log.info("hermes: %s", warning)
        if request is None:
            await self._say_end(session_id, site_id, "Sorry, I could not make sense of that request.")
            return
        try:
            reply = await self._submit(request)
        except Exception:
            log.exception("hermes: submitting the request failed")
            await self._say_end(session_id, site_id, "Sorry, I could not start the song right now.")
            return
        if isinstance(reply, Mapping) and reply.get("ok"):
            job_id = reply.get("job_id")
            if isinstance(job_id, str):
                self._remember(job_id, site_id)
            sentence = describe(request, self.rooms)
            if unknown_room:
                sentence += f" I don't know a room called {unknown_room}."
        else:
            sentence = _error_sentence(reply if isinstance(reply, Mapping) else {})
        await self._say_end(session_id, site_id, sentence)

    def request_from_intent(
        self, data: Mapping[str, Any], text: str, site_id: str, session_id: str | None,
    ) -> tuple[SongRequest | None, str | None, list[str]]:
        """Slots, then the parsed `input`, then the site's room → a SongRequest.

        Returns the request (None if it cannot be built), a room name that was asked for
        but is not configured, and the warnings.
        """
        warnings: list[str] = []
        from_slots, unknown_room = self._slot_fields(data.get("slots"), warnings)
        parsed = intent.parse(text, self.rooms, llm=self._llm)
        warnings.extend(parsed.warnings)
        values = {k: v for k, v in parsed.as_dict().items() if v is not None}
        values.update(from_slots)  # what the grammar captured wins over free-text reading
        if unknown_room is None and "room" not in values:
            unknown_room = parsed.unknown_room
        if "room" not in values:
            site_room = intent.room_for_site(site_id, self.rooms, self.site_rooms)
            if site_room is not None:
                values["room"] = site_room
        if session_id and len(session_id) <= 120:
            values["request_id"] = f"hermes-{session_id}"  # a redelivered intent is one job
        try:
            return SongRequest(**values), unknown_room, warnings
        except ValidationError as error:
            warnings.append(f"invalid request from intent: {error.errors()[0]['msg']}")
            return None, unknown_room, warnings

    def _slot_fields(self, slots: Any, warnings: list[str]) -> tuple[dict[str, Any], str | None]:
        if not isinstance(slots, list):
            return {}, None
        mapped: dict[str, Any] = {}
        for slot in slots[:32]:
            if not isinstance(slot, Mapping):
                continue
            name = slot.get("slotName") or slot.get("entity")
            target = SLOT_FIELDS.get(name.strip().lower()) if isinstance(name, str) else None
            if target is None or target in mapped:
                continue
            value = _slot_value(slot)
            if target == "duration_min":
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    mapped.setdefault("duration_s", value * 60)
                continue
            mapped[target] = value
        fields = intent.validate_fields(mapped, self.rooms, warnings, source="slot")
        unknown_room = None
        if "room" in mapped and "room" not in fields and isinstance(mapped["room"], str):
            unknown_room = mapped["room"].strip()[:64] or None
        return fields, unknown_room

    # ------------------------------------------------------------------ outbound

    async def on_song_ready(self, job_id: str, title: str) -> bool:
        """Say 'Your song … is ready' where it was asked for; False if not ours or off."""
        site_id = self._job_sites.pop(job_id, None)
        if not self.announce_ready or site_id is None:
            return False
        clean = " ".join(_UNSPEAKABLE.sub(" ", str(title)[:200]).split())[:100].strip()
        payload: dict[str, Any] = {"text": f"Your song '{clean}' is ready" if clean else "Your song is ready",
                                   "siteId": site_id}
        if self.tts_lang:
            payload["lang"] = self.tts_lang
        return await self._send(self.tts_topic, payload)

    def _remember(self, job_id: str, site_id: str) -> None:
        self._job_sites[job_id] = site_id
        while len(self._job_sites) > _MAX_REMEMBERED_JOBS:
            self._job_sites.popitem(last=False)

    async def _apologise(self, raw: bytes, sentence: str) -> None:
        """Close a session whose payload could not be read, if its id can still be found."""
        session = _SESSION_SNIFF.search(raw[:MAX_PAYLOAD_BYTES])
        if session is None:
            return  # nobody to answer: Rhasspy times the session out by itself
        session_id = session.group(1).decode("utf-8", "replace")
        await self._send(self.end_session_topic, {"sessionId": session_id, "text": sentence})

    async def _say_end(self, session_id: str | None, site_id: str, text: str) -> None:
        """endSession with the sentence; without a session, say it on the site instead."""
        if session_id:
            await self._send(self.end_session_topic, {"sessionId": session_id, "text": text})
        else:
            payload: dict[str, Any] = {"text": text, "siteId": site_id}
            if self.tts_lang:
                payload["lang"] = self.tts_lang
            await self._send(self.tts_topic, payload)

    async def _send(self, topic: str, payload: dict[str, Any]) -> bool:
        try:
            await self._publish(topic, payload)
            return True
        except Exception:
            log.exception("hermes: publishing on %s failed", topic)
            return False


class HermesAnnouncer:
    """Has the adapter say "your song is ready" on the satellite that asked (SongReady),
    unless the song's room is quiet (asleep)."""

    def __init__(self, adapter: HermesAdapter, bus: EventBus,
                 quiet: Callable[[str | None], bool]) -> None:
        self._adapter = adapter
        self._quiet = quiet
        self._tasks = BackgroundTasks("hermes")
        bus.subscribe(SongReady, self._song_ready)

    def _song_ready(self, ready: SongReady) -> None:
        song = ready.song
        if self._quiet(song.room):
            log.info("song %s ready in quiet room %s: not announced", song.id, song.room)
            return
        self._tasks.spawn(self._adapter.on_song_ready(ready.job_id, song.title),
                          f"announce-{ready.job_id}")

    async def stop(self) -> None:
        await self._tasks.cancel_all()
