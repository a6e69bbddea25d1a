"""Intake glue: free text (a voice command, a prompt) to a SongRequest via the intent parser."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import Genre, Mood, SongRequest, VoiceCommand
from cassetted.voice import intent

if TYPE_CHECKING:
    from cassetted.store.credentials import CredentialStore, Secret
    from cassetted.store.database import Store
    from cassetted.voice.llm import Credentials

T = TypeVar("T")


# "My name is Sarah, create chill electronic": a guest says who they are first.
_SPEAKER = re.compile(r"^\W*(?:hi|hello|hey)?\W*(?:my name is|my name's|call me)\s+"
                      r"(?P<name>[^\W\d_][\w'-]{0,30}(?:\s+[^\W\d_][\w'-]{0,30})?)\s*"
                      r"(?:[,.;:!-]+|\band\b)\s*", re.IGNORECASE)
# "How many songs can I create?", "what's my quota"
_QUOTA_QUESTION = re.compile(r"\bhow many\b.{0,20}\b(?:songs?|tracks?)\b.{0,30}\b(?:can|may|do)\b"
                             r"|\bmy (?:song )?quota\b|\bsongs? (?:do i have )?left\b",
                             re.IGNORECASE)


def speaker(text: str) -> tuple[str | None, str]:
    """The name a speaker gives at the start of an utterance, and the rest of it."""
    found = _SPEAKER.match(text)
    if found is None:
        return None, text
    return found["name"], text[found.end():] or text


def asks_quota(text: str) -> bool:
    """Whether an utterance asks how many songs the speaker may still make."""
    return _QUOTA_QUESTION.search(text) is not None


def read_prompt(prompt: str) -> tuple[Genre | None, Mood | None]:
    """Genre and mood a prompt names ("a relaxing jazz song"), for requests that left them out."""
    parsed = intent.parse(prompt, {})
    return parsed.request.genre, parsed.request.mood


def voice_request(command: VoiceCommand, settings: Settings,
                  credentials: Credentials | None = None) -> tuple[SongRequest, list[str]]:
    """A voice command as a request. The room: what the utterance says, else the payload's
    room, else the room of the satellite that heard it, else the configured default.

    Blocking when `[voice] llm_fallback` is on: an utterance without genre and mood is then
    also read by the lyrics chain's LLM, with the asking user's keys from `credentials`
    (run it in a thread)."""
    rooms = settings.rooms
    default_room = (command.room
                    or intent.room_for_site(command.site_id, rooms, settings.voice.site_rooms)
                    or settings.voice.default_room)
    llm = None
    if settings.voice.llm_fallback:
        from cassetted.voice.llm import intent_llm

        llm = intent_llm(settings, credentials, command.user)
    name, text = speaker(command.text)
    parsed = intent.parse(text, rooms, default_room=default_room, llm=llm)
    if not settings.voice.any_utterance and not intent.is_song_request(text, parsed):
        raise errors.NotUnderstood(
            "that does not ask for a song: name a genre or a mood, or say 'song', 'play', "
            "'make'... ([voice] any_utterance makes a song of any sentence)", "text")
    request = parsed.request.model_copy(update={
        "user": command.user or name, "request_id": command.request_id,
    })
    warnings = list(parsed.warnings)
    if llm is not None and llm.failed and not any("LLM" in w for w in warnings):
        warnings.append(f"LLM parse failed ({'; '.join(llm.problems)}); ignored")
    return request, warnings


class StoreThreadCredentials:
    """A CredentialStore read on the Store's own thread, which owns the database connection,
    for code that runs in a worker thread while the event loop `loop` runs."""

    def __init__(self, credentials: CredentialStore, store: Store,
                 loop: asyncio.AbstractEventLoop, timeout_s: float = 10.0) -> None:
        self._credentials = credentials
        self._store = store
        self._loop = loop
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return "StoreThreadCredentials(<keys hidden>)"

    def get(self, provider: str, user: str | None = None) -> Secret | None:
        return self._on_store_thread(self._credentials.get, provider, user)

    def _on_store_thread(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError("StoreThreadCredentials must not be read on the event loop")
        future = asyncio.run_coroutine_threadsafe(self._store.call(fn, *args), self._loop)
        try:
            return future.result(self._timeout_s)
        except TimeoutError:
            future.cancel()
            raise
