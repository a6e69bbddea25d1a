"""The values behind the Home Assistant panel: prompt, selects, numbers, switches.

Home Assistant sends plain strings ("jazz", "120", "ON"); `Panel.apply` validates each one
and keeps the last good value, so a bad command never corrupts what "Generate" will use.
Values survive restarts in a small JSON file in the state directory (written atomically),
and `request()` turns them into the SongRequest the Generate button submits.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TypeVar

from cassetted.config import Settings
from cassetted.contract.homeassistant import PanelState
from cassetted.contract.schemas import (
    GENRES,
    MAX_BPM,
    MAX_DURATION_S,
    MIN_BPM,
    MIN_DURATION_S,
    MOODS,
    Genre,
    Mood,
    SongRequest,
)
from cassetted.homeassistant.discovery import BPM_AUTO, TEXT_MAX, PanelOptions

log = logging.getLogger(__name__)

AUTO = "auto"
NO_ROOM = "none"
DEFAULT_PROVIDER = "default"
STATE_FILE_NAME = "homeassistant-panel.json"
HA_USER = "homeassistant"

_Option = TypeVar("_Option", bound=str)  # a select's option: a Genre, a Mood, a provider name


class PanelValueError(ValueError):
    """A value Home Assistant sent that the panel cannot take (logged, never raised out)."""


@dataclass(frozen=True)
class Values:
    """The panel's current values, in domain terms (None = let the daemon choose)."""

    prompt: str = ""
    genre: Genre | None = None
    mood: Mood | None = None
    room: str | None = None
    lyrics_provider: str | None = None
    duration_s: float = 120.0
    bpm: int | None = None
    party: bool = False
    child_safe: bool = False
    latest_song_id: str | None = None


def _room_labels(settings: Settings) -> dict[str, str]:
    """Room id -> select option: the room's name, made unique with the id when names clash."""
    names = [room.name for room in settings.rooms.values()]
    labels: dict[str, str] = {}
    for room_id, room in settings.rooms.items():
        label = room.name if names.count(room.name) == 1 else f"{room.name} ({room_id})"
        if label in (NO_ROOM, *labels.values()):
            label = room_id
        labels[room_id] = label
    return labels


