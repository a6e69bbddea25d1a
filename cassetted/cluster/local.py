"""`[cluster] local_workers`: `cassetted worker` processes the daemon runs on its own machine.

They are ordinary workers (they pull from the same queue as any other machine's), started
as child processes that the kernel kills with the daemon, so a daemon killed with SIGKILL
leaves none behind to be doubled by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
from typing import Any

from cassetted.config import Settings
from cassetted.jobs.worker import die_with_parent
from cassetted.tasks import BackgroundTasks

log = logging.getLogger(__name__)

_CONTEXT = multiprocessing.get_context("spawn")
_STOP_GRACE_S = 10.0
_CHECK_EVERY_S = 5.0


def serve(settings: Settings, name: str, *, child: bool = False) -> int:
    """Run one worker until SIGTERM/SIGINT (the `cassetted worker` command, or a local one)."""
    from cassetted import redaction
    from cassetted.cluster.worker import ClusterWorker

    if child:
        die_with_parent()
        logging.basicConfig(level=settings.log.level,
                            format=f"%(levelname)s %(name)s[{name}]: %(message)s")
    redaction.install(redaction.configured_secrets(settings))

    async def main() -> None:
        worker = ClusterWorker(settings, name)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0


class LocalWorkers:
    """The daemon's own workers: started after the scheduler, stopped before it, started
    again if one dies (each renders in a child of its own, so it cannot be a daemonic
    process: the kernel's death signal, not multiprocessing, ties it to the daemon)."""

    def __init__(self, settings: Settings, names: list[str]) -> None:
        self._settings = settings
        self._names = names
        self._processes: dict[str, Any] = {}
        self._tasks = BackgroundTasks("local-workers")

    def _spawn(self, name: str) -> None:
        process = _CONTEXT.Process(target=serve, args=(self._settings, name),
                                   kwargs={"child": True}, name=f"cassetted-{name}")
        process.start()
        self._processes[name] = process

    async def start(self) -> None:
        for name in self._names:
            self._spawn(name)
        if self._names:
            log.info("cluster: %d local worker(s) started", len(self._names))
            self._tasks.spawn(self._supervise(), "supervise")

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(_CHECK_EVERY_S)
            for name, process in list(self._processes.items()):
                if not process.is_alive():
                    log.error("cluster: local worker %s exited (status %s); starting it again",
                              name, process.exitcode)
                    self._spawn(name)

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        processes, self._processes = list(self._processes.values()), {}
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: its job goes back to the queue at once
        for process in processes:
            await asyncio.to_thread(process.join, _STOP_GRACE_S)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)
