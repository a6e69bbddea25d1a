"""The daemon: builds every part, starts them in a fixed order, stops them in reverse.

Build (`_build`): the event bus and the MQTT link's outbound side first, then the core
(playback, job runner, room modes, household), then the features on top (party, the song
desk, karaoke, the command handlers, Hermes, Home Assistant). Each part is given what it
uses when it is built; parts hear about each other through the bus (cassetted.events).

Start, each step logged: store (open, migrate) -> media server -> household -> room modes
-> party (before the runner: no finished party song goes unheard) -> with [cluster], the
scheduler (NATS) and the local workers -> job runner (recover
interrupted jobs, start workers) -> playback zones -> karaoke -> Hermes -> the MQTT link
(connect, retry forever; commands arrive only now that every part is up) -> READY=1 to
systemd once the broker answered. Stop (SIGTERM/SIGINT) runs the same steps in exact
reverse in `finally`: the link first (no new command; queued messages flushed, `offline`),
then Hermes, karaoke, playback, the runner (running jobs go back to the queue), the local
workers and the scheduler, the party,
the modes, the household, the media server, and the store last.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cassetted import __version__
from cassetted._app import sdnotify
from cassetted.api.commands import Commands
from cassetted.api.desk import SongDesk
from cassetted.config import ConfigError, Settings
from cassetted.contract.schemas import VoteCommand
from cassetted.events import BrokerConnected, EventBus
from cassetted.features.karaoke import Karaoke
from cassetted.features.modes import RoomModes
from cassetted.features.party import PartyHost
from cassetted.homeassistant.bridge import HomeAssistantBridge
from cassetted.household.service import Household
from cassetted.jobs.runner import JobRunner, Producer
from cassetted.library import index as library_index
from cassetted.library.media import MediaServer, song_file_lookup
from cassetted.mqtt.client import OUTBOX_LIMIT, MqttLink
from cassetted.mqtt.publisher import MqttPublisher, ReplyFirst
from cassetted.mqtt.router import Router
from cassetted.playback.controller import PlaybackController
from cassetted.store.database import REBUILD_HINT, Job, Store, StoreError, describe, is_empty
from cassetted.tasks import BackgroundTasks
from cassetted.voice import intake
from cassetted.voice.hermes import HermesAdapter, HermesAnnouncer

if TYPE_CHECKING:
    from cassetted.cluster.local import LocalWorkers
    from cassetted.cluster.scheduler import ClusterScheduler

log = logging.getLogger(__name__)


async def _nothing() -> None:
    """The start or stop of a part that has none."""


@dataclass
class Step:
    """One part in the start order: started in order, stopped in exact reverse."""

    name: str
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]


class Daemon:
    """Owns every long-lived part and the tasks that run them."""

    def __init__(self, settings: Settings, rebuild_library: bool = False) -> None:
        self.settings = settings
        self._rebuild_library = rebuild_library
        url = settings.storage.database_url
        self._db_url = url.get_secret_value() if url else None
        self.store = Store(self._db_url, settings.state_dir)
        self._stop = asyncio.Event()
        # The link's run and the watchdog never end on their own: one that fails takes the
        # daemon down, with an exit status that has systemd (Restart=on-failure) restart us.
        self._tasks = BackgroundTasks("daemon", on_failure=self._task_failed)
        self.failed = False

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
        running: list[Step] = []
        try:
            if self._rebuild_library:
                await self.store.call(library_index.rebuild, settings.library_dir)
            parts = self._build()
            for step in parts.steps:
                log.info("starting %s", step.name)
                await step.start()
                running.append(step)
            await self._wait_online(parts.link, started)
            await self._stop.wait()
        finally:
            log.info("stopping")
            sdnotify.notify("STOPPING=1")
            for step in reversed(running):
                log.info("stopping %s", step.name)
                try:
                    await step.stop()
                except Exception:
                    log.exception("%s did not stop cleanly", step.name)
            await self._tasks.cancel_all()
            await self.store.close()
            log.info("stopped")

    async def _check_not_replaced(self) -> None:
        """An empty database next to a library of songs is a deleted database: opening it
        would orphan every file and forget every request id, so refuse unless told."""
        if self._rebuild_library:
            return
        files = await asyncio.to_thread(library_index.audio_files, self.settings.library_dir)
        empty: bool = bool(files) and await self.store.call(is_empty, self._db_url,
                                                            self.settings.state_dir)
        if empty:
            raise StoreError(
                f"the database {describe(self._db_url, self.settings.state_dir)} is empty but "
                f"the library {self.settings.library_dir} holds {len(files)} song file(s): "
                f"was the database deleted? Restore it from a backup, or {REBUILD_HINT}")

    def _build(self) -> _Parts:
        """Build every part, each from parts built before it; nothing runs yet. Data flows
        one way: MQTT in -> command handlers -> desk -> job runner -> library -> playback;
        the bus tells whoever follows (publisher, Home Assistant, party, Hermes)."""
        settings, store = self.settings, self.store
        base = settings.mqtt.base_topic
        bus = EventBus()
        link = MqttLink(settings.mqtt, session_marker=settings.state_dir / "mqtt-session")
        # Replies first: bulk (state, discovery, events) may fill half the outbox at most.
        outbox = ReplyFirst(link.publish, backlog=lambda: link.backlog,
                            bulk_limit=OUTBOX_LIMIT // 2, base_topic=base)
        household_on = settings.household.enabled
        router = Router(base, outbox.command_output,
                        user_prefix="as" if household_on and "mqtt_username" in
                        settings.household.identify_by else None)
        publisher = MqttPublisher(base, outbox.bulk, bus)

        # The core: playback, the queue, the room modes, the household.
        playback = PlaybackController(settings, store, bus, publisher.room_state, publisher.event)
        cluster, local_workers, producers = self._cluster()
        runner = JobRunner(store, settings, bus, read_prompt=intake.read_prompt,
                           deliver=playback.song_ready, producers=producers)
        modes = RoomModes(settings, store, bus, playback=playback, submit_direct=runner.submit,
                          cancel_job=runner.cancel, publish_event=publisher.event)
        household = Household(settings, store, bus, modes=modes,
                              publish_stats=functools.partial(publisher.state, "library/stats"),
                              publish_event=publisher.event, read_prompt=intake.read_prompt)

        # The features, on top of the core.
        party = PartyHost(settings, store, bus, playback=playback, household=household,
                          submit_direct=runner.submit, cancel_job=runner.cancel,
                          publish_state=functools.partial(publisher.state, "party/state"),
                          publish_event=publisher.event)
        desk = SongDesk(store, runner, household, party)
        karaoke = Karaoke(settings, store, bus, desk=desk, modes=modes,
                          publish_lyrics=lambda room_id, display:
                          publisher.state(f"room/{room_id}/lyrics", display))
        commands = Commands(settings, desk=desk, runner=runner, playback=playback,
                            household=household, modes=modes, party=party, karaoke=karaoke,
                            parse_voice=self._voice_parser())
        commands.register(router)
        announcer: HermesAnnouncer | None = None
        if settings.hermes.enabled:
            async def hermes_publish(topic: str, payload: dict[str, Any]) -> None:
                # The adapter awaits its publish; the link's only queues (never blocks).
                link.publish(topic, json.dumps(payload))

            hermes = HermesAdapter.from_settings(
                settings.hermes, settings.rooms, settings.voice.site_rooms,
                publish=hermes_publish, submit=desk.submit)
            for topic in hermes.subscriptions():
                router.raw(topic, hermes.handle)
            announcer = HermesAnnouncer(hermes, bus, quiet=modes.quiet)
        if settings.homeassistant.discovery:
            home_assistant_bridge(settings, outbox.bulk, router, bus, commands, desk)
        media = None
        if settings.media.enabled:
            media = MediaServer(settings.media, song_file_lookup(store, settings.library_dir))

        steps = [
            Step("media server", media.start, media.stop) if media is not None else None,
            Step("household", household.start, household.stop),
            Step("room modes", modes.start, modes.stop),
            Step("party", party.start, party.stop),
            Step("cluster", cluster.start, cluster.stop) if cluster is not None else None,
            Step("local workers", local_workers.start, local_workers.stop)
            if local_workers is not None else None,
            Step("job runner", runner.start, runner.stop),
            Step("playback", playback.start, playback.stop),
            Step("karaoke", _nothing, karaoke.stop),
            Step("hermes", _nothing, announcer.stop) if announcer is not None else None,
            Step("mqtt link", functools.partial(self._connect, link, router, bus),
                 functools.partial(self._disconnect, link)),
        ]
        return _Parts(link=link, steps=[step for step in steps if step is not None])

    def _cluster(self) -> tuple[ClusterScheduler | None, LocalWorkers | None,
                                list[Producer] | None]:
        """With [cluster] nats_url: the scheduler, the runner's slots on it and the local
        workers; without, nothing (the runner makes songs in its own worker processes)."""
        settings = self.settings
        if not settings.cluster.enabled:
            return None, None, None
        try:
            import nats  # noqa: F401 - only to say plainly that the extra is missing
        except ImportError:
            raise ConfigError("[cluster] nats_url needs the NATS client: "
                              "pip install 'cassetted[cluster]'") from None
        from cassetted.cluster.local import LocalWorkers
        from cassetted.cluster.scheduler import ClusterScheduler, ClusterSlot
        from cassetted.cluster.worker import default_name

        store = self.store

        async def job_state(job_id: str) -> str | None:
            job = await store.call(Job.get_or_none, Job.id == job_id)
            return str(job.state) if job is not None else None

        scheduler = ClusterScheduler(settings, job_state)
        slots: list[Producer] = [ClusterSlot(scheduler, i)
                                 for i in range(settings.cluster.max_in_flight)]
        host = default_name()
        local = LocalWorkers(settings, [f"{host}-local-{i}"
                                        for i in range(settings.cluster.local_workers)])
        return scheduler, local, slots

    def _voice_parser(self) -> Callable[..., Any]:
        """The voice handler's parser; with [voice] llm_fallback it uses the asking user's
        keys, read on the store thread."""
        settings = self.settings
        credentials = None
        if settings.voice.llm_fallback:
            from cassetted.store.credentials import CredentialStore

            credentials = intake.StoreThreadCredentials(
                CredentialStore.open(settings.state_dir), self.store, asyncio.get_running_loop())
        return functools.partial(intake.voice_request, settings=settings, credentials=credentials)

    async def _connect(self, link: MqttLink, router: Router, bus: EventBus) -> None:
        """Connect in the background, forever; every (re)connection is told on the bus."""
        self._tasks.spawn(link.run(router, on_connect=lambda: bus.emit(BrokerConnected())),
                          "mqtt")

    async def _disconnect(self, link: MqttLink) -> None:
        """No new command from here on; what is queued goes out, then `offline`."""
        await link.flush()
        await link.goodbye()
        await self._tasks.cancel("mqtt")
        await link.close()

    async def _wait_online(self, link: MqttLink, started: float) -> None:
        """READY=1 once store and broker are up; then keep the watchdog fed."""
        online = self._tasks.spawn(link.connected.wait(), "online")
        stop = self._tasks.spawn(self._stop.wait(), "stop-requested")
        await asyncio.wait({online, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not online.done():
            online.cancel()
            return
        log.info("online after %.2f s", time.monotonic() - started)
        sdnotify.notify("READY=1")
        interval = sdnotify.watchdog_interval_s()
        if interval:
            self._tasks.spawn(self._watchdog(interval), "watchdog")

    async def _watchdog(self, interval: float) -> None:
        # The loop answering at all is the liveness we vouch for.
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _task_failed(self, task: asyncio.Task[Any], error: BaseException) -> None:
        log.error("task %s died; stopping so that the service manager restarts cassetted",
                  task.get_name())
        self.failed = True
        self._stop.set()


def home_assistant_bridge(settings: Settings, publish: Callable[..., None], router: Router,
                          bus: EventBus, commands: Commands, desk: SongDesk
                          ) -> HomeAssistantBridge:
    """The Home Assistant bridge, routed, acting through the command handlers as whoever
    Home Assistant's panel stands for."""
    bridge = HomeAssistantBridge(
        settings, publish, bus,
        submit=desk.submit,
        vote=lambda song_id, value: commands.vote_as(
            song_id, VoteCommand(vote=value), desk.bridge_caller("homeassistant")),
        room_command=lambda room_id, command: commands.room_set_as(
            room_id, command, desk.bridge_caller(None)),
        party_command=lambda command: commands.party_set_as(command, desk.bridge_caller(None)),
        mode_command=lambda room_id, command: commands.mode_as(
            room_id, command, desk.bridge_caller(None)))
    for topic in bridge.subscriptions():
        router.raw(topic, bridge.handle)
    return bridge


@dataclass
class _Parts:
    """What `_build` made: the link (the daemon waits for it to connect) and the steps."""

    link: MqttLink
    steps: list[Step]


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
