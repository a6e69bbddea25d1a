"""Configuration: a TOML file overlaid by CASSETTED_* environment variables.

Precedence, highest first: environment (`CASSETTED_MQTT__PORT=1884`), the TOML file
(`--config`, `$CASSETTED_CONFIG`, `/etc/cassetted/cassetted.toml`, `./config/cassetted.toml`),
then the defaults below. Unknown keys and invalid values are errors reported all at once in
one line naming each key — never a silent fallback.
"""

from __future__ import annotations

import difflib
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from cassetted.cluster.settings import ClusterSettings
from cassetted.contract.schemas import ROLES, ROOM_ID_PATTERN, USER_ID_PATTERN, Genre, Mood, Role
from cassetted.homeassistant.settings import HomeAssistantSettings, HomeAssistantZoneSettings
from cassetted.household.settings import (
    ANONYMOUS_USER,
    ChildSafeSettings,
    HouseholdSettings,
    KaraokeSettings,
    PartySettings,
    SleepSettings,
    UserSettings,
)
from cassetted.library.media import MediaSettings
from cassetted.lyrics.settings import LyricsSettings
from cassetted.music.acestep.settings import AceStepApiSettings, AceStepSettings
from cassetted.playback.plugin import output_names
from cassetted.playback.settings import MpdEndpoint, SnapcastPlaybackSettings
from cassetted.plugins import PluginError

SYSTEM_CONFIG = Path("/etc/cassetted/cassetted.toml")
LOCAL_CONFIG = Path("config/cassetted.toml")


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line naming the key(s)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = Field(None, description="Default: cassetted-<hostname>-<base_topic>")
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = Field(30, ge=5, le=3600)
    base_topic: str = Field("cassetted", pattern=r"^[^#+\s]+$")
    discovery_prefix: str = Field("homeassistant", pattern=r"^[^#+\s]+$")
    tls: bool = False
    ca_certs: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    tls_insecure: bool = False
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    @field_validator("base_topic", "discovery_prefix")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.strip("/")


class StorageSettings(_Section):
    database_url: SecretStr | None = Field(
        None, description="postgresql://user:pass@host:5432/db; empty = SQLite in state_dir")
    library_dir: Path | None = Field(None, description="Empty = <state_dir>/library")


class GenerationSettings(_Section):
    max_concurrent: int = Field(1, ge=1, le=16)
    engine: str = Field("builtin", description="builtin | acestep | acestep_api")
    format: Literal["flac", "ogg", "mp3", "wav"] = "flac"
    sample_rate: int = Field(44100, ge=8000, le=96000)
    default_duration_s: float = Field(120, ge=10, le=600)
    default_genre: Genre | None = Field(None, description="Empty = chosen from the prompt or at random")
    default_mood: Mood | None = None
    language: str = Field("en", pattern=r"^[a-z]{2}$")
    max_pending: int = Field(1000, ge=1, description="Requests beyond this are refused (queue_full)")
    retries: int = Field(5, ge=0, le=20, description="Retries of a song failed for the system's "
                         "fault (disk, database, a killed worker); then it fails until resent")
    retry_min_s: float = Field(2.0, gt=0, le=600, description="Wait before the first retry; "
                               "doubled for each next one, at most 60 s")
    worker_idle_s: float = Field(300, ge=0, le=86400, description="A render process idle this "
                                 "long is retired (its memory, and an ACE-Step model's VRAM, "
                                 "given back) and started again for the next song; 0 = kept")
    stall_s: float = Field(900, ge=5, le=86400, description="A render that reports no progress "
                           "for this long is stuck (a hung engine or driver): its process is "
                           "killed and the song retried (interrupted)")


# The MPD endpoint is defined once, by the zones that use it; this name stays for callers.
MpdSettings = MpdEndpoint


