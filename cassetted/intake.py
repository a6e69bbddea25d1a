"""Intake glue: free text (a voice command, a prompt) to a SongRequest via the intent parser."""

from __future__ import annotations

from collections.abc import Mapping

from cassetted import intent
from cassetted.config import RoomSettings
from cassetted.schemas import SongRequest, VoiceCommand


def read_prompt(prompt: str) -> tuple[str | None, str | None]:
    """Genre and mood a prompt names ("a relaxing jazz song"), for requests that left them out."""
    parsed = intent.parse(prompt, {})
    return parsed.request.genre, parsed.request.mood


def voice_request(command: VoiceCommand,
                  rooms: Mapping[str, RoomSettings]) -> tuple[SongRequest, list[str]]:
    """A voice command as a request: the utterance speaks first, the payload's room fills in."""
    parsed = intent.parse(command.text, rooms, default_room=command.room)
    request = parsed.request.model_copy(update={
        "user": command.user, "request_id": command.request_id,
    })
    return request, list(parsed.warnings)
