"""The daemon: wires store, job runner and MQTT together; starts in order, stops in reverse.

Start: store (open, migrate) -> media server -> job runner (recover interrupted jobs, start
workers) -> playback zones -> MQTT link (connect, retry forever) -> READY=1 to systemd once
the broker answered. Stop (SIGTERM/SIGINT): runner (running jobs go back to the queue) ->
zones -> media server -> `offline` -> store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cassetted import __version__
from cassetted._app import sdnotify
from cassetted.api.commands import Commands
from cassetted.config import Settings
from cassetted.contract.schemas import JobEvent, QueueState, SongInfo, VoteCommand
from cassetted.features.karaoke import Karaoke
from cassetted.features.modes import RoomModes
from cassetted.features.party import PartyHost
from cassetted.homeassistant.bridge import HomeAssistantBridge
from cassetted.household.service import Household
from cassetted.jobs.runner import FanOut, JobListener, JobRunner
from cassetted.library import index as library_index
from cassetted.library.media import MediaServer, song_file_lookup
from cassetted.mqtt.client import OUTBOX_LIMIT, MqttLink
from cassetted.mqtt.publisher import MqttPublisher, ReplyFirst
from cassetted.mqtt.router import Router
from cassetted.playback.controller import PlaybackController
from cassetted.store.database import REBUILD_HINT, Store, StoreError, describe, is_empty
from cassetted.voice import intake
from cassetted.voice.hermes import HermesAdapter

log = logging.getLogger(__name__)


class Daemon:
    """Owns every long-lived part and the tasks that run them."""

    def __init__(self, settings: Settings, rebuild_library: bool = False) -> None:
        self.settings = settings
        self._rebuild_library = rebuild_library
        url = settings.storage.database_url
        self._db_url = url.get_secret_value() if url else None
        self.store = Store(self._db_url, settings.state_dir)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.failed = False  # a part died: exit non-zero so that systemd restarts us

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        settings = self.settings
        started = time.monotonic()
        log.info("cassetted %s starting; state in %s", __version__, settings.state_dir)
        settings.library_dir.mkdir(parents=True, exist_ok=True)

        await self._check_not_replaced()
        await self.store.open()
        log.info("store ready: %s", describe(self._db_url, settings.state_dir))
        if self._rebuild_library:
            await self.store.call(library_index.rebuild, settings.library_dir)
        parts = self._wire()
        if parts.media is not None:
            await parts.media.start()
        await parts.household.start()
        await parts.modes.start()
        await parts.party.start()  # before the runner: no finished party song goes unheard
        await parts.runner.start()
        await parts.playback.start()
        self._spawn(parts.link.run(), "mqtt")
        try:
            await self._wait_online(parts.link, started)
            await self._stop.wait()
        finally:
            log.info("stopping")
            sdnotify.notify("STOPPING=1")
            await parts.modes.stop()
            await parts.runner.stop()
            await parts.party.stop()
            await parts.playback.stop()
            await parts.household.stop()
            if parts.media is not None:
                await parts.media.stop()
            await parts.link.flush()
            await parts.link.goodbye()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.store.close()
            log.info("stopped")

    async def _check_not_replaced(self) -> None:
        """An empty database next to a library of songs is a deleted database: opening it
        would orphan every file and forget every request id, so refuse unless told."""
        if self._rebuild_library:
            return
        files = await asyncio.to_thread(library_index.audio_files, self.settings.library_dir)
        if files and await self.store.call(is_empty, self._db_url, self.settings.state_dir):
            raise StoreError(
                f"the database {describe(self._db_url, self.settings.state_dir)} is empty but "
                f"the library {self.settings.library_dir} holds {len(files)} song file(s): "
                f"was the database deleted? Restore it from a backup, or {REBUILD_HINT}")

    def _wire(self) -> _Parts:
        """Build every part and connect them; nothing runs yet. Data flows one way: MQTT in ->
        commands -> job runner -> playback; listeners hear about jobs and publish."""
        settings = self.settings
        router: Router
        bridge: HomeAssistantBridge | None = None
        commands: Commands
        modes: RoomModes

        def on_connect() -> None:
            publisher.republish()
            if bridge is not None:
                bridge.announce()

        link = MqttLink(settings.mqtt, on_message=lambda m: router.dispatch(m),
                        subscriptions=lambda: router.subscriptions(), on_connect=on_connect,
                        session_marker=settings.state_dir / "mqtt-session")
        household_on = settings.household.enabled
        # Replies first: bulk (state, discovery, events) may fill half the outbox at most.
        # (The link's outbox length is read directly: MqttLink has no accessor for it yet.)
        outbox = ReplyFirst(link.publish, backlog=lambda: link.backlog,
                            bulk_limit=OUTBOX_LIMIT // 2, base_topic=settings.mqtt.base_topic)
        router = Router(settings.mqtt.base_topic, outbox.command_output,
                        user_prefix="as" if household_on and "mqtt_username" in
                        settings.household.identify_by else None)
        publisher = MqttPublisher(settings.mqtt.base_topic, outbox.bulk)
        listeners: list[JobListener] = [publisher]

        if settings.hermes.enabled:
            async def hermes_publish(topic: str, payload: dict[str, Any]) -> None:
                # The adapter awaits its publish; the link's only queues (never blocks).
                link.publish(topic, json.dumps(payload))

            hermes = HermesAdapter.from_settings(
                settings.hermes, settings.rooms, settings.voice.site_rooms,
                publish=hermes_publish,
                submit=lambda request: commands.submit(request))
            for topic in hermes.subscriptions():
                router.raw(topic, hermes.handle)
            listeners.append(_HermesAnnouncer(hermes, quiet=lambda room_id: modes.quiet(room_id)))
        if settings.homeassistant.discovery:
            bridge = home_assistant_bridge(settings, outbox.bulk, router, lambda: commands)
            listeners.append(bridge)

        household = Household(settings, self.store,
                              publish_stats=lambda stats: publisher.state("library/stats", stats),
                              publish_event=publisher.event, read_prompt=intake.read_prompt,
                              room_changed=lambda room_id: playback.refresh_room(room_id))
        playback = PlaybackController(settings, self.store, publisher.room_state,
                                      publisher.event,
                                      room_extras=lambda room_id: _room_extras(household, room_id))
        listeners.append(_LibraryWatcher(household))
        # The party host makes songs itself (late-bound: the runner needs it as a listener)
        # and keeps party songs out of their rooms (deliver): they play in queue order.
        party = PartyHost(settings, self.store, playback=playback, household=household,
                          submit_direct=lambda request: runner.submit(request),
                          publish_state=lambda state: publisher.state("party/state", state),
                          publish_event=publisher.event,
                          cancel_job=lambda job_id: runner.cancel(job_id))
        listeners.append(party)
        runner = JobRunner(self.store, settings, listener=FanOut(*listeners),
                           read_prompt=intake.read_prompt, deliver=party.deliver)
        credentials = None
        if settings.voice.llm_fallback:  # the LLM-assisted parse uses the asking user's keys
            from cassetted.store.credentials import CredentialStore

            credentials = intake.StoreThreadCredentials(
                CredentialStore.open(settings.state_dir), self.store, asyncio.get_running_loop())
        commands = Commands(settings, self.store, runner, playback, household,
                            parse_voice=lambda command: intake.voice_request(command, settings,
                                                                             credentials))
        # Household parts, each optional to the handlers (see Commands.modes/party/karaoke).
        modes = RoomModes(settings, self.store, playback=playback, submit_direct=runner.submit,
                          cancel_job=runner.cancel, publish_event=publisher.event)
        household.modes = modes
        commands.modes = modes
        commands.party = party
        karaoke = Karaoke(settings, self.store, publish_lyrics=lambda room_id, display:
                          publisher.state(f"room/{room_id}/lyrics", display))
        playback.add_event_listener(karaoke.playback_event)  # the mirror follows playback
        commands.karaoke = karaoke
        commands.register(router)
        media = None
        if settings.media.enabled:
            media = MediaServer(settings.media, song_file_lookup(self.store, settings.library_dir))
        return _Parts(link=link, runner=runner, playback=playback, media=media,
                      household=household, modes=modes, party=party)

    async def _wait_online(self, link: MqttLink, started: float) -> None:
        """READY=1 once store and broker are up; then keep the watchdog fed."""
        online = asyncio.create_task(link.connected.wait())
        stop = asyncio.create_task(self._stop.wait())
        await asyncio.wait({online, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not online.done():
            online.cancel()
            return
        log.info("online after %.2f s", time.monotonic() - started)
        sdnotify.notify("READY=1")
        interval = sdnotify.watchdog_interval_s()
        if interval:
            self._spawn(self._watchdog(interval), "watchdog")

    async def _watchdog(self, interval: float) -> None:
        # The loop answering at all is the liveness we vouch for.
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _spawn(self, coro, name: str) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """These tasks never end on their own: one that fails takes the daemon down, with an
        exit status that has systemd (Restart=on-failure) start a fresh one."""
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s died; stopping so that the service manager restarts cassetted",
                      task.get_name(), exc_info=task.exception())
            self.failed = True
            self._stop.set()


def home_assistant_bridge(settings: Settings, publish: Callable[..., None], router: Router,
                          commands: Callable[[], Commands]) -> HomeAssistantBridge:
    """The Home Assistant bridge, routed, acting through the command handlers.

    `commands` is called late: the handlers need the job runner, which needs the bridge
    among its listeners.
    """
    bridge = HomeAssistantBridge(
        settings, publish,
        submit=lambda request: commands().submit(request),
        vote=lambda song_id, value: commands().vote_as(
            song_id, VoteCommand(vote=value), commands().bridge_caller("homeassistant")),
        room_command=lambda room_id, command: commands().room_set_as(
            room_id, command, commands().bridge_caller(None)),
        party_command=lambda command: commands().party_set_as(
            command, commands().bridge_caller(None)),
        mode_command=lambda room_id, command: commands().mode_as(
            room_id, command, commands().bridge_caller(None)))
    for topic in bridge.subscriptions():
        router.raw(topic, bridge.handle)
    return bridge


@dataclass
class _Parts:
    """The long-lived parts the daemon starts in order and stops in reverse."""

    link: MqttLink
    runner: JobRunner
    playback: PlaybackController
    media: MediaServer | None
    household: Household
    modes: RoomModes
    party: PartyHost


def _room_extras(household: Household, room_id: str) -> dict[str, object]:
    """The household's part of a room's retained state."""
    extras: dict[str, object] = {"learned": household.learned(room_id)}
    modes = household.modes
    if modes is not None:
        extras.update(modes.view(room_id))
    return extras


class _LibraryWatcher:
    """A JobListener that keeps the library statistics current."""

    def __init__(self, household: Household) -> None:
        self._household = household

    def job_changed(self, event: JobEvent) -> None:
        pass

    def queue_changed(self, state: QueueState) -> None:
        pass

    def song_ready(self, song: SongInfo, job_id: str) -> None:
        self._household.library_changed()


class _HermesAnnouncer:
    """A JobListener that has the Hermes adapter say "your song is ready" on the satellite,
    unless the song's room is quiet (asleep)."""

    def __init__(self, adapter: HermesAdapter,
                 quiet: Callable[[str | None], bool] = lambda room_id: False) -> None:
        self._adapter = adapter
        self._quiet = quiet
        self._tasks: set[asyncio.Task[bool]] = set()

    def job_changed(self, event: JobEvent) -> None:
        pass

    def queue_changed(self, state: QueueState) -> None:
        pass

    def song_ready(self, song: SongInfo, job_id: str) -> None:
        if self._quiet(song.room):
            log.info("song %s ready in quiet room %s: not announced", song.id, song.room)
            return
        task = asyncio.create_task(self._adapter.on_song_ready(job_id, song.title))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def run(settings: Settings, rebuild_library: bool = False) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit status; raises StoreError when the
    database cannot be used as it is (the caller prints it)."""

    async def main() -> int:
        # CPU-bound production threads hold the GIL; a waiting event loop gets it back only
        # after the switch interval (5 ms by default), which would cap intake at ~200
        # requests/s while a song renders. 0.5 ms keeps replies prompt at negligible cost.
        sys.setswitchinterval(0.0005)
        daemon = Daemon(settings, rebuild_library)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.request_stop)
        await daemon.run()
        return 1 if daemon.failed else 0

    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(main())
    return 0