class RoomSettings(_Section):
    name: str
    aliases: list[str] = Field(default_factory=list)
    output: str = Field("none", description="A registered zone (mpd, snapcast, local, "
                                            "homeassistant, or a plugin's) or none")
    child_safe: bool = False
    default_genre: Genre | None = None
    default_mood: Mood | None = None
    mpd: MpdSettings | None = None
    snapcast_group: str | None = Field(
        None, description="The room's snapserver group: its id or name, or the id, name or host "
                          "of a client in it (a client is the robust choice)")
    snapcast_stream: str | None = Field(
        None, description="Snapcast rooms with their own [rooms.x.mpd]: the stream it feeds")
    device: str | None = Field(None, description="Sound device of a `local` room (sounddevice)")
    homeassistant: HomeAssistantZoneSettings | None = Field(
        None, description='output = "homeassistant": the media_player entity that plays the room')
    roles: list[Role] = Field(default_factory=lambda: list(ROLES),
                              description="Who may use the room ([household] enabled)")

    def plugin_settings(self, model: type[M]) -> M | None:
        """The room's table of a zone plugin's `room_model` (`[rooms.<id>.<room_key>]`), or
        None when the room has none. Typed access for plugins that are not fields here."""
        return _field_of(self, model)

    @field_validator("output")
    @classmethod
    def _known_output(cls, value: str) -> str:
        outputs = output_names()
        if value not in outputs:
            raise ValueError(f"unknown output {value!r} (outputs: {', '.join(outputs)})")
        return value


class VoiceSettings(_Section):
    """`[voice]`: how spoken requests (`<base>/voice`, Hermes) become SongRequests."""

    site_rooms: dict[str, str] = Field(
        default_factory=dict,
        description="Satellite/site id -> room id, for requests that name no room.")
    default_room: str | None = Field(
        None, pattern=ROOM_ID_PATTERN, description="Room for requests with no room and no site.")
    llm_fallback: bool = Field(
        False, description="Ask the lyrics LLM when the rules find neither genre nor mood.")
    any_utterance: bool = Field(
        False, description="Make a song of any sentence (a satellite that only takes song "
                           "requests); off: a sentence with no sign of one ('what is the "
                           "weather like') is answered not_understood")

    @field_validator("site_rooms")
    @classmethod
    def _site_room_ids(cls, value: dict[str, str]) -> dict[str, str]:
        for site, room in value.items():
            if not re.fullmatch(ROOM_ID_PATTERN, room):
                raise ValueError(f"site {site!r}: room id {room!r} must be lowercase letters, digits, _")
        return value


DEFAULT_HERMES_INTENTS: tuple[str, ...] = ("cassetted:CreateSong", "CreateSong")
_TOPIC_SAFE = re.compile(r"^[^#+/\x00]{1,128}$")