class Panel:
    """Validates, remembers and persists the panel's values."""

    def __init__(self, settings: Settings, state_file: Path | None = None) -> None:
        self._settings = settings
        self._labels = _room_labels(settings)
        self._ids = {label: room_id for room_id, label in self._labels.items()}
        self._providers = tuple(settings.lyrics.provider_names)
        self._file = state_file
        self.values = Values(duration_s=float(settings.generation.default_duration_s),
                             room=settings.voice.default_room
                             if settings.voice.default_room in settings.rooms else None)
        if state_file is not None:
            self._load(state_file)

    # ------------------------------------------------------------------ options

    def options(self) -> PanelOptions:
        return PanelOptions(
            genres=(AUTO, *GENRES), moods=(AUTO, *MOODS),
            room_options=(NO_ROOM, *self._labels.values()),
            provider_options=(DEFAULT_PROVIDER, *self._providers),
            rooms={room_id: room.name for room_id, room in self._settings.rooms.items()},
        )

    # ------------------------------------------------------------------ commands

    def apply(self, entity: str, text: str) -> Values:
        """Set one value from what HA sent; raises PanelValueError and keeps the old value."""
        text = text.strip() if entity != "prompt" else text
        v = self.values
        if entity == "prompt":
            if len(text) > TEXT_MAX:
                raise PanelValueError(f"prompt is longer than {TEXT_MAX} characters")
            v = replace(v, prompt=text.strip())
        elif entity == "genre":
            v = replace(v, genre=self._choice(text, GENRES, "genre"))
        elif entity == "mood":
            v = replace(v, mood=self._choice(text, MOODS, "mood"))
        elif entity == "room":
            if text != NO_ROOM and text not in self._ids and text not in self._labels:
                raise PanelValueError(f"unknown room {text!r}")
            v = replace(v, room=None if text == NO_ROOM else self._ids.get(text, text))
        elif entity == "lyrics_provider":
            v = replace(v, lyrics_provider=None if text == DEFAULT_PROVIDER
                        else self._choice(text, self._providers, "lyrics provider"))
        elif entity == "duration":
            seconds = self.number(text)
            if not MIN_DURATION_S <= seconds <= MAX_DURATION_S:
                raise PanelValueError(f"duration must be {MIN_DURATION_S}-{MAX_DURATION_S} s")
            v = replace(v, duration_s=seconds)
        elif entity == "bpm":
            bpm = round(self.number(text))
            if bpm > MAX_BPM or bpm < 0:
                raise PanelValueError(f"bpm must be 0 (auto) or {MIN_BPM}-{MAX_BPM}")
            v = replace(v, bpm=bpm if bpm >= MIN_BPM else None)  # below 30 means auto
        elif entity in ("party", "child_safe"):
            if text not in ("ON", "OFF"):
                raise PanelValueError(f"{entity} must be ON or OFF")
            on = text == "ON"
            v = replace(v, party=on) if entity == "party" else replace(v, child_safe=on)
        else:
            raise PanelValueError(f"unknown panel entity {entity!r}")
        self.values = v
        self.save()
        return v

    def set_latest_song(self, song_id: str) -> None:
        self.values = replace(self.values, latest_song_id=song_id)
        self.save()

    def set_party(self, on: bool) -> None:
        self.values = replace(self.values, party=on)
        self.save()

    @staticmethod
    def _choice(text: str, allowed: tuple[_Option, ...], what: str) -> _Option | None:
        """The option `text` names (as its type: a Genre, a Mood), None for auto."""
        if text == AUTO:
            return None
        for option in allowed:
            if option == text:
                return option
        raise PanelValueError(f"unknown {what} {text!r}")

    @staticmethod
    def number(text: str) -> float:
        """A finite number from what HA sent ("1e999", "nan" and "inf" are not)."""
        shown = text[:20]
        try:
            number = float(text)
        except ValueError:
            raise PanelValueError(f"{shown!r} is not a number") from None
        if not math.isfinite(number):
            raise PanelValueError(f"{shown!r} is not a finite number")
        return number

    # ------------------------------------------------------------------ outputs

    def state(self) -> PanelState:
        """The retained `<base>/ha/panel/state` payload, in HA's terms (option labels)."""
        v = self.values
        return PanelState(
            prompt=v.prompt,
            genre=v.genre or AUTO,
            mood=v.mood or AUTO,
            room=self._labels.get(v.room, NO_ROOM) if v.room else NO_ROOM,
            lyrics_provider=v.lyrics_provider or DEFAULT_PROVIDER,
            duration=v.duration_s,
            bpm=v.bpm if v.bpm is not None else BPM_AUTO,
            party="ON" if v.party else "OFF",
            child_safe="ON" if v.child_safe else "OFF",
        )

    def request(self) -> SongRequest:
        """The SongRequest "Generate" submits: exactly the panel's current values."""
        v = self.values
        return SongRequest(
            prompt=v.prompt, genre=v.genre, mood=v.mood, bpm=v.bpm, duration_s=v.duration_s,
            room=v.room, child_safe=v.child_safe, lyrics_provider=v.lyrics_provider,
            party=v.party, user=HA_USER,
        )

    # ------------------------------------------------------------------ persistence

    def save(self) -> None:
        if self._file is None:
            return
        tmp = self._file.with_name(self._file.name + ".tmp")
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(asdict(self.values), sort_keys=True))
            os.replace(tmp, self._file)
        except OSError as error:
            log.warning("cannot save the Home Assistant panel to %s: %s", self._file, error)

    def _load(self, path: Path) -> None:
        """Restore saved values one by one; a value no longer valid (a removed room) is dropped."""
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            log.warning("ignoring unreadable Home Assistant panel file %s: %s", path, error)
            return
        if not isinstance(saved, dict):
            return
        restored = self.values
        for key, value in saved.items():
            if key not in Values.__dataclass_fields__:
                continue
            try:
                candidate = replace(restored, **{key: value})
                self._check(candidate)
            except (TypeError, ValueError, PanelValueError):
                log.info("Home Assistant panel: dropping saved %s=%r", key, value)
                continue
            restored = candidate
        self.values = restored

    def _check(self, v: Values) -> None:
        if not isinstance(v.prompt, str) or len(v.prompt) > TEXT_MAX:
            raise PanelValueError("prompt")
        if v.genre is not None and v.genre not in GENRES:
            raise PanelValueError("genre")
        if v.mood is not None and v.mood not in MOODS:
            raise PanelValueError("mood")
        if v.room is not None and v.room not in self._settings.rooms:
            raise PanelValueError("room")
        if v.lyrics_provider is not None and v.lyrics_provider not in self._providers:
            raise PanelValueError("lyrics_provider")
        if isinstance(v.duration_s, bool) or not isinstance(v.duration_s, (int, float)) \
                or not MIN_DURATION_S <= v.duration_s <= MAX_DURATION_S:
            raise PanelValueError("duration_s")
        if v.bpm is not None and (not isinstance(v.bpm, int) or isinstance(v.bpm, bool)
                                  or not MIN_BPM <= v.bpm <= MAX_BPM):
            raise PanelValueError("bpm")
        for flag in (v.party, v.child_safe):
            if not isinstance(flag, bool):
                raise PanelValueError("flag")
        if v.latest_song_id is not None and not isinstance(v.latest_song_id, str):
            raise PanelValueError("latest_song_id")
