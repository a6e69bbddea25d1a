"""Music engines behind one interface (see base.MusicEngine).

Engines are named here and imported only when first used, so heavy ones (torch, ACE-Step)
cost nothing to a daemon that never asks for them. Adding an engine is one file plus one
line in ENGINES.
"""

from __future__ import annotations

import importlib
import threading

from cassetted import errors
from cassetted.music.base import Audio, Cancelled, MusicEngine, ProgressCallback

# name -> "module:class"; the class takes the sample rate as its only argument.
ENGINES: dict[str, str] = {
    "builtin": "cassetted.music.builtin:BuiltinEngine",
}


class EngineRegistry:
    """Creates each engine once per process (models load once) and hands it out."""

    def __init__(self, default: str, sample_rate: int) -> None:
        if default not in ENGINES:
            raise errors.UnknownEngine(f"unknown engine {default!r} (engines: {', '.join(ENGINES)})")
        self.default = default
        self._sample_rate = sample_rate
        self._engines: dict[str, MusicEngine] = {}
        self._lock = threading.Lock()

    def get(self, name: str | None = None) -> MusicEngine:
        name = name or self.default
        if name not in ENGINES:
            raise errors.UnknownEngine(
                f"unknown engine {name!r} (engines: {', '.join(ENGINES)})", "engine")
        with self._lock:
            engine = self._engines.get(name)
            if engine is None:
                module_name, class_name = ENGINES[name].split(":")
                engine_class = getattr(importlib.import_module(module_name), class_name)
                engine = self._engines[name] = engine_class(self._sample_rate)
        return engine


__all__ = ["Audio", "Cancelled", "EngineRegistry", "ENGINES", "MusicEngine", "ProgressCallback"]
