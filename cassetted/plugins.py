"""Plugins: engines, lyrics providers and zones, found through Python entry points.

Each kind has an entry-point group, and the built-ins are registered there exactly as a
third-party package registers its own (see `[project.entry-points."cassetted.engines"]` in
pyproject.toml):

```toml
[project.entry-points."cassetted.engines"]
musicgen = "cassetted_musicgen.plugin:PLUGIN"
```

An entry point names a small *descriptor* (an EnginePlugin, LyricsPlugin or ZonePlugin): the
plugin's name, its declared capabilities, its settings model and a lazy factory. Importing a
descriptor must stay cheap (no torch, scipy or python-mpd2): the factory imports the heavy
module only when the daemon first needs the plugin.

Entry points are read from the installed package metadata (`*.dist-info/entry_points.txt`),
written when a package is pip-installed. A checkout therefore has to be installed
(`pip install -e .`; scripts/run and scripts/test do it) for cassetted's own built-ins to
be found; a missing built-in raises PluginError saying so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib import metadata
from typing import Generic, Protocol, TypeVar

ENGINE_GROUP = "cassetted.engines"
LYRICS_GROUP = "cassetted.lyrics"
ZONE_GROUP = "cassetted.zones"


class PluginError(Exception):
    """A plugin cannot be used (broken entry point, duplicate name, missing built-in).

    The message is one line that names the entry point and says what to do; the daemon
    reports it like a configuration error instead of a traceback."""


class Descriptor(Protocol):
    """What every descriptor has: the name requests and configuration use."""

    @property
    def name(self) -> str: ...


P = TypeVar("P", bound=Descriptor)


def load_factory(target: str) -> Callable[..., object]:
    """The callable named by "module:attribute", imported now (the lazy half of a plugin)."""
    import importlib

    module_name, _, attribute = target.partition(":")
    factory: Callable[..., object] = getattr(importlib.import_module(module_name), attribute)
    return factory


class Registry(Generic[P]):
    """The plugins of one kind, loaded from their entry-point group on first use.

    `kind` names the plugin in errors ("engine"), `builtins` are the names cassetted itself
    registers: if one of them is missing the package metadata is missing, and the error
    says how to install it.
    """

    def __init__(self, group: str, kind: str, descriptor: type[P], builtins: tuple[str, ...]) -> None:
        self.group = group
        self.kind = kind
        self._descriptor = descriptor
        self._builtins = builtins
        self._plugins: dict[str, P] | None = None
        self._lock = threading.Lock()

    def all(self) -> dict[str, P]:
        """Every registered plugin by name (loaded once; `reload()` reads the metadata again)."""
        plugins = self._plugins
        if plugins is None:
            with self._lock:
                if self._plugins is None:
                    self._plugins = self._load()
                plugins = self._plugins
        return plugins

    def names(self) -> tuple[str, ...]:
        return tuple(self.all())

    def get(self, name: str) -> P | None:
        return self.all().get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.all()

    def reload(self) -> None:
        """Forget what was loaded: the next call reads the entry points again (tests that
        install a plugin package at run time call it)."""
        with self._lock:
            self._plugins = None

    def _order(self, entry: metadata.EntryPoint) -> tuple[int, int, str]:
        """Built-ins first in their own order, then the others by name (stable listings);
        cassetted's own entry before another package's of the same name."""
        builtin = self._builtins.index(entry.name) if entry.name in self._builtins else len(self._builtins)
        own = 0 if entry.dist is not None and entry.dist.name == "cassetted" else 1
        return builtin, own, entry.name

    def _load(self) -> dict[str, P]:
        found: dict[str, P] = {}
        origin: dict[str, str] = {}
        for entry in sorted(metadata.entry_points(group=self.group),
                            key=self._order):
            where = f"{self.group} entry point {entry.name!r} ({entry.value})"
            try:
                plugin = entry.load()
            except Exception as error:  # noqa: BLE001 - any failure of a plugin's import is its own
                raise PluginError(f"{where} cannot be loaded: {type(error).__name__}: {error}") from None
            if not isinstance(plugin, self._descriptor):
                raise PluginError(f"{where} is a {type(plugin).__name__}, "
                                  f"not a {self._descriptor.__name__}")
            if plugin.name != entry.name:
                raise PluginError(f"{where} describes a {self.kind} named {plugin.name!r}; "
                                  "the entry point's name and the plugin's name must match")
            if plugin.name in found:
                raise PluginError(f"two {self.kind} plugins are named {plugin.name!r}: "
                                  f"{origin[plugin.name]} and {entry.value}; uninstall one")
            found[plugin.name] = plugin
            origin[plugin.name] = entry.value
        missing = [name for name in self._builtins if name not in found]
        if missing:
            raise PluginError(
                f"built-in {self.kind} plugin(s) {', '.join(missing)} not registered in "
                f"{self.group}: cassetted's entry points come from its installed metadata, so "
                "install the package (pip install -e .; scripts/run and scripts/test do this)")
        return found
