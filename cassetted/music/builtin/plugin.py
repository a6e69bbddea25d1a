"""The built-in engine's plugin descriptor (entry point `cassetted.engines: builtin`)."""

from __future__ import annotations

from cassetted.music.plugin import EngineCapabilities, EnginePlugin

PLUGIN = EnginePlugin(
    name="builtin",
    factory="cassetted.music.builtin.engine:create",
    # Its arrangement is deterministic for a spec, so it knows where each line is sung.
    capabilities=EngineCapabilities(tasks=frozenset({"text2music", "cover"}), timed_lyrics=True,
                                    vocals=True),
    timing="cassetted.music.builtin.timing:timed_lines",
    description="CPU-only, offline, deterministic for a seed",
)
