"""The playback controller: rooms' zones, room playlists, party mode, room state and events.

The daemon owns one controller. It hands it finished songs (`song_ready`), room commands
and party commands; the controller answers with reply fields or raises a CassettedError,
and reports through two callbacks it is given:

- `publish_state(room_id, RoomState)` for the retained `<base>/room/<room>/state`, called
  whenever what a room shows changes (from the zones' own events, never polled);
- `publish_event(Event)` for `song_started`, `song_finished`, `party_started`,
  `party_stopped` and playback `error`s on `<base>/event`.

On the event bus it emits each of those events (PlaybackChanged) and what the party MPD
plays (PartyFeed); it follows RoomExtras, what other parts show in a room's state.

Room playlists live in the store (PlaylistEntry) and are mirrored into the player as the
stored playlist `cassetted-<room>` where the zone can (MPD).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cassetted.contract import errors
from cassetted.contract.schemas import (
    ErrorInfo,
    Event,
    PartyCommand,
    RoomCommand,
    RoomState,
    SongInfo,
)
from cassetted.events import EventBus, PartyFeed, PlaybackChanged, RoomExtras
from cassetted.library.access import song_info
from cassetted.playback.base import Track, Zone, ZoneError, ZoneStatus
from cassetted.playback.errors import PlaybackFailed
from cassetted.playback.registry import UnavailableZone, ZoneContext, create_zone, playlist_mirror
from cassetted.playback.settings import SnapcastPlaybackSettings
from cassetted.store.database import PlaylistEntry, Song, Store
from cassetted.tasks import BackgroundTasks

if TYPE_CHECKING:
    from cassetted.config import Settings
    from cassetted.playback.party import PartyMode
    from cassetted.playback.zones.mpd import MpdZone
    from cassetted.playback.zones.snapcast import SnapcastClient

log = logging.getLogger(__name__)

PublishState = Callable[[str, RoomState], None]
PublishEvent = Callable[[Event], None]
PLAYLIST_PREFIX = "cassetted-"
PARTY_PLAYLIST_PREFIX = "party_"  # playlists a party saved when it stopped (household.party)
_PLAYLIST_ACTIONS = ("add", "remove", "clear", "shuffle")


def snapcast_settings(settings: Settings) -> SnapcastPlaybackSettings:
    """[snapcast], the snapserver and its party pipeline."""
    return settings.snapcast


# ----------------------------------------------------------------- store-thread operations


def _load_song(song_id: str) -> Song | None:
    return cast("Song | None", Song.get_or_none(Song.id == song_id))


def _playlist(room: str) -> list[Song]:
    entries = (PlaylistEntry.select(PlaylistEntry, Song).join(Song)
               .where(PlaylistEntry.room == room).order_by(PlaylistEntry.position))
    return [entry.song for entry in entries]


def _append(room: str, song_id: str) -> list[Song]:
    with PlaylistEntry._meta.database.atomic():
        last = (PlaylistEntry.select(PlaylistEntry.position).where(PlaylistEntry.room == room)
                .order_by(PlaylistEntry.position.desc()).first())
        PlaylistEntry.create(room=room, song=song_id, position=(last.position + 1) if last else 0)
    return _playlist(room)


def _rewrite(room: str, order: Callable[[list[PlaylistEntry]], list[PlaylistEntry]]) -> list[Song]:
    """Re-number a room's playlist in a new order (delete and re-insert: positions are unique)."""
    db = PlaylistEntry._meta.database
    with db.atomic():
        entries = list(PlaylistEntry.select().where(PlaylistEntry.room == room)
                       .order_by(PlaylistEntry.position))
        kept = order(entries)
        PlaylistEntry.delete().where(PlaylistEntry.room == room).execute()
        for position, entry in enumerate(kept):
            PlaylistEntry.create(room=room, song=entry.song_id, position=position,
                                 added_at=entry.added_at)
    return _playlist(room)


def _remove(room: str, song_id: str) -> list[Song] | None:
    """None when the song is not in the playlist."""
    exists = (PlaylistEntry.select().where((PlaylistEntry.room == room)
                                           & (PlaylistEntry.song == song_id)).exists())
    if not exists:
        return None
    return _rewrite(room, lambda entries: [e for e in entries if e.song_id != song_id])


def _clear(room: str) -> list[Song]:
    PlaylistEntry.delete().where(PlaylistEntry.room == room).execute()
    return []


def _shuffle(room: str) -> list[Song]:
    return _rewrite(room, lambda entries: random.sample(entries, len(entries)))


