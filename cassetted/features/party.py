"""Party mode as a household runs it: a theme, starter songs, a voted queue, fillers.

`party/set start` groups the rooms on the party stream (playback.handle_party), opens a
Party and asks for the theme's starter songs; guests' songs (`song/create` with party=true)
join the same queue. The queue plays in order of votes, then arrival, through the party
MPD (playback.party_zone): each finished song is queued there, and a vote rewrites only
what follows the song on air. What the party MPD starts counts as played; when fewer than
`[party] low_water` songs are left, fillers at the party's mean tempo and commonest mood
are made. `stop` saves what played and what was queued as the playlist
`party_<yyyymmdd_hhmm>` (playable again with party/set {"playlist": ...}), ends the party's
guest passes and restores the rooms.

The party and its queue live in the store (party_queue), so a restarted daemon carries on
with the party it had, without new starters. Without a party MPD ([snapcast.mpd]) there is
nothing to queue into: party/set then only groups the rooms, as playback does by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cassetted.config import Settings
from cassetted.contract import errors
from cassetted.contract.schemas import (
    ErrorInfo,
    Event,
    Genre,
    GuestCreate,
    JobState,
    Mood,
    PartyCommand,
    PartyQueueItem,
    PartyState,
    SongRequest,
)
from cassetted.events import EventBus, JobChanged, PartyFeed, SongReady
from cassetted.features import party_queue
from cassetted.features.party_queue import PartyInfo, QueuedSong
from cassetted.household.identity import Caller
from cassetted.household.service import Household
from cassetted.household.settings import PartyTheme
from cassetted.library.access import song_info
from cassetted.playback.base import Track, ZoneError
from cassetted.playback.controller import PLAYLIST_PREFIX, PlaybackController
from cassetted.playback.errors import PlaybackFailed
from cassetted.store.database import Job, Song, Store, new_id
from cassetted.tasks import BackgroundTasks

log = logging.getLogger(__name__)

SubmitDirect = Callable[[SongRequest], Awaitable[tuple[Job, bool]]]
_HOSTS = ("owner", "family")


def _load_songs(song_ids: list[str]) -> dict[str, Song]:
    return {row.id: row for row in Song.select().where(Song.id.in_(song_ids))}


def _position(queue: list[QueuedSong], *, job_id: str | None = None,
              song_id: str | None = None) -> int | None:
    """1-based place among the unplayed songs."""
    for place, entry in enumerate(queue, start=1):
        if (job_id is not None and entry.job_id == job_id) or (
                song_id is not None and entry.song_id == song_id):
            return place
    return None


class PartyHost:
    """Runs one party at a time. Follows its jobs and songs (JobChanged, SongReady: a party
    song is held out of its room, it plays in queue order) and the party MPD (PartyFeed)."""

    def __init__(self, settings: Settings, store: Store, bus: EventBus, *,
                 playback: PlaybackController, household: Household,
                 submit_direct: SubmitDirect, cancel_job: Callable[[str], Awaitable[object]],
                 publish_state: Callable[[PartyState], None],
                 publish_event: Callable[[Event], None]) -> None:
        self._settings = settings
        self._store = store
        self._playback = playback
        self._household = household
        self._submit = submit_direct
        self._cancel_job = cancel_job
        self._publish_state = publish_state
        self._publish_event = publish_event
        self._party: PartyInfo | None = None
        self._jobs: set[str] = set()   # jobs making the running party's songs
        self._songs: set[str] = set()  # its songs: they play in queue order, not in a room
        self._on_air: str | None = None
        self._zone_up = False
        self._tracks_cache: dict[str, Track] = {}
        self._tasks = BackgroundTasks("party")
        self._fill_lock = asyncio.Lock()
        self._publish_lock = asyncio.Lock()
        self._sync_wanted = False
        self._sync_task: asyncio.Task[None] | None = None
        bus.subscribe(JobChanged, self._job_changed)
        bus.subscribe(SongReady, self._song_ready)
        bus.subscribe(PartyFeed, self._party_feed)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Carry on with a party the last run left (before the job runner starts, so no
        finished song of it goes unheard); the party MPD is synced once it connects."""
        party = await self._store.call(party_queue.running)
        if party is not None:
            jobs, songs = await self._store.call(party_queue.resume, party.id)
            self._party, self._jobs, self._songs = party, set(jobs), set(songs)
            log.info("party %s (%s) resumed with %d songs", party.id, party.theme, len(songs))
        await self._publish()

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    # ------------------------------------------------------------------ commands

    async def handle(self, command: PartyCommand, caller: Caller) -> dict[str, Any]:
        """`party/set`: the reply's fields. Owners and family members only."""
        if caller.role not in _HOSTS:
            raise errors.Forbidden("only owners and family members start or stop a party")
        if command.action == "stop":
            return await self._stop(command)
        return await self._start(command)

    async def _start(self, command: PartyCommand) -> dict[str, Any]:
        playback = self._playback
        if playback.party is None or playback.party_zone is None:
            # No snapcast: Unsupported, as ever. No party MPD: the rooms are only grouped.
            return await playback.handle_party(command)
        name = command.theme or (self._party.theme if self._party else None) \
            or self._settings.party.default_theme
        theme = self._theme(name)
        seeds = await self._seeds(command)
        grouping = command.model_copy(update={"song_id": None, "playlist": None})
        if self._party is not None:
            return await self._join(grouping, name, seeds)

        party_id = new_id()
        await self._clear_leftovers()
        result = await playback.handle_party(grouping, event={"party_id": party_id, "theme": name})
        party = await self._store.call(party_queue.begin, party_id, name, result["rooms"],
                                       command.guest_access)
        self._party, self._jobs, self._songs, self._on_air = party, set(), set(), None
        for song_id in seeds:
            await self._store.call(party_queue.add, party_id, song_id=song_id)
            self._songs.add(song_id)
        count = command.starters if command.starters is not None else (0 if seeds else theme.starters)
        low, high = sorted((theme.bpm_min, theme.bpm_max))
        starters = [await self._generate(theme.genre, theme.mood, random.randint(low, high),
                                         theme.prompt, starter=True) for _ in range(count)]
        log.info("party %s started: %s in %s, %d starters", party_id, name,
                 ", ".join(party.rooms), count)
        self._resync()
        await self._publish()
        self._tasks.spawn(self._top_up(), self._tasks.unique("top-up"))
        return {**result, "party_id": party_id, "theme": name, "starters": starters,
                "guest_access": command.guest_access}

    async def _join(self, grouping: PartyCommand, theme: str, seeds: list[str]) -> dict[str, Any]:
        """Start while a party runs: more rooms (and songs) for it, never a second party."""
        party = self._party
        assert party is not None
        if theme != party.theme:
            raise errors.InvalidState(f"a {party.theme} party is running; stop it first", "theme")
        result = await self._playback.handle_party(grouping, event={"party_id": party.id})
        self._party = dataclasses.replace(party, rooms=result["rooms"])
        await self._store.call(party_queue.set_rooms, party.id, result["rooms"])
        for song_id in seeds:
            await self._store.call(party_queue.add, party.id, song_id=song_id)
            self._songs.add(song_id)
        self._resync()
        await self._publish()
        return {**result, "party_id": party.id, "theme": party.theme, "starters": []}

    async def _stop(self, command: PartyCommand) -> dict[str, Any]:
        party, playback = self._party, self._playback
        if party is None or playback.party is None:
            return await playback.handle_party(command)  # whatever is left to restore
        if command.rooms != "all" and not playback.party.rooms <= set(command.rooms):
            result = await playback.handle_party(command, event={"party_id": party.id})
            rooms = sorted(playback.party.rooms)
            self._party = dataclasses.replace(party, rooms=rooms)
            await self._store.call(party_queue.set_rooms, party.id, rooms)
            await self._publish()
            return {**result, "party_id": party.id}  # the other rooms party on

        name = await self._store.call(party_queue.playlist_name, party.id)
        result = await playback.handle_party(command, event={"party_id": party.id, "playlist": name})
        leftovers = await self._store.call(party_queue.own_jobs_in_flight, party.id)
        songs = await self._store.call(party_queue.finish, party.id, name)
        self._party, self._jobs, self._songs, self._on_air = None, set(), set(), None
        await self._cancel(leftovers)
        expired = await self._household.expire_guests(party=party.id)
        await self._mirror(name, songs)
        await self._publish()
        log.info("party %s stopped; %d songs saved as %s", party.id, len(songs), name)
        return {**result, "party_id": party.id, "playlist": name, "songs": songs,
                "guests_expired": expired}

    async def _cancel(self, job_ids: list[str]) -> None:
        """Cancel starters and fillers still being made (guests' songs finish: they asked)."""
        for job_id in job_ids:
            # One that finished meanwhile stays in the library.
            with contextlib.suppress(errors.CassettedError):
                await self._cancel_job(job_id)

    async def saved_playlists(self) -> list[dict[str, object]]:
        """The playlists parties left behind (start one again with party/set playlist)."""
        return await self._store.call(party_queue.saved_playlists)

    async def create_guest(self, command: GuestCreate, caller: Caller) -> dict[str, Any]:
        """A guest of the running party: counted from its start against [party]
        guest_song_limit, expired when it stops."""
        party = self._party
        if party is None:
            raise errors.InvalidState("no party is running; start one with party/set", "party")
        guest = await self._household.create_guest(command, caller, party=party.id,
                                                   since=party.started_at)
        return {**guest, "party_id": party.id}

    def admit(self, request: SongRequest, caller: Caller) -> None:
        """Before a party song is queued (and costs anything): a party started with
        guest_access false takes no songs from guests."""
        party = self._party
        if request.party and party is not None and not party.guest_access and caller.is_guest:
            raise errors.Forbidden("this party takes no songs from guests", "party")

    async def enqueue(self, job_id: str, request: SongRequest, caller: Caller) -> dict[str, int]:
        """A party song was queued as a job: it joins the party's queue. Returns the reply's
        `party_position`; nothing when no party runs (a request said "everywhere", say):
        the job is already queued, so refusing now would only hide it."""
        party = self._party
        if party is None:
            return {}
        self._jobs.add(job_id)
        song_id = await self._store.call(party_queue.add, party.id, job_id=job_id, user=caller.user)
        if song_id is not None:  # a repeated request whose song exists
            self._songs.add(song_id)
            self._resync()
        queue = await self._publish()
        place = _position(queue, job_id=job_id)
        return {"party_position": place} if place else {}

    async def vote_changed(self, song_id: str) -> dict[str, Any]:
        """A vote may move a queued song: the party MPD and party/state follow."""
        if self._party is None or song_id not in self._songs:
            return {}
        queue = await self._publish()
        place = _position(queue, song_id=song_id)
        if place is None:
            return {}  # played already
        self._resync()
        return {"party_position": place}

    # ------------------------------------------------------------------ the party's jobs

    def _job_changed(self, changed: JobChanged) -> None:
        event = changed.event
        if event.job_id in self._jobs and event.state in (JobState.failed, JobState.cancelled):
            self._jobs.discard(event.job_id)
            self._tasks.spawn(self._job_gone(event.job_id), f"gone-{event.job_id}")

    def _song_ready(self, ready: SongReady) -> None:
        """A party song waits its turn in the party queue instead of playing in its room."""
        if ready.job_id in self._jobs:
            self._songs.add(ready.song.id)
            ready.hold("party")
            self._tasks.spawn(self._song_made(ready.job_id, ready.song.id), f"ready-{ready.song.id}")

    async def _song_made(self, job_id: str, song_id: str) -> None:
        await self._store.call(party_queue.attach_song, job_id, song_id)
        self._resync()
        await self._publish()

    async def _job_gone(self, job_id: str) -> None:
        await self._store.call(party_queue.drop_job, job_id)
        await self._publish()
        await self._top_up()

    # ------------------------------------------------------------------ the party MPD

    def _party_feed(self, feed: PartyFeed) -> None:
        """What the party MPD does (its idle events): a new song on air is played; a
        reconnected MPD gets the queue again."""
        status = feed.status
        came_up = not self._zone_up and status.state != "unavailable"
        self._zone_up = status.state != "unavailable"
        if self._party is None or not self._zone_up:
            return
        if came_up:
            self._resync()
        on_air = status.song_id if status.state in ("playing", "paused") else None
        if on_air != self._on_air:
            self._on_air = on_air
            self._tasks.spawn(self._now_playing(on_air), self._tasks.unique("on-air"))

    async def _now_playing(self, song_id: str | None) -> None:
        party = self._party
        if party is not None and song_id in self._songs:
            await self._store.call(party_queue.mark_played, party.id, song_id)
        await self._publish()
        await self._top_up()

    def _resync(self) -> None:
        """Bring the party MPD in line with the queue soon; bursts coalesce into one pass."""
        self._sync_wanted = True
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = self._tasks.spawn(self._sync(), "sync")

    async def _sync(self) -> None:
        while self._sync_wanted:
            self._sync_wanted = False
            party, zone = self._party, self._playback.party_zone
            if party is None or zone is None or not self._zone_up:
                return
            queue = await self._store.call(party_queue.queue, party.id)
            tracks = await self._tracks([entry.song_id for entry in queue if entry.song_id])
            if self._party is not party:
                return  # stopped meanwhile
            log.debug("party MPD: %d songs to follow the one on air", len(tracks))
            try:
                await zone.set_upcoming(tracks)
            except ZoneError as error:
                self._zone_trouble(f"the party MPD did not take the queue: {error}")

    async def _clear_leftovers(self) -> None:
        """A new party starts from an empty party MPD (what a last party left is saved)."""
        zone = self._playback.party_zone
        if zone is not None and self._zone_up:
            try:
                await zone.set_upcoming([])
            except ZoneError as error:
                self._zone_trouble(f"the party MPD was not cleared: {error}")

    async def _mirror(self, name: str, song_ids: list[str]) -> None:
        """The saved playlist as a stored playlist of the party MPD, for any MPD client."""
        zone = self._playback.party_zone
        if zone is None or not song_ids:
            return
        try:
            await zone.save_playlist(PLAYLIST_PREFIX + name, await self._tracks(song_ids))
        except ZoneError as error:
            self._zone_trouble(f"playlist {name} not stored in the party MPD: {error}")

    def _zone_trouble(self, message: str) -> None:
        """Player trouble never fails a party command: it is logged and published."""
        log.warning("%s", message)
        self._publish_event(Event(type="error", ts=time.time(),
                                  error=ErrorInfo(code=PlaybackFailed.code, message=message)))

    async def _tracks(self, song_ids: list[str]) -> list[Track]:
        missing = [s for s in dict.fromkeys(song_ids) if s not in self._tracks_cache]
        if missing:
            for song_id, row in (await self._store.call(_load_songs, missing)).items():
                info = song_info(row, self._settings)
                self._tracks_cache[song_id] = Track(song_id=song_id, path=Path(info.file),
                                                    title=info.title, duration_s=info.duration_s,
                                                    url=info.url)
        return [self._tracks_cache[s] for s in song_ids if s in self._tracks_cache]

    # ------------------------------------------------------------------ songs it makes

    def _theme(self, name: str) -> PartyTheme:
        themes = self._settings.party.themes
        if name not in themes:
            raise errors.InvalidPayload(
                f"no party theme {name!r} (themes: {', '.join(sorted(themes))})", "theme")
        return themes[name]

    async def _seeds(self, command: PartyCommand) -> list[str]:
        """The songs party/set asked to start with (song_id, or a saved playlist)."""
        if command.song_id is not None:
            if await self._store.call(Song.get_or_none, Song.id == command.song_id) is None:
                raise errors.UnknownSong(f"no song {command.song_id!r}", "song_id")
            return [command.song_id]
        if command.playlist is not None:
            return [song.id for song in await self._playback.named_playlist(command.playlist)]
        return []

    async def _generate(self, genre: Genre | None, mood: Mood | None, bpm: int | None,
                        prompt: str, *, starter: bool = False, filler: bool = False) -> str:
        """Ask for one song of the party (no admission: the party, not a person, asks)."""
        party = self._party
        assert party is not None
        request = SongRequest(prompt=prompt, genre=genre, mood=mood, bpm=bpm, party=True,
                              duration_s=self._settings.party.song_duration_s)
        job, _ = await self._submit(request)
        self._jobs.add(job.id)
        await self._store.call(party_queue.add, party.id, job_id=job.id, starter=starter,
                               filler=filler)
        return str(job.id)

    async def _top_up(self) -> None:
        """Fillers when fewer than `low_water` songs wait: the party's mean tempo and its
        commonest mood and genre so far (the theme's, before there are songs)."""
        settings = self._settings.party
        async with self._fill_lock:
            party = self._party
            if party is None:
                return
            queue = await self._store.call(party_queue.queue, party.id)
            if len(queue) >= settings.low_water:
                return
            mean_bpm, mood, genre = await self._store.call(party_queue.profile, party.id)
            theme = settings.themes.get(party.theme)
            if mean_bpm is None and theme is not None:
                mean_bpm = (theme.bpm_min + theme.bpm_max) / 2
            bpm = round(mean_bpm) if mean_bpm is not None else None
            mood = mood or (theme.mood if theme else None)
            genre = genre or (theme.genre if theme else None)
            prompt = theme.prompt if theme and theme.prompt else f"{party.theme} party"
            jobs = [await self._generate(genre, mood, bpm, prompt, filler=True)
                    for _ in range(settings.fillers)]
            log.info("party %s: %d waiting, fillers %s at %s bpm", party.id, len(queue),
                     ", ".join(jobs), bpm)
        await self._publish()

    # ------------------------------------------------------------------ state

    async def _publish(self) -> list[QueuedSong]:
        """Publish party/state (retained); returns the queue it showed."""
        async with self._publish_lock:
            party = self._party
            if party is None:
                self._publish_state(PartyState(active=False))
                return []
            queue, guest_songs, fillers = await self._store.call(party_queue.snapshot, party.id)
            items = [PartyQueueItem(position=place, song_id=entry.song_id, job_id=entry.job_id,
                                    title=entry.title, user=entry.user, score=entry.score,
                                    filler=entry.filler,
                                    state="queued" if entry.song_id else "generating")
                     for place, entry in enumerate(queue, start=1)]
            self._publish_state(PartyState(
                active=True, theme=party.theme, rooms=party.rooms, started_at=party.started_at,
                now_playing=self._on_air, queue=items, guest_songs=guest_songs, fillers=fillers))
            return queue
