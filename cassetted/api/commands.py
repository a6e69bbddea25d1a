"""The command handlers of the MQTT contract: each takes a validated payload, returns a Reply.

They translate between the wire and the domain (the job runner, the library) and hold no
state of their own. Which topic maps to which handler is declared once, in `register`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cassetted.api.desk import SongDesk
from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import (
    ChildSafeLogQuery,
    GuestCreate,
    GuestRemove,
    JobCancel,
    JobState,
    KaraokeCommand,
    KeepCommand,
    LibraryPage,
    LibraryQuery,
    PartyCommand,
    PartyPlaylistsQuery,
    QuotaQuery,
    Reply,
    RoomCommand,
    RoomModeCommand,
    ShareCommand,
    SongRequest,
    VoiceCommand,
    VoteCommand,
)
from cassetted.features.karaoke import Karaoke
from cassetted.features.modes import RoomModes
from cassetted.features.party import PartyHost
from cassetted.household.identity import Caller, slug
from cassetted.household.service import Household
from cassetted.jobs.runner import JobRunner
from cassetted.library import lrc
from cassetted.library.access import song_info
from cassetted.mqtt.router import REPLY_ADDRESS, Router
from cassetted.playback.controller import PlaybackController
from cassetted.voice import intake

# a voice command -> a SongRequest plus warnings (the intent parser); blocking, run in a thread
VoiceParser = Callable[[VoiceCommand], tuple[SongRequest, list[str]]]


class Commands:
    """Handlers for every inbound command of DESIGN.md's contract.

    Each handler first learns who is asking (the desk: token, MQTT login or `user` field,
    see household.identity); song requests then pass the desk's admission before they
    become jobs. Every part a handler acts on is given here, built before the handlers.
    """

    def __init__(self, settings: Settings, *, desk: SongDesk, runner: JobRunner,
                 playback: PlaybackController, household: Household, modes: RoomModes,
                 party: PartyHost, karaoke: Karaoke,
                 parse_voice: VoiceParser | None = None) -> None:
        self._settings = settings
        self._desk = desk
        self._runner = runner
        self._playback = playback
        self._household = household
        self._modes = modes
        self._party = party
        self._karaoke = karaoke
        self._parse_voice = parse_voice

    def register(self, router: Router) -> None:
        router.command("song/create", SongRequest, self.create_song)
        router.command("voice", VoiceCommand, self.voice)
        router.command("job/+/cancel", JobCancel, self.cancel_job)
        router.command("song/+/vote", VoteCommand, self.vote)
        router.command("song/+/keep", KeepCommand, self.keep)
        router.command("song/+/share", ShareCommand, self.share)
        router.command("library/query", LibraryQuery, self.library_query)
        router.command("room/+/set", RoomCommand, self.room_set)
        router.command("party/set", PartyCommand, self.party_set)
        router.command("party/playlists", PartyPlaylistsQuery, self.party_playlists)
        router.command("guest/create", GuestCreate, self.guest_create)
        router.command("guest/+/remove", GuestRemove, self.guest_remove)
        router.command("user/quota", QuotaQuery, self.user_quota)
        router.command("room/+/mode", RoomModeCommand, self.room_mode)
        router.command("child_safe/log", ChildSafeLogQuery, self.child_safe_log)
        router.command("karaoke/start", KaraokeCommand, self.karaoke_start)

    # ------------------------------------------------------------------ songs

    async def create_song(self, params: list[str], request: SongRequest) -> Reply:
        caller = await self._desk.caller(request.token, request.user)
        return await self._desk.admit_and_submit(request, caller)

    async def voice(self, params: list[str], command: VoiceCommand) -> Reply:
        if self._parse_voice is None:
            raise errors.Unsupported("voice parsing is not available")
        if command.room is not None:
            self._settings.room(command.room)
        name, text = intake.speaker(command.text)  # "My name is Sarah, ..."
        caller = await self._desk.caller(command.token, command.user or name)
        if intake.asks_quota(text):  # "How many songs can I create?"
            return Reply(ok=True, request_id=command.request_id,
                         quota=await self._household.quota(caller))
        # "karaoke mode, American Pie at 150 BPM"
        reply = await self._karaoke.voice(command.model_copy(update={"text": text}), caller)
        if reply is not None:
            return reply
        # Off the loop: with [voice] llm_fallback the parse may wait on an LLM.
        request, warnings = await asyncio.to_thread(self._parse_voice, command)
        return await self._desk.admit_and_submit(
            request, caller, echo=True, warnings=warnings)

    async def cancel_job(self, params: list[str], command: JobCancel) -> Reply:
        caller = await self._desk.caller(command.token, command.user)
        job = await self._runner.get(params[0])
        if job is None:
            raise errors.UnknownJob(f"no job {params[0]!r}", "job_id")
        if not caller.may_manage(job.user):
            raise errors.Forbidden("only who asked for the song or an owner may cancel it",
                                   "job_id")
        job = await self._runner.cancel(params[0])
        return Reply(ok=True, request_id=command.request_id, job_id=job.id,
                     state=JobState(job.state))

    # ------------------------------------------------------------------ library

    async def vote(self, params: list[str], command: VoteCommand) -> Reply:
        caller = await self._desk.caller(command.token, command.user)
        return await self.vote_as(params[0], command, caller)

    async def vote_as(self, song_id: str, command: VoteCommand, caller: Caller) -> Reply:
        song, score = await self._household.vote(song_id, caller, command.vote)
        extras = await self._party.vote_changed(song.id)
        return Reply(ok=True, request_id=command.request_id, song_id=song.id, score=score, **extras)

    async def keep(self, params: list[str], command: KeepCommand) -> Reply:
        caller = await self._desk.caller(command.token, command.user)
        kept, removed = await self._household.keep(params[0], caller)
        for path in removed.values():
            (self._settings.library_dir / path).unlink(missing_ok=True)
            lrc.sidecar_path(self._settings.library_dir / path).unlink(missing_ok=True)
        return Reply(ok=True, request_id=command.request_id, song_id=kept,
                     removed=sorted(removed))

    async def share(self, params: list[str], command: ShareCommand) -> Reply:
        caller = await self._desk.caller(command.token, command.user)
        song = await self._household.share(params[0], caller, command.shared)
        return Reply(ok=True, request_id=command.request_id, song_id=song.id, shared=song.shared)

    async def on_behalf(self, caller: Caller, name: str | None, what: str) -> Caller:
        """`caller`, or - when the command names somebody else than the caller proved to be -
        that person, for an owner only (household.Household.view_as)."""
        if name is None or caller.via in ("open", "user_field", "bridge"):
            return caller  # the name is who asks (or trusted as such)
        if caller.user is not None and caller.user == slug(name):
            return caller
        return await self._household.view_as(caller, name, what)

    async def library_query(self, params: list[str], query: LibraryQuery) -> Reply:
        caller = await self._desk.caller(query.token, query.as_user)
        caller = await self.on_behalf(caller, query.as_user, "the library view")
        total, rows = await self._household.query(query, caller)
        songs = [song_info(song, self._settings).model_copy(update={"score": score})
                 for song, score in rows]
        return LibraryPage(ok=True, request_id=query.request_id, total=total, page=query.page,
                           page_size=query.page_size, songs=songs)

    # ------------------------------------------------------------------ rooms and party

    async def room_set(self, params: list[str], command: RoomCommand) -> Reply:
        self._settings.room(params[0])
        caller = await self._desk.caller(command.token, None)
        return await self.room_set_as(params[0], command, caller)

    async def room_set_as(self, room_id: str, command: RoomCommand, caller: Caller) -> Reply:
        command = await self._household.screen_room_command(room_id, command, caller)
        result = await self._playback.handle_room_command(room_id, command)
        return Reply(ok=True, request_id=command.request_id, **result)

    async def party_set(self, params: list[str], command: PartyCommand) -> Reply:
        return await self.party_set_as(command, None)

    async def party_set_as(self, command: PartyCommand, caller: Caller | None) -> Reply:
        """`caller` None: whoever sent the command (the Home Assistant panel passes its own)."""
        if command.rooms != "all":
            for room_id in command.rooms:
                self._settings.room(room_id)
        caller = caller or await self._desk.caller(command.token, command.user)
        result = await self._party.handle(command, caller)
        return Reply(ok=True, request_id=command.request_id, **result)

    async def mode_as(self, room_id: str, command: RoomModeCommand, caller: Caller) -> Reply:
        """A room mode change from another protocol (the Home Assistant room switch)."""
        return await self._modes.mode_command_as(room_id, command, caller)

    async def room_mode(self, params: list[str], command: RoomModeCommand) -> Reply:
        caller = await self._desk.caller(command.token, command.user)
        return await self._modes.mode_command_as(params[0], command, caller)

    async def child_safe_log(self, params: list[str], query: ChildSafeLogQuery) -> Reply:
        caller = await self._desk.caller(query.token, query.user)
        return await self._modes.log_query_as(query, caller)

    async def karaoke_start(self, params: list[str], command: KaraokeCommand) -> Reply:
        caller = await self._desk.caller(command.token, command.user)
        return await self._karaoke.start_as(command, caller)

    async def party_playlists(self, params: list[str], command: PartyPlaylistsQuery) -> Reply:
        playlists = await self._party.saved_playlists()
        return Reply(ok=True, request_id=command.request_id, playlists=playlists)

    # ------------------------------------------------------------------ people

    async def guest_create(self, params: list[str], command: GuestCreate) -> Reply:
        # The reply carries the guest's token: never on the shared `<base>/reply`. The
        # router says where it will really answer (the same choice its reply makes).
        target = REPLY_ADDRESS.get()
        if target is None or target == f"{self._settings.mqtt.base_topic}/reply":
            raise errors.InvalidPayload(
                "guest/create answers with the guest's token, so it needs a private reply "
                "address: an MQTT v5 response topic or a reply_to only you read", "reply_to")
        caller = await self._desk.caller(command.token, command.user)
        if command.party:
            guest = await self._party.create_guest(command, caller)
        else:
            guest = await self._household.create_guest(command, caller)
        return Reply(ok=True, request_id=command.request_id, **guest)

    async def guest_remove(self, params: list[str], command: GuestRemove) -> Reply:
        caller = await self._desk.caller(command.token, command.user)
        await self._household.remove_guest(params[0], caller)
        return Reply(ok=True, request_id=command.request_id, user_id=params[0])

    async def user_quota(self, params: list[str], command: QuotaQuery) -> Reply:
        caller = await self._desk.caller(command.token, command.user)
        caller = await self.on_behalf(caller, command.user, "the quota")
        quota = await self._household.quota(caller)
        return Reply(ok=True, request_id=command.request_id, quota=quota)
