"""Configuration of the household: members, guests, quotas, learning and the modes.

Mounted in `config.py` as `[household]`, `[users.<id>]`, `[party]`, `[sleep]`,
`[child_safe]` and `[karaoke]`. With `[household] enabled = false` (the default) every
request is the owner's and nothing is refused for who asked; votes, sharing, statistics,
room learning and the modes work either way.

```toml
[household]
enabled = true
identify_by = ["token", "mqtt_username", "user_field"]
anonymous_role = "guest"       # a request that names nobody; "none" refuses it
unknown_user_role = "guest"    # a proven login (or trusted name) that is no member
trusted_user_field = false     # true only where the broker ACL pins who may publish

[household.quotas.guest]
songs = 10
per_hours = 24

[users.dad]
role = "owner"
mqtt_usernames = ["dad-phone"]

[rooms.master_bedroom]
name = "Master Bedroom"
roles = ["owner"]              # no family, no guests
```
This module imports nothing from `cassetted.config`, so config.py can import it freely.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from cassetted.contract.schemas import MAX_BPM, MIN_BPM, Genre, Mood, Role

IdentifyBy = Literal["token", "mqtt_username", "user_field"]
_IDENTIFY_BY_DEFAULT: tuple[IdentifyBy, ...] = ("token", "mqtt_username", "user_field")
# Child-safe mode's defaults: the genres and moods that suit a children's room.
_CHILD_SAFE_GENRES: tuple[Genre, ...] = ("pop", "jazz", "classical", "country", "ambient", "electronic")
_CHILD_SAFE_MOODS: tuple[Mood, ...] = ("uplifting", "relaxing", "energetic")

# The user id anonymous requests' jobs and songs are recorded under: they share one quota,
# and no caller can be it (no member, guest or login may take the name).
ANONYMOUS_USER = "anonymous"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuotaSettings(_Section):
    """Songs a member of a role may request per window; `songs` unset = unlimited."""

    songs: int | None = Field(None, ge=0)
    per_hours: float = Field(24.0, gt=0, le=24 * 365)


def _default_quotas() -> dict[Role, QuotaSettings]:
    return {"guest": QuotaSettings(songs=10, per_hours=24.0)}


class LearningSettings(_Section):
    """How rooms learn: every observation multiplies the old evidence by `decay` first, so
    recent wishes count more; a preference needs `min_evidence` to be used."""

    enabled: bool = True
    decay: float = Field(0.85, gt=0, le=1)
    min_evidence: float = Field(1.5, ge=0)
    vote_weight: float = Field(1.0, ge=0)


class HouseholdSettings(_Section):
    enabled: bool = False
    identify_by: list[IdentifyBy] = Field(
        default_factory=lambda: list(_IDENTIFY_BY_DEFAULT), min_length=1)
    anonymous_role: Role | Literal["none"] = "guest"
    unknown_user_role: Role | Literal["none"] = "guest"
    trusted_user_field: bool = Field(
        False, description="Take the payload's `user` (and \"My name is ...\") as proof of who "
                           "asks. Off: a name grants nothing beyond anonymous_role; turn it on "
                           "only where the broker ACL pins who may publish")
    bridge_role: Role = Field("family", description="Requests from the Home Assistant panel "
                                                    "and Hermes satellites")
    rate_per_s: float | None = Field(
        20.0, gt=0, description="Commands a second one sender may send (anonymous senders "
                                "share one allowance); unset = no limit")
    rate_burst: int = Field(200, ge=1, description="Commands one sender may send at once")
    guest_ttl_h: float = Field(24.0, gt=0, le=24 * 30)
    quotas: dict[Role, QuotaSettings] = Field(default_factory=_default_quotas)
    share_by_default: bool = True
    learning: LearningSettings = Field(default_factory=LearningSettings)


class UserSettings(_Section):
    """`[users.<id>]`: a member of the household."""

    name: str | None = None
    role: Role = "family"
    mqtt_usernames: list[str] = Field(default_factory=list,
                                      description="MQTT logins that act as this user")


class PartyTheme(_Section):
    genre: Genre
    mood: Mood
    bpm_min: int = Field(ge=MIN_BPM, le=MAX_BPM)
    bpm_max: int = Field(ge=MIN_BPM, le=MAX_BPM)
    prompt: str = ""
    starters: int = Field(8, ge=0, le=20)


def _default_themes() -> dict[str, PartyTheme]:
    return {
        "edm": PartyTheme(genre="electronic", mood="energetic", bpm_min=128, bpm_max=140,
                          prompt="electronic dance party anthem"),
        "rock": PartyTheme(genre="rock", mood="energetic", bpm_min=120, bpm_max=150,
                           prompt="rock party, loud guitars"),
        "lounge": PartyTheme(genre="jazz", mood="relaxing", bpm_min=80, bpm_max=100,
                             prompt="chill lounge for a cocktail evening"),
        "pop": PartyTheme(genre="pop", mood="uplifting", bpm_min=110, bpm_max=128,
                          prompt="feel-good pop party"),
    }


class PartySettings(_Section):
    themes: dict[str, PartyTheme] = Field(default_factory=_default_themes)
    default_theme: str = "pop"
    song_duration_s: float = Field(150, ge=10, le=600)
    guest_song_limit: int = Field(15, ge=0, description="Songs a party guest may add per party")
    low_water: int = Field(2, ge=0, description="Generate fillers when fewer songs are queued")
    fillers: int = Field(2, ge=1, le=10, description="Fillers generated at a time")


class SleepSettings(_Section):
    fade_min: float = Field(15, gt=0, le=240)
    song_duration_s: float = Field(600, ge=60, le=600)
    genre: Genre = "ambient"
    mood: Mood = "relaxing"


class ChildSafeSettings(_Section):
    pin: SecretStr | None = Field(None, description="Needed to turn child-safe mode off")
    genres: list[Genre] = Field(
        default_factory=lambda: list(_CHILD_SAFE_GENRES))
    moods: list[Mood] = Field(default_factory=lambda: list(_CHILD_SAFE_MOODS))
    volume_cap: int = Field(70, ge=0, le=100)
    max_pin_attempts: int = Field(5, ge=1, description="Wrong PINs before a 15-minute lock-out")

    @field_validator("pin")
    @classmethod
    def _digits(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not 4 <= len(value.get_secret_value()) <= 32:
            raise ValueError("the PIN must have 4 to 32 characters")
        return value


class KaraokeSettings(_Section):
    bpm_min: int = Field(140, ge=MIN_BPM, le=MAX_BPM)
    bpm_max: int = Field(160, ge=MIN_BPM, le=MAX_BPM)