class HermesSettings(_Section):
    """`[hermes]`: the Rhasspy/Hermes bridge (rooms of satellites come from [voice].site_rooms)."""

    enabled: bool = False
    topic_prefix: str = Field("hermes", pattern=r"^[^#+\s]+$")
    intents: list[str] = Field(default_factory=lambda: list(DEFAULT_HERMES_INTENTS), min_length=1)
    announce_ready: bool = Field(True, description="Say 'Your song ... is ready' on the satellite")
    tts_lang: str | None = Field(None, max_length=16, description="'lang' of hermes/tts/say")

    @field_validator("intents")
    @classmethod
    def _topic_safe(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _TOPIC_SAFE.match(name):
                raise ValueError(f"intent name {name!r} cannot be part of an MQTT topic")
        return names


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def _default_state_dir() -> Path:
    # systemd's StateDirectory= sets $STATE_DIRECTORY (colon-separated when several).
    systemd = os.environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    return Path.home() / ".local" / "share" / "cassetted"


class Settings(BaseSettings):
    """The whole configuration. Rooms are tables keyed by their id (public contract)."""

    model_config = SettingsConfigDict(
        env_prefix="CASSETTED_", env_nested_delimiter="__", extra="forbid",
    )

    state_dir: Path = Field(default_factory=_default_state_dir)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    lyrics: LyricsSettings = Field(default_factory=LyricsSettings)
    acestep: AceStepSettings = Field(default_factory=AceStepSettings)
    acestep_api: AceStepApiSettings = Field(default_factory=AceStepApiSettings)
    rooms: dict[str, RoomSettings] = Field(default_factory=dict)
    snapcast: SnapcastPlaybackSettings = Field(default_factory=SnapcastPlaybackSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    homeassistant: HomeAssistantSettings = Field(default_factory=HomeAssistantSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    hermes: HermesSettings = Field(default_factory=HermesSettings)
    household: HouseholdSettings = Field(default_factory=HouseholdSettings)
    users: dict[str, UserSettings] = Field(default_factory=dict)
    party: PartySettings = Field(default_factory=PartySettings)
    sleep: SleepSettings = Field(default_factory=SleepSettings)
    child_safe: ChildSafeSettings = Field(default_factory=ChildSafeSettings)
    karaoke: KaraokeSettings = Field(default_factory=KaraokeSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @field_validator("rooms")
    @classmethod
    def _room_ids(cls, rooms: dict[str, RoomSettings]) -> dict[str, RoomSettings]:
        for room_id in rooms:
            if not re.fullmatch(ROOM_ID_PATTERN, room_id):
                raise ValueError(f"room id {room_id!r} must be lowercase letters, digits, _")
        return rooms

    @field_validator("users")
    @classmethod
    def _user_ids(cls, users: dict[str, UserSettings]) -> dict[str, UserSettings]:
        for user_id in users:
            if not re.fullmatch(USER_ID_PATTERN, user_id):
                raise ValueError(f"user id {user_id!r} must be lowercase letters, digits, _ . -")
            if user_id == ANONYMOUS_USER:
                raise ValueError(f"user id {user_id!r} is reserved for anonymous requests")
        return users

    def room(self, room_id: str) -> RoomSettings:
        """A configured room, or the UnknownRoom error every command answers with."""
        room = self.rooms.get(room_id)
        if room is None:
            from cassetted.contract.errors import UnknownRoom

            known = ", ".join(sorted(self.rooms)) or "none configured"
            raise UnknownRoom(f"unknown room {room_id!r} (rooms: {known})", "room")
        return room

    def plugin_settings(self, model: type[M]) -> M:
        """A plugin's own section by its settings model (`settings.plugin_settings(
        AceStepSettings)` is `settings.acestep`): typed access for third-party plugins,
        whose sections load() adds to the model (see assembled())."""
        found = _field_of(self, model) or _field_of(self.lyrics, model)
        if found is None:
            raise KeyError(f"no configuration section has the model {model.__name__} "
                           "(is its plugin installed? settings come from config.load())")
        return found

    @property
    def library_dir(self) -> Path:
        return self.storage.library_dir or self.state_dir / "library"

    # Set by load(): the file the settings came from, for `doctor` and logs.
    _source_file: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _TOML_FILE.get()
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


# The file load() is reading: pydantic-settings asks for its sources on a classmethod, so the
# path reaches it through a context variable (safe should two threads load at once).
_TOML_FILE: ContextVar[Path | None] = ContextVar("cassetted_toml_file", default=None)
M = TypeVar("M", bound=BaseModel)


def _field_of(model: BaseModel, wanted: type[M]) -> M | None:
    """The value of `model`'s field whose value is exactly a `wanted` (None if none)."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if type(value) is wanted:
            return value
    return None


def _plugin_sections() -> tuple[dict[str, type[BaseModel]], dict[str, type[BaseModel]],
                                dict[str, type[BaseModel]]]:
    """The tables registered plugins bring that the built-in models lack: top-level
    sections (engines, zones), `[lyrics.<x>]` tables and `[rooms.<id>.<x>]` tables."""
    from cassetted.lyrics.plugin import LYRICS_PLUGINS
    from cassetted.music.registry import ENGINE_PLUGINS
    from cassetted.playback.plugin import ZONE_PLUGINS

    top: dict[str, type[BaseModel]] = {}
    lyrics: dict[str, type[BaseModel]] = {}
    room: dict[str, type[BaseModel]] = {}
    sections = [(p.settings_section, p.settings_model) for p in ENGINE_PLUGINS.all().values()]
    sections += [(p.settings_section, p.settings_model) for p in ZONE_PLUGINS.all().values()]
    for section, model in sections:
        if section and model is not None:
            top.setdefault(section, model)
    for lyric in LYRICS_PLUGINS.all().values():
        if lyric.settings_section and lyric.settings_model is not None:
            lyrics.setdefault(lyric.settings_section, lyric.settings_model)
    for zone in ZONE_PLUGINS.all().values():
        if zone.room_key and zone.room_model is not None:
            room.setdefault(zone.room_key, zone.room_model)
    return ({k: v for k, v in top.items() if k not in Settings.model_fields},
            {k: v for k, v in lyrics.items() if k not in LyricsSettings.model_fields},
            {k: v for k, v in room.items() if k not in RoomSettings.model_fields})


_ASSEMBLED: dict[tuple[Any, ...], type[Settings]] = {}


def assembled() -> type[Settings]:
    """Settings with the sections of every registered plugin (the built-ins' are typed
    fields above; a third-party plugin's table is added here), so the file's shape is the
    plugins' own and an unknown key in any of them is still an error."""
    top, lyrics, room = _plugin_sections()
    key = tuple((k, v) for part in (top, lyrics, room) for k, v in sorted(part.items(), key=str))
    cls = _ASSEMBLED.get(key)
    if cls is None:
        fields: dict[str, Any] = {name: (model, Field(default_factory=model))
                                  for name, model in top.items()}
        if lyrics:
            tables: dict[str, Any] = {name: (model, Field(default_factory=model))
                                      for name, model in lyrics.items()}
            lyrics_cls = create_model("LyricsSettings", __base__=LyricsSettings, **tables)
            fields["lyrics"] = (lyrics_cls, Field(default_factory=lyrics_cls))
        if room:
            room_tables: dict[str, Any] = {name: (model | None, None) for name, model in room.items()}
            room_cls = create_model("RoomSettings", __base__=RoomSettings, **room_tables)
            fields["rooms"] = (dict[str, room_cls], Field(default_factory=dict))
        cls = _ASSEMBLED[key] = create_model("Settings", __base__=Settings, **fields) if fields else Settings
    return cls


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The file to read: --config, $CASSETTED_CONFIG, the system file, the local file."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    env = os.environ.get("CASSETTED_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"CASSETTED_CONFIG={path} does not exist")
        return path
    for candidate in (SYSTEM_CONFIG, LOCAL_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def _key_of(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


def _hint(loc: tuple[Any, ...], root: type[BaseModel]) -> str:
    """'did you mean' for an unknown key, found among the fields of its section (through
    tables keyed by id, such as [rooms.<id>])."""
    model: Any = root
    keyed = False  # the previous part was a dict of sections: this part is its key
    for part in loc[:-1]:
        if keyed:
            keyed = False
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        annotation = field.annotation
        keyed = get_origin(annotation) is dict
        model = next((a for a in get_args(annotation) if hasattr(a, "model_fields")), annotation)
    names = list(getattr(model, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def format_validation_error(error: ValidationError, root: type[BaseModel] = Settings) -> str:
    """All problems in one line: `mqtt.port: Input should be ...; foo: unknown key`."""
    parts = []
    for item in error.errors():
        loc = tuple(item["loc"])
        if item["type"] == "extra_forbidden":
            parts.append(f"{_key_of(loc)}: unknown key{_hint(loc, root)}")
        else:
            parts.append(f"{_key_of(loc)}: {item['msg']}")
    return "; ".join(parts)


def load(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build the settings or raise ConfigError with a one-line message."""
    path = find_config_file(config_file)
    reading = _TOML_FILE.set(path)
    cls: type[Settings] = Settings
    try:
        cls = assembled()
        settings = cls(**overrides)
    except ValidationError as error:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid configuration{where}: {format_validation_error(error, cls)}") from None
    except PluginError as error:  # a broken or duplicate plugin: one line, not a traceback
        raise ConfigError(f"cannot load the plugins: {error}") from None
    except (OSError, ValueError) as error:  # unreadable or malformed TOML
        raise ConfigError(f"cannot read {path}: {error}") from None
    finally:
        _TOML_FILE.reset(reading)
    settings._source_file = path
    return settings
