"""Music engines behind one interface (see base.MusicEngine).

Engines are named here and imported only when first used, so heavy ones (torch, ACE-Step)
cost nothing to a daemon that never asks for them. Adding an engine is one file with a
`create(settings, credentials)` factory plus one line in ENGINES.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

from cassetted.contract import errors
from cassetted.music.base import Audio, Cancelled, MusicEngine, ProgressCallback

if TYPE_CHECKING:
    from cassetted.config import Settings

# name -> "module:factory"; factory(settings: Settings, credentials: CredentialStore | None)
ENGINES: dict[str, str] = {
    "builtin": "cassetted.music.builtin.engine:create",
    "acestep": "cassetted.music.acestep.engine:create",
    "acestep_api": "cassetted.music.acestep.api:create",
}


class EngineRegistry:
    """Creates each engine once per process (models load once) and hands it out."""

    def __init__(self, settings: Settings, credentials: Any = None) -> None:
        default = settings.generation.engine
        if default not in ENGINES:
            raise errors.UnknownEngine(f"unknown engine {default!r} (engines: {', '.join(ENGINES)})")
        self.default = default
        self._settings = settings
        self._credentials = credentials
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
                module_name, factory_name = ENGINES[name].split(":")
                factory = getattr(importlib.import_module(module_name), factory_name)
                engine = self._engines[name] = factory(self._settings, self._credentials)
        return engine


__all__ = ["ENGINES", "Audio", "Cancelled", "EngineRegistry", "MusicEngine", "ProgressCallback"]
