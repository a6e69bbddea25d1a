"""MPD zone: a room whose speakers are driven by one MPD, over python-mpd2's asyncio client.

A song reaches MPD through MPD's own library: the file is hard-linked (copied when the
music directory is on another filesystem) into `<music_dir>/cassetted/<song_id>.<ext>`, MPD
is asked to `update` that one path, and we wait for MPD's `update` idle event before `addid`
+ `playid`. Over a local socket without a music_dir, a `file://` URI is used instead.

State comes from MPD's `idle` (player, mixer, playlist, options): no polling. While MPD is
unreachable the zone reports "unavailable" and reconnects with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from mpd.asyncio import MPDClient
from mpd.base import CommandError, ProtocolError
from mpd.base import ConnectionError as MpdConnectionError

from cassetted.playback.base import StateCallback, Track, ZoneError, ZoneStatus
from cassetted.playback.settings import MpdEndpoint
from cassetted.tasks import BackgroundTasks

log = logging.getLogger(__name__)

LIBRARY_FOLDER = "cassetted"
UPDATE_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0
COMMAND_DEADLINE_S = 45.0  # longest any exchange may take (an update wait included)
_WATCHED = ["player", "mixer", "playlist", "options", "update", "database"]
_PLAYER_SUBSYSTEMS = {"player", "mixer", "playlist", "options"}
_STATES = {"play": "playing", "pause": "paused"}
# python-mpd2 re-enters `idle` this long after the last command (default 0.1 s). Short, so
# the `update` event that play_now waits for arrives promptly.
_IDLE_AFTER_S = 0.002


class MpdZone:
    """Implements Zone (and PlaylistMirror) for one room on one MPD."""

    def __init__(self, room_id: str, endpoint: MpdEndpoint, *,
                 reconnect_min_s: float = 0.1, reconnect_max_s: float = 5.0) -> None:
        self.room_id = room_id
        self._endpoint = endpoint
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._client: MPDClient | None = None  # set only while connected
        self._connected = asyncio.Event()  # set exactly while _client is
        self._on_state: StateCallback | None = None
        self._tasks = BackgroundTasks(f"mpd-{room_id}")
        self._status = ZoneStatus("unavailable", extra={"reason": "not connected yet"})
        self._db_changed = asyncio.Event()  # replaced after every set: see _signal_db
        self._uri_ids: dict[str, str] = {}  # MPD URI -> song id, for URIs we placed

    @property
    def where(self) -> str:
        host = self._endpoint.host
        return host if self._local_socket else f"{host}:{self._endpoint.port}"

    @property
    def _local_socket(self) -> bool:
        return self._endpoint.host.startswith(("/", "@"))

    @property
    def status(self) -> ZoneStatus:
        return self._status

    # ------------------------------------------------------------------ lifecycle

    async def start(self, on_state: StateCallback) -> None:
        self._on_state = on_state
        self._tasks.spawn(self._run(), "connection", replace=True)

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    async def wait_connected(self, timeout_s: float = 10.0) -> None:
        """For callers that need MPD now (tests, the benchmark); the daemon never waits."""
        async with asyncio.timeout(timeout_s):
            await self._connected.wait()

    async def _run(self) -> None:
        delay = self._reconnect_min_s
        while True:
            client = MPDClient()
            client.IMMEDIATE_COMMAND_TIMEOUT = _IDLE_AFTER_S
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for turns a cancel that
                # meets a finished connect (refused at once) into the connect's error, and
                # this loop would reconnect for ever behind a stop waiting for it.
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await client.connect(self._endpoint.host, self._endpoint.port)
                if self._endpoint.password is not None:
                    await client.password(self._endpoint.password.get_secret_value())
                self._client = client
                self._connected.set()
                delay = self._reconnect_min_s
                log.info("room %s: connected to MPD %s", self.room_id, self.where)
                await self._refresh(client)
                async for changes in client.idle(_WATCHED):
                    if "update" in changes or "database" in changes:
                        self._signal_db()
                    if _PLAYER_SUBSYSTEMS.intersection(changes):
                        await self._refresh(client)
                reason = "connection closed"
            except asyncio.CancelledError:
                raise
            except (TimeoutError, OSError, MpdConnectionError, ProtocolError, CommandError) as error:
                reason = str(error) or type(error).__name__
            except Exception as error:
                log.exception("room %s: MPD connection failed", self.room_id)
                reason = repr(error)
            finally:
                self._client = None
                self._connected.clear()
                with contextlib.suppress(Exception):
                    client.disconnect()
                self._signal_db()  # waiters re-check and find the connection gone
            if self._status.state != "unavailable":
                log.warning("room %s: MPD %s unavailable (%s); reconnecting",
                            self.room_id, self.where, reason)
            self._set_status(ZoneStatus(
                "unavailable", extra={"reason": f"MPD at {self.where} unreachable: {reason}"}))
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # a cancel some await swallowed
                raise asyncio.CancelledError
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max_s)

    def _signal_db(self) -> None:
        self._db_changed.set()
        self._db_changed = asyncio.Event()

    # ------------------------------------------------------------------ state

    async def _refresh(self, client: MPDClient) -> None:
        status, song = await asyncio.gather(client.status(), client.currentsong())
        self._set_status(self._to_status(status, song))

    def _to_status(self, status: dict[str, str], song: dict[str, str]) -> ZoneStatus:
        state = _STATES.get(status.get("state", ""), "idle")
        file = song.get("file") if state != "idle" else None
        volume = int(status.get("volume", -1))
        elapsed = status.get("elapsed")
        return ZoneStatus(
            state=state,  # type: ignore[arg-type]
            song_id=self._song_id(file) if file else None,
            volume=volume if 0 <= volume <= 100 else None,
            elapsed_s=float(elapsed) if elapsed is not None else None,
            extra={"queue_length": int(status.get("playlistlength", 0))},
        )

    def _song_id(self, uri: str) -> str | None:
        """Our song id from a URI we placed; None for music that is not ours."""
        if uri in self._uri_ids:
            return self._uri_ids[uri]
        if uri.startswith(f"{LIBRARY_FOLDER}/"):
            return Path(uri).stem
        return None

    def _set_status(self, status: ZoneStatus) -> None:
        if status == self._status:
            return
        self._status = status
        if self._on_state is not None:
            self._on_state(status)

    # ------------------------------------------------------------------ delivery

    def _require(self) -> MPDClient:
        client = self._client
        if client is None:
            reason = self._status.extra.get("reason", "not connected")
            raise ZoneError(f"the player of room {self.room_id!r} is unavailable ({reason})")
        return client

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """MPD's refusals, lost connections and silences become ZoneErrors a person can read.

        Bounded: a connection that goes quiet without closing must not hang a caller.
        """
        try:
            async with asyncio.timeout(COMMAND_DEADLINE_S):
                yield
        except TimeoutError:
            raise ZoneError(f"MPD at {self.where} did not answer within "
                            f"{COMMAND_DEADLINE_S:g} s") from None
        except CommandError as error:
            raise ZoneError(f"MPD refused: {error}") from None
        except (MpdConnectionError, ProtocolError, OSError) as error:
            raise ZoneError(f"lost the connection to MPD at {self.where}: {error}") from None

    def _place(self, track: Track) -> tuple[str, bool]:
        """The URI MPD knows the track by, and whether it is new to MPD's music directory.

        Runs in a thread: a copy across filesystems can take a while.
        """
        music_dir = self._endpoint.music_dir
        if music_dir is None:
            if self._local_socket:
                return track.path.resolve().as_uri(), False
            raise ZoneError(f"room {self.room_id!r}: set mpd.music_dir (MPD's music_directory) "
                            "so songs can be handed to MPD")
        suffix = track.path.suffix or ".flac"
        uri = f"{LIBRARY_FOLDER}/{track.song_id}{suffix}"
        dest = Path(music_dir) / uri
        try:
            size = track.path.stat().st_size
            if dest.exists() and dest.stat().st_size == size:
                return uri, False
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.part")  # MPD skips hidden files
            tmp.unlink(missing_ok=True)
            try:
                os.link(track.path, tmp)
            except OSError:  # another filesystem, or links not allowed
                shutil.copyfile(track.path, tmp)
            os.replace(tmp, dest)
            lyrics = track.path.with_suffix(".lrc")  # timed lyrics, for clients that show them
            if lyrics.is_file():
                shutil.copyfile(lyrics, dest.with_suffix(".lrc"))
        except FileNotFoundError as error:
            raise ZoneError(f"song file missing: {error.filename}") from None
        except OSError as error:
            raise ZoneError(f"cannot place the song in {music_dir}: {error}") from None
        return uri, True

    async def _deliver(self, tracks: list[Track]) -> list[str]:
        """Place the tracks in MPD's music directory and make MPD's database know them."""
        placed = [await asyncio.to_thread(self._place, track) for track in tracks]
        for track, (uri, _new) in zip(tracks, placed, strict=True):
            self._uri_ids[uri] = track.song_id
        new = [uri for uri, is_new in placed if is_new]
        if new:
            await self._update(new[0] if len(new) == 1 else LIBRARY_FOLDER)
        return [uri for uri, _new in placed]

    async def _update(self, path: str) -> None:
        """`update path` and wait until MPD has finished that job (its `update` idle event)."""
        client = self._require()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + UPDATE_TIMEOUT_S
        async with self._errors():
            job = int((await client.update(path)) or 0)
            while True:
                changed = self._db_changed  # taken before the check: no lost wake-up
                current = (await self._require().status()).get("updating_db")
                if current is None or int(current) > job:
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise ZoneError(f"MPD did not finish updating {path!r} in time")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)

    async def _add(self, client: MPDClient, uri: str, position: int | None = None) -> str:
        """`addid`, updating MPD's database once if it does not know the file (MPD restarted
        with an older database, or someone removed it)."""
        args = [uri] if position is None else [uri, position]
        try:
            return str(await client.addid(*args))
        except CommandError as error:
            unknown_file = "No such" in str(error) or "Not found" in str(error)
            if uri.startswith("file://") or not unknown_file:
                raise
        await self._update(uri)
        try:
            return str(await client.addid(*args))
        except CommandError as error:
            raise ZoneError(f"MPD does not find {uri!r} after an update ({error}); is "
                            f"mpd.music_dir ({self._endpoint.music_dir}) MPD's music_directory?"
                            ) from None

    # ------------------------------------------------------------------ Zone

    async def play_now(self, track: Track) -> None:
        client = self._require()
        [uri] = await self._deliver([track])
        async with self._errors():
            status = await client.status()
            position = int(status["song"]) + 1 if "song" in status else None
            song = await self._add(client, uri, position)
            await client.playid(song)

    async def set_queue(self, tracks: list[Track], start_index: int = 0, play: bool = True) -> None:
        client = self._require()
        uris = await self._deliver(tracks)
        async with self._errors():
            await client.clear()
            for uri in uris:
                await self._add(client, uri)
            if play and uris:
                await client.play(min(max(start_index, 0), len(uris) - 1))

    async def set_upcoming(self, tracks: list[Track]) -> None:
        """Replace what follows the song on air, leaving that song alone: a voted party queue
        changes its future without a gap. With nothing on air the queue becomes `tracks`,
        played from the first.

        The new songs are appended before the old ones go (by id): should the song on air
        end meanwhile, MPD moves on to a song that is still there, never off the end of the
        queue. A first track that is the song on air is not queued again."""
        client = self._require()
        uris = await self._deliver(tracks)
        async with self._errors():
            status = await client.status()
            if status.get("state") not in ("play", "pause") or "songid" not in status:
                await client.clear()
                for uri in uris:
                    await self._add(client, uri)
                if uris:
                    await client.play(0)
                return
            queue = await client.playlistinfo()
            ids = [item["id"] for item in queue]
            on_air = ids.index(status["songid"]) if status["songid"] in ids else int(status["song"])
            if uris and on_air < len(queue) and uris[0] == queue[on_air]["file"]:
                uris = uris[1:]
            for uri in uris:
                await self._add(client, uri)
            for stale in ids[on_air + 1:]:
                with contextlib.suppress(CommandError):  # removed by someone else meanwhile
                    await client.deleteid(stale)

    async def control(self, action: str, *, volume: int | None = None,
                      position_s: float | None = None) -> None:
        client = self._require()
        async with self._errors():
            if action == "play":
                if (await client.status()).get("state") == "pause":
                    await client.pause(0)
                else:
                    await client.play()
            elif action == "pause":
                await client.pause(1)
            elif action in ("stop", "next", "previous"):
                await getattr(client, action)()
            elif action == "volume":
                if volume is None:
                    raise ZoneError("volume needs a value from 0 to 100")
                await client.setvol(volume)
            elif action == "seek":
                if position_s is None:
                    raise ZoneError("seek needs position_s")
                await client.seekcur(position_s)
            else:
                raise ZoneError(f"MPD zones cannot {action!r}")

    # ------------------------------------------------------------------ PlaylistMirror

    async def save_playlist(self, name: str, tracks: list[Track]) -> None:
        """Replace MPD's stored playlist `name` with `tracks` (removed when empty)."""
        client = self._require()
        uris = await self._deliver(tracks)
        async with self._errors():
            with contextlib.suppress(CommandError):  # "No such playlist"
                await client.rm(name)
            for uri in uris:
                await client.playlistadd(name, uri)

    async def append_to_playlist(self, name: str, track: Track) -> None:
        client = self._require()
        [uri] = await self._deliver([track])
        async with self._errors():
            await client.playlistadd(name, uri)

    async def stored_playlist(self, name: str) -> list[str]:
        """The URIs in a stored playlist (for checks and diagnostics)."""
        client = self._require()
        async with self._errors():
            try:
                return list(await client.listplaylist(name))
            except CommandError:
                return []
