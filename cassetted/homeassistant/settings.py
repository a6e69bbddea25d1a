"""`[homeassistant]` and `[rooms.<id>.homeassistant]`: the models config.py mounts.

Kept free of other cassetted imports so `cassetted.config` can import it without a cycle.
The long-lived access token is not configuration: it is stored encrypted with
`cassetted keys set homeassistant` and read from the CredentialStore.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

CREDENTIAL_PROVIDER = "homeassistant"


class HomeAssistantSettings(BaseModel):
    """`[homeassistant]`: discovery on the broker, and where Home Assistant's REST API is."""

    model_config = ConfigDict(extra="forbid")

    discovery: bool = Field(True, description="Publish MQTT discovery configs for HA entities.")
    url: str | None = Field(
        None, pattern=r"^https?://[^\s/?#]+(:\d+)?/?$",
        description="Base URL of Home Assistant, e.g. http://homeassistant.local:8123 "
                    "(needed by rooms with output = \"homeassistant\").")
    verify_tls: bool = True
    timeout_s: float = Field(10.0, gt=0, le=120)
    websocket: bool = Field(
        True, description="Follow media_player state over HA's websocket API (pushed).")
    poll_interval_s: float = Field(
        5.0, ge=1, le=300,
        description="How often a homeassistant zone reads its media_player's state when the "
                    "websocket is off or unavailable (HA's REST API has no events).")

    @field_validator("url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value


class HomeAssistantZoneSettings(BaseModel):
    """`[rooms.<id>.homeassistant]`: the media_player entity that plays this room."""

    model_config = ConfigDict(extra="forbid")

    entity_id: str = Field(pattern=r"^media_player\.[a-z0-9_]+$",
                           description="e.g. media_player.kitchen_speaker")
