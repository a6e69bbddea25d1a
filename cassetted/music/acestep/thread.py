"""One dedicated thread per model: every call into the model runs there, in order.

The caller (the job's thread) blocks in `run`, and progress reported by the model thread is
marshalled back: the caller receives it from a queue and calls the job's progress callback on
its own thread. When that callback raises Cancelled, the model thread is told, stops at its
next step (its report function raises Cancelled there), and `run` re-raises Cancelled.
A heartbeat keeps calling the progress callback while a long step runs, so a cancellation
is noticed even then.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from cassetted.music.base import Cancelled, ProgressCallback

T = TypeVar("T")
Report = Callable[[float, "str | None"], None]


class ModelThread:
    def __init__(self, name: str, heartbeat_s: float = 1.0) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._heartbeat_s = heartbeat_s
        self._thread_id: int | None = None

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the model thread and wait (for loading and small jobs)."""
        return self._executor.submit(self._mark(fn)).result()

    def _mark(self, fn: Callable[[], T]) -> Callable[[], T]:
        def wrapped() -> T:
            self._thread_id = threading.get_ident()
            return fn()
        return wrapped

    @property
    def thread_id(self) -> int | None:
        return self._thread_id

    def run(self, fn: Callable[[Report], T], progress: ProgressCallback,
            wait_on_cancel: bool = True) -> T:
        """Run `fn(report)` on the model thread; `report` calls reach `progress` here.
        On cancel, waits for `fn` to stop (the model is idle when `run` raises) unless
        `wait_on_cancel` is false (then `fn` runs on to its end in the background)."""
        events: queue.Queue[tuple[float, str | None]] = queue.Queue()
        cancel = threading.Event()

        def report(fraction: float, note: str | None = None) -> None:
            if cancel.is_set():
                raise Cancelled()
            events.put((fraction, note))

        future: Future[T] = self._executor.submit(self._mark(lambda: fn(report)))
        future.add_done_callback(lambda _f: events.put((-1.0, None)))  # wake the caller
        last = 0.0
        note: str | None = None
        while True:
            try:
                fraction, new_note = events.get(timeout=self._heartbeat_s)
            except queue.Empty:  # heartbeat: same fraction, a chance for the callback to cancel
                fraction, new_note = last, None
            if fraction < 0:  # the done sentinel comes after every report of the call
                break
            last, note = max(last, min(1.0, fraction)), new_note or note
            try:
                progress(last, note)
            except Cancelled:
                cancel.set()
                if not wait_on_cancel:
                    raise
                # Let the worker stop; whatever it raises, Cancelled or not, the job is cancelled.
                with contextlib.suppress(Exception):
                    future.result()
                raise
        return future.result()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
