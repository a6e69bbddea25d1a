"""Intake glue: free text (a voice command, a prompt) to a SongRequest via the intent parser."""

from __future__ import annotations

from cassetted import intent
from cassetted.config import Settings
from cassetted.schemas import SongRequest, VoiceCommand


def read_prompt(prompt: str) -> tuple[str | None, str | None]:
    """Genre and mood a prompt names ("a relaxing jazz song"), for requests that left them out."""
    parsed = intent.parse(prompt, {})
    return parsed.request.genre, parsed.request.mood


def voice_request(command: VoiceCommand, settings: Settings) -> tuple[SongRequest, list[str]]:
    """A voice command as a request. The room: what the utterance says, else the payload's
    room, else the room of the satellite that heard it, else the configured default."""
    rooms = settings.rooms
    default_room = (command.room
                    or intent.room_for_site(command.site_id, rooms, settings.voice.site_rooms)
                    or settings.voice.default_room)
    parsed = intent.parse(command.text, rooms, default_room=default_room)
    request = parsed.request.model_copy(update={
        "user": command.user, "request_id": command.request_id,
    })
    return request, list(parsed.warnings)