# ----------------------------------------------------------------- the controller


class PlaybackController:
    """Owns the zones of the configured rooms. All methods run on the daemon's event loop."""

    def __init__(self, settings: Settings, store: Store, bus: EventBus,
                 publish_state: PublishState, publish_event: PublishEvent, *,
                 zones: dict[str, Zone] | None = None,
                 snapcast: SnapcastPlaybackSettings | None = None) -> None:
        self._settings = settings
        self._bus = bus
        # What other parts add to a room's state (mode, child-safe, learned preference),
        # by room and source, from their RoomExtras events.
        self._extras: dict[str, dict[str, dict[str, Any]]] = {}
        bus.subscribe(RoomExtras, self._extras_changed)
        self._store = store
        self._playlist_lengths: dict[str, int] = {}
        self._publish_state = publish_state
        self._publish_event = publish_event
        self._library_dir: Path = settings.library_dir
        # `snapcast` overrides [snapcast] until config.py mounts SnapcastPlaybackSettings.
        self._snapcast_settings = snapcast or snapcast_settings(settings)
        self._given_zones = zones
        self.zones: dict[str, Zone] = {}
        self.snapcast: SnapcastClient | None = None
        self.party: PartyMode | None = None
        self.party_zone: MpdZone | None = None  # the MPD feeding the party stream
        self._songs: dict[str, SongInfo] = {}
        self._statuses: dict[str, ZoneStatus] = {}
        self._queues: dict[str, asyncio.Queue[ZoneStatus]] = {}
        self._published: dict[str, RoomState] = {}
        self._started_song: dict[str, str | None] = {}
        self._tasks = BackgroundTasks("playback")

    # ------------------------------------------------------------------ lifecycle

    async def _homeassistant_token(self) -> Any:
        """The long-lived token of `homeassistant` rooms (`cassetted keys set homeassistant`),
        read on the store thread each time, so a new key needs no restart."""
        from cassetted.store.credentials import CredentialStore

        credentials = CredentialStore.open(self._settings.state_dir)
        return await self._store.call(credentials.get, "homeassistant")

    async def start(self) -> None:
        """Create and start every room's zone; returns at once (zones connect in the background)."""
        rooms = self._settings.rooms
        for room_id in rooms:
            self._playlist_lengths[room_id] = len(await self._store.call(_playlist, room_id))
        needs_snapcast = any(r.output == "snapcast" or r.snapcast_group for r in rooms.values())
        if needs_snapcast:
            from cassetted.playback.party import PartyMode
            from cassetted.playback.zones.snapcast import SnapcastClient

            snap = self._snapcast_settings
            self.snapcast = SnapcastClient(snap.host, snap.port, reconnect_max_s=snap.reconnect_max_s)
            await self.snapcast.start()
            self.party = PartyMode(self.snapcast, snap.party_stream,
                                   state_file=self._settings.state_dir / "party.json")
            if snap.mpd is not None:
                try:
                    from cassetted.playback.zones.mpd import MpdZone
                except ImportError as error:
                    log.error("[snapcast.mpd] needs the 'mpd' extra (python-mpd2): %s", error)
                else:
                    self.party_zone = MpdZone("party", snap.mpd)
                    # The party host follows what it plays (its voted queue).
                    await self.party_zone.start(lambda status: self._bus.emit(PartyFeed(status)))
            self.snapcast.add_listener(self._snapcast_changed)

        if self._given_zones is not None:
            self.zones = dict(self._given_zones)
        else:
            context = ZoneContext(self._snapcast_settings, self.snapcast,
                                  homeassistant=self._settings.homeassistant,
                                  homeassistant_token=self._homeassistant_token)
            for room_id, room in rooms.items():
                zone = create_zone(room_id, room, context)
                if zone is not None:
                    self.zones[room_id] = zone
                    if isinstance(zone, UnavailableZone):
                        log.error("room %s has no player: %s", room_id, zone.status.extra["reason"])
        for room_id in rooms:  # a room without a player still shows its mode and learning
            self._queues[room_id] = asyncio.Queue()
            self._tasks.spawn(self._publisher(room_id), f"room-state-{room_id}")
            zone = self.zones.get(room_id)
            self._on_state(room_id, getattr(zone, "status", ZoneStatus("unavailable" if zone else "idle")))
        for room_id, zone in self.zones.items():
            await zone.start(functools.partial(self._on_state, room_id))

    async def stop(self) -> None:
        """Stop the zones and connections. Music keeps playing: MPD and Snapcast run on."""
        for zone in self.zones.values():
            with contextlib.suppress(Exception):
                await zone.stop()
        if self.party_zone is not None:
            await self.party_zone.stop()
        if self.snapcast is not None:
            await self.snapcast.stop()
        await self._tasks.cancel_all()

    # ------------------------------------------------------------------ state and events

    def _on_state(self, room_id: str, status: ZoneStatus) -> None:
        self._statuses[room_id] = status
        queue = self._queues.get(room_id)
        if queue is not None:
            queue.put_nowait(status)

    def _snapcast_changed(self, what: str) -> None:
        # Party membership shows in every room's state; re-evaluate after stream moves.
        if what in ("connected", "Group.OnStreamChanged", "Server.OnUpdate"):
            self._republish()

    def _republish(self) -> None:
        for room_id, status in self._statuses.items():
            self._on_state(room_id, status)

    async def _publisher(self, room_id: str) -> None:
        """One per room: turns zone statuses into events and room states, in order."""
        queue = self._queues[room_id]
        while True:
            status = await queue.get()
            try:
                song = await self._song(status.song_id) if status.song_id else None
                self._song_events(room_id, status)
                state = self._room_state(room_id, status, song)
                if self._published.get(room_id) != state:
                    self._published[room_id] = state
                    self._publish_state(room_id, state)
            except Exception:
                log.exception("room %s: could not publish its state", room_id)

    def _song_events(self, room_id: str, status: ZoneStatus) -> None:
        if status.state == "unavailable":
            return  # a lost connection says nothing about the song
        current = self._started_song.get(room_id)
        now = status.song_id if status.state in ("playing", "paused") else None
        if current is not None and now != current:
            self._event("song_finished", room=room_id, song_id=current)
            self._started_song[room_id] = current = None
        if status.state == "playing" and now is not None and now != current:
            self._event("song_started", room=room_id, song_id=now)
            self._started_song[room_id] = now

    def _room_state(self, room_id: str, status: ZoneStatus, song: SongInfo | None) -> RoomState:
        room = self._settings.rooms[room_id]
        extras: dict[str, Any] = {}
        for values in self._extras.get(room_id, {}).values():
            extras.update(values)
        return RoomState(room=room_id, name=room.name, state=status.state, song=song,
                         volume=status.volume, output=room.output,
                         party=self.party is not None and room_id in self.party.rooms,
                         playlist_length=self._playlist_lengths.get(room_id), **extras)

    def _extras_changed(self, extras: RoomExtras) -> None:
        """Another part's view of a room changed: keep it and re-publish the room."""
        if extras.room_id not in self._settings.rooms:
            return
        self._extras.setdefault(extras.room_id, {})[extras.source] = dict(extras.values)
        status = self._statuses.get(extras.room_id)
        if status is not None:
            self._on_state(extras.room_id, status)

    def _playlist_changed(self, room_id: str, length: int) -> None:
        """Remember the new length and re-publish the room's state with it."""
        self._playlist_lengths[room_id] = length
        status = self._statuses.get(room_id)
        if status is not None:
            self._on_state(room_id, status)

    def _event(self, kind: str, **fields: Any) -> None:
        try:
            event = Event(type=kind, ts=time.time(), **fields)  # type: ignore[arg-type]
            self._publish_event(event)
        except Exception:
            log.exception("could not publish %s", kind)
            return
        self._bus.emit(PlaybackChanged(event))  # the karaoke display follows playback

    def room_states(self) -> dict[str, RoomState]:
        """The last published state of each room (for republishing on MQTT reconnect)."""
        return dict(self._published)

    # ------------------------------------------------------------------ songs

    async def _song(self, song_id: str) -> SongInfo | None:
        song = self._songs.get(song_id)
        if song is None:
            row = await self._store.call(_load_song, song_id)
            if row is None:
                return None
            song = self._songs[song_id] = song_info(row, self._settings)
        return song

    async def _require_song(self, song_id: str | None) -> SongInfo:
        if not song_id:
            raise errors.InvalidPayload("this action needs song_id", "song_id")
        song = await self._song(song_id)
        if song is None:
            raise errors.UnknownSong(f"no song {song_id!r}", "song_id")
        return song

    def _infos(self, rows: list[Song]) -> list[SongInfo]:
        infos = []
        for row in rows:
            info = self._songs.get(row.id)
            if info is None:
                info = self._songs[row.id] = song_info(row, self._settings)
            infos.append(info)
        return infos

    @staticmethod
    def _track(song: SongInfo) -> Track:
        return Track(song_id=song.id, path=Path(song.file), title=song.title,
                     duration_s=song.duration_s, url=song.url)

    # ------------------------------------------------------------------ commands

    def _zone(self, room_id: str) -> Zone:
        zone = self.zones.get(room_id)
        if zone is None:
            output = self._settings.rooms[room_id].output
            raise errors.Unsupported(f"room {room_id!r} has output {output!r}, which has no player")
        return zone

    async def handle_room_command(self, room_id: str, command: RoomCommand) -> dict[str, Any]:
        """`<base>/room/<room>/set`: the reply's fields, or a CassettedError."""
        self._settings.room(room_id)
        action = command.action
        reply: dict[str, Any] = {"room": room_id, "action": action}
        if action in _PLAYLIST_ACTIONS:
            songs = await self._edit_playlist(room_id, action, command.song_id)
            reply["playlist"] = [song.id for song in songs]
            reply["mirrored"] = await self._mirror(room_id, songs)
            return reply

        zone = self._zone(room_id)
        try:
            if action == "play_song":
                song = await self._require_song(command.song_id)
                await zone.play_now(self._track(song))
                reply["song_id"] = song.id
            elif action == "play_playlist" or (action == "play" and self._nothing_queued(room_id)):
                songs = self._infos(await self._store.call(_playlist, room_id))
                if not songs:
                    raise errors.InvalidState(f"the playlist of room {room_id!r} is empty")
                ids = [song.id for song in songs]
                start = 0
                if command.song_id is not None:
                    if command.song_id not in ids:
                        raise errors.UnknownSong(
                            f"song {command.song_id!r} is not in the playlist of {room_id!r}", "song_id")
                    start = ids.index(command.song_id)
                await zone.set_queue([self._track(s) for s in songs], start_index=start)
                reply["playlist"] = ids
            else:
                if action == "volume" and command.volume is None:
                    raise errors.InvalidPayload("volume needs 'volume' (0 to 100)", "volume")
                if action == "seek" and command.position_s is None:
                    raise errors.InvalidPayload("seek needs 'position_s'", "position_s")
                await zone.control(action, volume=command.volume, position_s=command.position_s)
        except ZoneError as error:
            raise PlaybackFailed(str(error)) from None
        return reply

    def _nothing_queued(self, room_id: str) -> bool:
        """`play` on a player with an empty queue starts the room's playlist instead."""
        status = self._statuses.get(room_id)
        return status is not None and status.state == "idle" and status.extra.get("queue_length") == 0

    async def _edit_playlist(self, room_id: str, action: str, song_id: str | None) -> list[SongInfo]:
        if action == "add":
            song = await self._require_song(song_id)
            rows = await self._store.call(_append, room_id, song.id)
        elif action == "remove":
            if not song_id:
                raise errors.InvalidPayload("remove needs song_id", "song_id")
            removed = await self._store.call(_remove, room_id, song_id)
            if removed is None:
                raise errors.UnknownSong(
                    f"song {song_id!r} is not in the playlist of {room_id!r}", "song_id")
            rows = removed
        elif action == "clear":
            rows = await self._store.call(_clear, room_id)
        else:
            rows = await self._store.call(_shuffle, room_id)
        self._playlist_changed(room_id, len(rows))
        return self._infos(rows)

    async def playlist(self, room_id: str) -> list[SongInfo]:
        """A room's playlist, in order."""
        self._settings.room(room_id)
        return self._infos(await self._store.call(_playlist, room_id))

    async def named_playlist(self, name: str) -> list[SongInfo]:
        """A room's playlist by its id (or `cassetted-<room>`), or one a party saved when it
        stopped (`party_<yyyymmdd_hhmm>`): what party/set {"playlist": ...} plays."""
        name = name.removeprefix(PLAYLIST_PREFIX)
        rooms = self._settings.rooms
        if name not in rooms and not name.startswith(PARTY_PLAYLIST_PREFIX):
            raise errors.InvalidPayload(
                f"no playlist {name!r} (a room id, e.g. {next(iter(rooms), 'kitchen')!r}, "
                f"or a saved party, {PARTY_PLAYLIST_PREFIX}<yyyymmdd_hhmm>)", "playlist")
        songs = self._infos(await self._store.call(_playlist, name))
        if not songs:
            if name in rooms:
                raise errors.InvalidState(f"the playlist of room {name!r} is empty", "playlist")
            raise errors.InvalidPayload(f"no saved party playlist {name!r}", "playlist")
        return songs

    async def _mirror(self, room_id: str, songs: list[SongInfo]) -> bool:
        """Copy a room's playlist into its player's stored playlist; False when it could not."""
        zone = self.zones.get(room_id)
        save = m.save_playlist if (m := playlist_mirror(self._settings.rooms.get(room_id), zone)) else None
        if save is None:
            return False
        try:
            await save(PLAYLIST_PREFIX + room_id, [self._track(s) for s in songs])
            return True
        except ZoneError as error:
            log.warning("room %s: playlist not mirrored: %s", room_id, error)
            return False

    async def _mirror_append(self, room_id: str, song: SongInfo) -> None:
        mirror = playlist_mirror(self._settings.rooms.get(room_id), self.zones.get(room_id))
        append = mirror.append_to_playlist if mirror else None
        if append is not None:
            try:
                await append(PLAYLIST_PREFIX + room_id, self._track(song))
            except ZoneError as error:
                log.warning("room %s: playlist not mirrored: %s", room_id, error)

    # ------------------------------------------------------------------ songs made

    async def song_ready(self, song: SongInfo) -> bool:
        """A finished song: add it to its room's playlist and play it there now.

        Returns True when it started playing. Never raises for player trouble: that is
        published as an `error` event (the job itself succeeded).
        """
        room_id = song.room
        if room_id is None or room_id not in self._settings.rooms:
            return False
        self._songs[song.id] = song
        self._playlist_changed(room_id, len(await self._store.call(_append, room_id, song.id)))
        in_party = self.party is not None and room_id in self.party.rooms
        zone: Zone | None = self.party_zone if in_party and self.party_zone else self.zones.get(room_id)
        started = False
        if zone is not None:
            try:
                await zone.play_now(self._track(song))
                started = True
            except ZoneError as error:
                log.warning("room %s: song %s not played: %s", room_id, song.id, error)
                self._event("error", room=room_id, song_id=song.id,
                            error=ErrorInfo(code=PlaybackFailed.code, message=str(error)))
        self._tasks.spawn(self._mirror_append(room_id, song), self._tasks.unique(f"mirror-{room_id}"))
        return started

    # ------------------------------------------------------------------ party

    async def handle_party(self, command: PartyCommand,
                           event: dict[str, Any] | None = None) -> dict[str, Any]:
        """`<base>/party/set`: the reply's fields, or a CassettedError. `event`: extra fields
        for the party_started / party_stopped event (the party host's id, playlist)."""
        event = event or {}
        if self.party is None:
            raise errors.Unsupported("party mode needs rooms with a snapcast_group")
        rooms = self._settings.rooms
        if command.rooms == "all":
            chosen = {r: room.snapcast_group for r, room in rooms.items() if room.snapcast_group}
        else:
            chosen = {}
            for room_id in command.rooms:
                self._settings.room(room_id)
                group = rooms[room_id].snapcast_group
                if not group:
                    raise errors.InvalidState(f"room {room_id!r} has no snapcast_group", "rooms")
                chosen[room_id] = group

        if command.action == "stop":
            result = await self.party.stop(None if command.rooms == "all" else list(chosen))
            if not self.party.active and self.party_zone is not None:
                with contextlib.suppress(ZoneError):
                    await self.party_zone.control("stop")
            self._event("party_stopped", rooms=result["restored"], **event)
            self._republish()
            return result

        tracks: list[Track] = []
        if command.song_id is not None:
            tracks = [self._track(await self._require_song(command.song_id))]
        elif command.playlist is not None:
            tracks = [self._track(s) for s in await self.named_playlist(command.playlist)]
        if tracks and self.party_zone is None:
            raise errors.Unsupported("playing into the party needs [snapcast.mpd] (the party MPD)")

        result = await self.party.start(chosen, strict=command.rooms != "all")
        try:
            if self.party_zone is not None:
                if command.song_id is not None:
                    await self.party_zone.play_now(tracks[0])
                elif tracks:
                    await self.party_zone.set_queue(tracks)
                elif (self.party_zone.status.state != "playing"
                      and self.party_zone.status.extra.get("queue_length")):
                    await self.party_zone.control("play")  # carry on with what it had
        except ZoneError as error:
            raise PlaybackFailed(f"party started, but the party MPD failed: {error}") from None
        self._event("party_started", rooms=result["rooms"], song_id=command.song_id, **event)
        self._republish()
        return result
