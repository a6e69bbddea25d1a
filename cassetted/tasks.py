"""The one owner of background tasks: every long-lived part starts its tasks here.

A bare `asyncio.create_task` is a task nobody answers for: the loop keeps only a weak
reference to it (it may be collected mid-run), its failure vanishes unless someone awaits it,
and nothing cancels it on stop. Here each task has an id (`<owner>-<name>`), a second task
under a running id is refused (two sleep fades in one room would fight over the volume)
unless the caller says it replaces the first, a failure is logged at ERROR with its traceback,
and `cancel_all` on the owner's stop ends whatever still runs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class DuplicateTask(RuntimeError):
    """A task with this id is already running."""


class BackgroundTasks:
    """The tasks of one owner, by id."""

    def __init__(self, owner: str, on_failure: Callable[[asyncio.Task[Any], BaseException], None]
                 | None = None) -> None:
        self._owner = owner
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._on_failure = on_failure
        self._counter = itertools.count(1)

    def spawn(self, coro: Coroutine[Any, Any, T], name: str, *, replace: bool = False
              ) -> asyncio.Task[T]:
        """Run `coro` as task `<owner>-<name>`. A running task of that id is cancelled first
        when `replace`, otherwise refused with DuplicateTask (and `coro` closed unrun)."""
        task_id = f"{self._owner}-{name}"
        running = self._tasks.get(task_id)
        if running is not None and not running.done():
            if not replace:
                coro.close()
                raise DuplicateTask(f"task {task_id} is already running")
            running.cancel()
        task = asyncio.get_running_loop().create_task(coro, name=task_id)
        self._tasks[task_id] = task  # a strong reference, or the loop may collect it mid-run
        task.add_done_callback(self._done)
        return task

    def unique(self, prefix: str) -> str:
        """A name no other task of this owner has: `<prefix>#<n>` (for one-off tasks that
        may overlap, such as one save per mode change)."""
        return f"{prefix}#{next(self._counter)}"

    def get(self, name: str) -> asyncio.Task[Any] | None:
        task = self._tasks.get(f"{self._owner}-{name}")
        return task if task is not None and not task.done() else None

    def running(self) -> list[str]:
        return sorted(task_id for task_id, task in self._tasks.items() if not task.done())

    def _done(self, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(task.get_name()) is task:
            del self._tasks[task.get_name()]
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        log.error("task %s failed", task.get_name(), exc_info=error)
        if self._on_failure is not None:
            self._on_failure(task, error)

    async def cancel(self, name: str) -> None:
        """Cancel one task and wait until it has ended."""
        task = self._tasks.get(f"{self._owner}-{name}")
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for the running tasks to end by themselves (pending writes on stop)."""
        tasks = [task for task in self._tasks.values() if not task.done()]
        if tasks:
            await asyncio.wait(tasks)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
