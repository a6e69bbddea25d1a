"""Music engines behind one interface (see base.MusicEngine), found through entry points.

Every engine, the built-ins included, is a plugin registered in the `cassetted.engines`
entry-point group of its package (see cassetted.plugins and music/_template.py):

```toml
[project.entry-points."cassetted.engines"]
builtin = "cassetted.music.builtin.plugin:PLUGIN"
```

The entry points are read from installed package metadata, so a checkout must be
pip-installed (`pip install -e .`; scripts/run and scripts/test do this) for the built-ins
to be found. Engines are created only when first used, so heavy ones (torch, ACE-Step)
cost nothing to a daemon that never asks for them.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from cassetted.contract import errors
from cassetted.music.base import Audio, Cancelled, MusicEngine, ProgressCallback
from cassetted.music.plugin import EngineCapabilities, EnginePlugin
from cassetted.plugins import ENGINE_GROUP, Registry

if TYPE_CHECKING:
    from cassetted.config import Settings

BUILTIN_ENGINES: tuple[str, ...] = ("builtin", "acestep", "acestep_api")

ENGINE_PLUGINS: Registry[EnginePlugin] = Registry(ENGINE_GROUP, "engine", EnginePlugin, BUILTIN_ENGINES)


def engine_plugin(name: str, field: str | None = "engine") -> EnginePlugin:
    """The registered engine `name`, or the UnknownEngine error requests are answered with."""
    plugin = ENGINE_PLUGINS.get(name)
    if plugin is None:
        raise errors.UnknownEngine(
            f"unknown engine {name!r} (engines: {', '.join(ENGINE_PLUGINS.names())})", field)
    return plugin


def capabilities_of(engine: MusicEngine) -> EngineCapabilities:
    """What a created engine declared (through its plugin, by its name)."""
    return engine_plugin(engine.name).capabilities


class EngineRegistry:
    """Creates each engine once per process (models load once) and hands it out."""

    def __init__(self, settings: Settings, credentials: Any = None) -> None:
        self.default = engine_plugin(settings.generation.engine, None).name
        self._settings = settings
        self._credentials = credentials
        self._engines: dict[str, MusicEngine] = {}
        self._lock = threading.Lock()

    def get(self, name: str | None = None) -> MusicEngine:
        plugin = engine_plugin(name or self.default)
        with self._lock:
            engine = self._engines.get(plugin.name)
            if engine is None:
                engine = self._engines[plugin.name] = plugin.create(self._settings, self._credentials)
        return engine


__all__ = ["BUILTIN_ENGINES", "ENGINE_PLUGINS", "Audio", "Cancelled", "EngineCapabilities",
           "EnginePlugin", "EngineRegistry", "MusicEngine", "ProgressCallback", "capabilities_of",
           "engine_plugin"]
