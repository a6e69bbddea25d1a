"""The command handlers of the MQTT contract: each takes a validated payload, returns a Reply.

They translate between the wire and the domain (the job runner, the library) and hold no
state of their own. Which topic maps to which handler is declared once, in `register`.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import peewee as pw

from cassetted import errors
from cassetted.config import Settings
from cassetted.jobs import JobRunner, song_info
from cassetted.mqtt.router import Router
from cassetted.playback.controller import PlaybackController
from cassetted.schemas import (
    JobCancel, JobState, KeepCommand, LibraryPage, LibraryQuery, PartyCommand, Reply, RoomCommand,
    SongRequest, VoiceCommand, VoteCommand,
)
from cassetted.store import Job, Song, Store, Vote

# a voice command -> a SongRequest plus warnings (the intent parser); blocking, run in a thread
VoiceParser = Callable[[VoiceCommand], tuple[SongRequest, list[str]]]

_SORTS = {
    "newest": Song.created_at.desc(),
    "oldest": Song.created_at.asc(),
    "title": Song.title.asc(),
    "duration": Song.duration_s.asc(),
}


def _query_library(query: LibraryQuery) -> tuple[int, list[Song]]:
    select = Song.select()
    for field in ("genre", "mood", "room", "user"):
        value = getattr(query, field)
        if value is not None:
            select = select.where(getattr(Song, field) == value)
    if query.text:
        # peewee's contains() is case-insensitive on SQLite and PostgreSQL alike.
        select = select.where(Song.title.contains(query.text) | Song.prompt.contains(query.text)
                              | Song.lyrics.contains(query.text))
    total = select.count()
    songs = list(select.order_by(_SORTS[query.sort], Song.id)
                 .paginate(query.page, query.page_size))
    return total, songs


def _vote(song_id: str, user: str, value: int) -> int:
    song = Song.get_or_none(Song.id == song_id)
    if song is None:
        raise errors.UnknownSong(f"no song {song_id!r}", "song_id")
    Vote.delete().where((Vote.song == song) & (Vote.user == user)).execute()
    if value:
        Vote.create(song=song, user=user, value=value)
    return Vote.select(pw.fn.COALESCE(pw.fn.SUM(Vote.value), 0)).where(Vote.song == song).scalar()


def _keep(song_id: str) -> tuple[str, dict[str, str]]:
    """Keep one take of a request's variants: the others' rows go (their files, by the
    caller). Returns the kept id and {removed id: file}."""
    song = Song.get_or_none(Song.id == song_id)
    if song is None:
        raise errors.UnknownSong(f"no song {song_id!r}", "song_id")
    first = song.variant_of or song.id
    group = Song.select().where((Song.id == first) | (Song.variant_of == first))
    others = {s.id: s.file for s in group if s.id != song.id}
    if not others:
        raise errors.InvalidState(f"song {song_id} has no other takes to drop")
    with Song._meta.database.atomic():
        Job.update(song=song.id).where(Job.song.in_(list(others))).execute()
        Song.delete().where(Song.id.in_(list(others))).execute()
        Song.update(variant_of=None).where(Song.id == song.id).execute()
    return song.id, others


class Commands:
    """Handlers for every inbound command of DESIGN.md's contract."""

    def __init__(self, settings: Settings, store: Store, runner: JobRunner,
                 playback: PlaybackController, parse_voice: VoiceParser | None = None) -> None:
        self._settings = settings
        self._store = store
        self._runner = runner
        self._playback = playback
        self._parse_voice = parse_voice

    def register(self, router: Router) -> None:
        router.command("song/create", SongRequest, self.create_song)
        router.command("voice", VoiceCommand, self.voice)
        router.command("job/+/cancel", JobCancel, self.cancel_job)
        router.command("song/+/vote", VoteCommand, self.vote)
        router.command("song/+/keep", KeepCommand, self.keep)
        router.command("library/query", LibraryQuery, self.library_query)
        router.command("room/+/set", RoomCommand, self.room_set)
        router.command("party/set", PartyCommand, self.party_set)

    async def create_song(self, params: list[str], request: SongRequest) -> Reply:
        job, duplicate = await self._runner.submit(request)
        return Reply(ok=True, request_id=request.request_id, job_id=job.id,
                     state=JobState(job.state), duplicate=duplicate)

    async def voice(self, params: list[str], command: VoiceCommand) -> Reply:
        if self._parse_voice is None:
            raise errors.Unsupported("voice parsing is not available")
        if command.room is not None:
            self._settings.room(command.room)
        # Off the loop: with [voice] llm_fallback the parse may wait on an LLM.
        request, warnings = await asyncio.to_thread(self._parse_voice, command)
        job, duplicate = await self._runner.submit(request)
        return Reply(ok=True, request_id=command.request_id, job_id=job.id,
                     state=JobState(job.state), duplicate=duplicate,
                     request=request.model_dump(exclude_none=True, exclude={"reply_to"}),
                     warnings=warnings)

    async def submit(self, request: SongRequest) -> dict:
        """`create_song` for adapters that speak another protocol (Hermes): a plain dict."""
        try:
            reply = await self.create_song([], request)
        except errors.CassettedError as error:
            reply = Reply(ok=False, request_id=request.request_id, error=error.info())
        return reply.model_dump(mode="json", exclude_none=True)

    async def cancel_job(self, params: list[str], command: JobCancel) -> Reply:
        job = await self._runner.cancel(params[0])
        return Reply(ok=True, request_id=command.request_id, job_id=job.id,
                     state=JobState(job.state))

    async def vote(self, params: list[str], command: VoteCommand) -> Reply:
        score = await self._store.call(_vote, params[0], command.user or "household",
                                       command.vote)
        return Reply(ok=True, request_id=command.request_id, song_id=params[0], score=score)

    async def keep(self, params: list[str], command: KeepCommand) -> Reply:
        kept, removed = await self._store.call(_keep, params[0])
        for path in removed.values():
            (self._settings.library_dir / path).unlink(missing_ok=True)
        return Reply(ok=True, request_id=command.request_id, song_id=kept,
                     removed=sorted(removed))

    async def library_query(self, params: list[str], query: LibraryQuery) -> Reply:
        total, songs = await self._store.call(_query_library, query)
        return LibraryPage(ok=True, request_id=query.request_id, total=total, page=query.page,
                           page_size=query.page_size, songs=[song_info(s, self._settings) for s in songs])

    async def room_set(self, params: list[str], command: RoomCommand) -> Reply:
        self._settings.room(params[0])
        result = await self._playback.handle_room_command(params[0], command)
        return Reply(ok=True, request_id=command.request_id, **result)

    async def party_set(self, params: list[str], command: PartyCommand) -> Reply:
        if command.rooms != "all":
            for room_id in command.rooms:
                self._settings.room(room_id)
        result = await self._playback.handle_party(command)
        return Reply(ok=True, request_id=command.request_id, **result)
