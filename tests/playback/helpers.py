"""Helpers shared by the playback tests (imported, unlike fixtures)."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from cassetted.playback.base import ZoneStatus


def require_servers() -> None:
    """Skip the calling test module unless real mpd/snapserver/snapclient and python-mpd2
    are here (Debian: apt-get install mpd snapserver snapclient; pip: the `mpd` extra)."""
    missing = [b for b in ("mpd", "snapserver", "snapclient")
               if shutil.which(b) is None and not Path(f"/usr/bin/{b}").exists()]
    if importlib.util.find_spec("mpd") is None:
        missing.append("python-mpd2")
    if missing:
        pytest.skip(f"needs {', '.join(missing)}", allow_module_level=True)


def write_flac(path: Path, seconds: float = 3.0, rate: int = 44100) -> Path:
    """A short stereo tone MPD can decode."""
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype("float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.stack([tone, tone], axis=1), rate, format="FLAC")
    return path



class Recorder:
    """A StateCallback that remembers every status and lets a test wait for one."""

    def __init__(self) -> None:
        self.statuses: list[ZoneStatus] = []
        self._changed = asyncio.Event()

    def __call__(self, status: ZoneStatus) -> None:
        self.statuses.append(status)
        self._changed.set()

    async def wait(self, predicate: Callable[[ZoneStatus], bool],
                   timeout: float = 5.0) -> ZoneStatus:  # noqa: ASYNC109 - a test's wait states its own limit
        """The first status (already seen or yet to come) matching `predicate`."""
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                for status in self.statuses[seen:]:
                    if predicate(status):
                        return status
                seen = len(self.statuses)
                self._changed.clear()
                await self._changed.wait()

    def mark(self) -> int:
        return len(self.statuses)

    async def wait_after(self, mark: int, predicate: Callable[[ZoneStatus], bool],
                         timeout: float = 5.0) -> ZoneStatus:  # noqa: ASYNC109 - a test's wait states its own limit
        """Like wait, but only among statuses reported after `mark`."""
        async with asyncio.timeout(timeout):
            while True:
                for status in self.statuses[mark:]:
                    if predicate(status):
                        return status
                mark = len(self.statuses)
                self._changed.clear()
                await self._changed.wait()


def run(coro: Any) -> Any:
    """Run one test body on a fresh event loop."""
    return asyncio.run(coro)
