"""Karaoke (issue #9, point 7): remix a library song at a new tempo, lyrics on the mirror.

`karaoke/start` (or "karaoke mode, American Pie at 150 BPM" on `voice`) finds the song and
queues a cover of it at the new bpm through the household's admission, so rooms, quotas
and modes apply as to any song request; the room switches to karaoke mode. The built-in
engine covers by rendering the source's spec at the new tempo (same seed, key, lyrics);
ACE-Step re-performs the source audio. The cover asks for the length that keeps every bar
of the source (`remix_duration`), so the lyrics fall on the same bars, only sooner.

The mirror: when any song with lyrics starts playing in a room, its timed lines (the LRC
sidecar the pipeline wrote beside the audio, see `cassetted.library.lrc`) go to the retained
`<base>/room/<room>/lyrics`; when it finishes, that topic is cleared (no lines). This
happens in every room, not only in karaoke mode: a display that follows the lyrics wants
them whenever there are some, and the retained topic then always tells the truth about
what is playing.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import (
    MAX_BPM,
    MAX_DURATION_S,
    MIN_BPM,
    MIN_DURATION_S,
    KaraokeCommand,
    LyricsDisplay,
    Reply,
    SongInfo,
    SongRequest,
    SongSpec,
    TimeSignature,
    VoiceCommand,
)
from cassetted.events import EventBus, PlaybackChanged
from cassetted.household.identity import Caller
from cassetted.library import access as library
from cassetted.library import lrc
from cassetted.library.access import song_info
from cassetted.store.database import Song, Store
from cassetted.tasks import BackgroundTasks
from cassetted.voice import intent

if TYPE_CHECKING:
    from cassetted.features.modes import RoomModes

log = logging.getLogger(__name__)

PublishLyrics = Callable[[str, LyricsDisplay], None]


class SongDesk(Protocol):
    """Where a song request is admitted and queued (cassetted.api.desk.SongDesk)."""

    async def admit_and_submit(self, request: SongRequest, caller: Caller,
                               echo: bool = False, **extra: object) -> Reply: ...

COVER_SUFFIX = " (cover)"  # how spec.resolve_from_source titles a cover
_TITLE_CANDIDATES = 50

# "karaoke mode, American Pie at 150 BPM", "start karaoke with Yellow Submarine",
# "karaoke: Morning Coffee in the bathroom at 140 bpm"
_VOICE = re.compile(
    r"^\W*(?:(?:please|start|begin|turn on|let'?s do|do)\s+)*karaoke(?:\s+mode)?\b[\s,:;.!-]*"
    r"(?:(?:with|for|of|to|sing|play)\s+)?(?P<rest>.*?)[\s.!?]*$", re.IGNORECASE)
_BPM = re.compile(r"[\s,]*(?:(?:\bat|@)\s*(?P<at>\d{2,3})(?:\s*(?:bpm|beats(?:\s+per\s+minute)?))?"
                  r"|\b(?P<n>\d{2,3})\s*(?:bpm|beats(?:\s+per\s+minute)?))\s*$", re.IGNORECASE)
_WHERE = re.compile(r"[\s,]+(?:in|for)\s+", re.IGNORECASE)


def remix_duration(duration_s: float, source_bpm: int, bpm: int) -> float:
    """The length of a remix at `bpm` that keeps every bar of a song at `source_bpm`.

    The music speeds up; the ring-out after the last bar (1.5 s, or a tenth of a short
    song, as the arranger leaves it) does not, so the remix has exactly the source's bars
    and form, and its lines start at the source's times x source_bpm / bpm.
    """
    music = (duration_s - min(1.5, 0.1 * duration_s)) * source_bpm / bpm
    length = music + 1.5 if music >= 13.5 else music / 0.9
    return round(min(MAX_DURATION_S, max(MIN_DURATION_S, length + 0.01)), 2)


def _find_source(song_id: str | None, title: str | None, caller: Caller) -> Song:
    """The song to remix: by id, or the newest whose title contains `title` (any case),
    among the songs the caller may see. An original wins over an earlier karaoke cover of
    it, so asking twice does not make a cover of a cover. Store thread."""
    visible = library.visible(Song.select(), caller)
    if song_id is not None:
        song = visible.where(Song.id == song_id).first()
        if song is None:
            raise errors.UnknownSong(f"no song {song_id!r}", "song_id")
        return cast("Song", song)
    assert title is not None
    matches = list(visible.where(Song.title.contains(title))
                   .order_by(Song.created_at.desc(), Song.id.desc()).limit(_TITLE_CANDIDATES))
    if not matches:
        raise errors.UnknownSong(f"no song titled like {title!r}", "title")
    return cast("Song", next((s for s in matches if not s.title.endswith(COVER_SUFFIX)), matches[0]))


def _spec_of(song: SongInfo) -> SongSpec:
    """The spec a stored song was made from (what the timings are computed from)."""
    return SongSpec(
        prompt=song.prompt, genre=song.genre, mood=song.mood, bpm=song.bpm, key=song.key,
        time_signature=cast("TimeSignature", song.time_signature), duration_s=song.duration_s,
        language=song.language,
        instrumental=song.instrumental, seed=song.seed, title=song.title, lyrics=song.lyrics)


def timed_lyrics(song: SongInfo) -> tuple[str, list[lrc.TimedLine]]:
    """The LRC of a stored song and its lines: its sidecar, else computed from its spec
    (songs made before sidecars existed). Blocking (a file read, maybe an arrangement)."""
    sidecar = lrc.sidecar_path(Path(song.file))
    try:
        text = sidecar.read_text(encoding="utf-8")
    except OSError:
        lines = lrc.timed_lines(_spec_of(song), song.engine)
        text = lrc.to_lrc(lines, song.title, lrc.ARTIST, song.duration_s) if lines else ""
    return text, lrc.parse_lrc(text)


class Karaoke:
    """`karaoke/start`, the karaoke voice command, and the lyrics display of every room."""

    def __init__(self, settings: Settings, store: Store, bus: EventBus, *, desk: SongDesk,
                 modes: RoomModes, publish_lyrics: PublishLyrics) -> None:
        self._settings = settings
        self._store = store
        self._desk = desk    # admits and queues the remix like any song request
        self._modes = modes  # the room goes into karaoke mode
        self._publish_lyrics = publish_lyrics
        self._playing: dict[str, str | None] = {}  # room -> the song its display shows
        self._tasks = BackgroundTasks("karaoke")
        bus.subscribe(PlaybackChanged, self._playback_changed)

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    # ------------------------------------------------------------------ starting karaoke

    async def start_as(self, command: KaraokeCommand, caller: Caller) -> Reply:
        """Queue the remix and put the room in karaoke mode; the reply names the source."""
        if command.song_id is None and not command.title:
            raise errors.InvalidPayload("karaoke needs song_id or title", "song_id")
        if command.room is not None:
            self._settings.room(command.room)
        source = await self._store.call(_find_source, command.song_id, command.title, caller)
        request = SongRequest(
            task="cover", source_song_id=source.id, bpm=command.bpm, room=command.room,
            duration_s=remix_duration(source.duration_s, source.bpm, command.bpm),
            user=command.user, request_id=command.request_id)
        extras: dict[str, Any] = {"source_song_id": source.id, "title": source.title,
                                  "bpm": command.bpm, "source_bpm": source.bpm}
        reply = await self._desk.admit_and_submit(request, caller, **extras)
        if command.room is not None:
            try:
                self._modes.set_karaoke(command.room, True)
                reply = reply.model_copy(update={"mode": "karaoke"})
            except errors.CassettedError as error:  # the song is queued: say so, and why not
                log.warning("room %s stays out of karaoke mode: %s", command.room, error.message)
                reply = reply.model_copy(update={"warnings": [error.message]})
        return reply

    async def voice(self, command: VoiceCommand, caller: Caller) -> Reply | None:
        """"Karaoke mode, American Pie at 150 BPM": a karaoke start; None for any other
        utterance (the intent parser's). Without a bpm, the middle of [karaoke] bpm_min..max;
        the room: one the utterance ends with ("... in the bathroom"), else as for songs."""
        match = _VOICE.match(command.text)
        if match is None:
            return None
        settings = self._settings
        rest, bpm, room = match["rest"], None, None
        for _ in range(2):  # a tempo and a room, in either order, at the end
            said = _BPM.search(rest)
            if bpm is None and said is not None:
                bpm, rest = int(said["at"] or said["n"]), rest[:said.start()]
                continue
            if room is None:
                room, rest = self._trailing_room(rest)
        title = rest.strip(" ,.!?\"'")
        if not title:
            raise errors.InvalidPayload(
                'say which song, e.g. "karaoke mode, American Pie at 150 BPM"', "text")
        if bpm is None:
            bpm = (settings.karaoke.bpm_min + settings.karaoke.bpm_max) // 2
        if not MIN_BPM <= bpm <= MAX_BPM:
            raise errors.InvalidPayload(f"karaoke tempo must be {MIN_BPM} to {MAX_BPM} bpm", "text")
        room = (room or command.room
                or intent.room_for_site(command.site_id, settings.rooms, settings.voice.site_rooms)
                or settings.voice.default_room)
        karaoke = KaraokeCommand(title=title, bpm=bpm, room=room, user=command.user,
                                 request_id=command.request_id)
        return await self.start_as(karaoke, caller)

    def _trailing_room(self, text: str) -> tuple[str | None, str]:
        """("bathroom", "American Pie") from "American Pie in the bathroom"; a phrase that
        names no room stays in the title ("Singing in the Rain")."""
        for where in reversed(list(_WHERE.finditer(text))):
            room = intent.resolve_room(text[where.end():].strip(" ,.!?"), self._settings.rooms)
            if room is not None:
                return room, text[:where.start()]
        return None, text

    # ------------------------------------------------------------------ the lyrics display

    def _playback_changed(self, changed: PlaybackChanged) -> None:
        """The display follows what plays in the room; never blocks."""
        event = changed.event
        room = event.room
        if room is None:
            return
        if event.type == "song_finished":
            self._playing[room] = None
            self._publish_lyrics(room, LyricsDisplay(room=room))
        elif event.type == "song_started" and event.song_id is not None:
            self._playing[room] = event.song_id
            self._tasks.spawn(self._show(room, event.song_id, event.ts), f"lyrics-{room}",
                              replace=True)

    async def _show(self, room: str, song_id: str, started_at: float) -> None:
        try:
            row = await self._store.call(Song.get_or_none, Song.id == song_id)
            if row is None or not row.shared:  # the display topic is anybody's to read
                return
            song = song_info(row, self._settings)
            text, lines = await asyncio.to_thread(timed_lyrics, song)
        except Exception:
            log.exception("room %s: no lyrics display for song %s", room, song_id)
            return
        if self._playing.get(room) != song_id:  # finished (or replaced) meanwhile
            return
        self._publish_lyrics(room, LyricsDisplay(
            room=room, song_id=song_id, title=song.title, lrc=text,
            lines=[{"t": round(t, 2), "text": line} for t, line in lines],
            started_at=started_at))
