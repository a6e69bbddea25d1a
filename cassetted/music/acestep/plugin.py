"""The ACE-Step engines' plugin descriptors (entry points `acestep` and `acestep_api`).

Importing this module imports only their settings models: torch and the HTTP client code
load when an engine is first created.
"""

from __future__ import annotations

from cassetted.music.acestep.settings import AceStepApiSettings, AceStepSettings
from cassetted.music.plugin import EngineCapabilities, EnginePlugin

_TASKS = frozenset({"text2music", "cover", "repaint"})

LOCAL = EnginePlugin(
    name="acestep",
    factory="cassetted.music.acestep.engine:create",
    capabilities=EngineCapabilities(tasks=_TASKS, takes_task=True, loras=True, vocals=True),
    settings_section="acestep",
    settings_model=AceStepSettings,
    description="ACE-Step 1.5 in this process, from a local checkpoint",
)

REMOTE = EnginePlugin(
    name="acestep_api",
    factory="cassetted.music.acestep.api:create",
    # LoRAs live on the server ([acestep_api] lora), so a request cannot name one.
    capabilities=EngineCapabilities(tasks=_TASKS, takes_task=True, writes_lyrics=True, vocals=True),
    settings_section="acestep_api",
    settings_model=AceStepApiSettings,
    description="a remote ACE-Step API server (a pool of URLs)",
)
