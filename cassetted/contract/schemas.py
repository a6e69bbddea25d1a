"""Pydantic models of every MQTT payload: the single source of truth of the contract.

Inbound commands are validated here (and nowhere else); outbound state and events are
built from these models so that `cassetted schemas` and the checked-in `mqtt_schemas/`
describe exactly what goes over the wire.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

Genre = Literal["rock", "pop", "jazz", "electronic", "classical", "hip-hop", "country", "ambient"]
Mood = Literal["uplifting", "relaxing", "energetic", "melancholic"]
TimeSignature = Literal["2/4", "3/4", "4/4", "6/8"]

GENRES: tuple[Genre, ...] = (
    "rock", "pop", "jazz", "electronic", "classical", "hip-hop", "country", "ambient",
)
MOODS: tuple[Mood, ...] = ("uplifting", "relaxing", "energetic", "melancholic")
TIME_SIGNATURES: tuple[TimeSignature, ...] = ("2/4", "3/4", "4/4", "6/8")

MIN_DURATION_S = 10
MAX_DURATION_S = 600
MIN_BPM = 30
MAX_BPM = 300
MAX_LYRICS_CHARS = 4096  # ACE-Step's limit; the built-in engine keeps the same bound
MAX_PAYLOAD_BYTES = 64 * 1024

KEY_PATTERN = r"^[A-G](#|b)? (major|minor)$"
ROOM_ID_PATTERN = r"^[a-z0-9_]{1,64}$"
USER_ID_PATTERN = r"^[a-z0-9_.-]{1,64}$"

Role = Literal["owner", "family", "guest"]
ROLES: tuple[Role, ...] = ("owner", "family", "guest")
RoomMode = Literal["normal", "sleep", "karaoke"]

MAX_PAGE = 1_000_000  # library pages; beyond, OFFSET would overflow SQL's 64-bit integers
MAX_POSITION_S = 24 * 3600  # a seek target: no playlist entry is longer than a day


def topic_problem(topic: str) -> str | None:
    """Why the broker would refuse a PUBLISH to `topic`, or None if it is a valid name.

    Mosquitto validates topic names as MQTT 5 section 1.5.4 allows: besides wildcards and
    NUL it refuses control characters (U+0001-U+001F, U+007F-U+009F), Unicode
    noncharacters and lone surrogates, and it answers by dropping the connection
    ("malformed packet"). A reply address with such a character would take the daemon
    off the broker, and the QoS 1 retry would do it again after every reconnect.
    """
    if not topic:
        return "is empty"
    if "+" in topic or "#" in topic:
        return "contains an MQTT wildcard (+ or #)"
    for char in topic:
        code = ord(char)
        if code <= 0x1F or 0x7F <= code <= 0x9F:
            return f"contains the control character U+{code:04X}"
        if 0xD800 <= code <= 0xDFFF:
            return "contains a lone surrogate"
        if 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
            return f"contains the Unicode noncharacter U+{code:04X}"
    if len(topic.encode("utf-8")) > 65535:
        return "is longer than an MQTT topic can be"
    return None


def _publishable(topic: str) -> str:
    problem = topic_problem(topic)
    if problem is not None:
        raise ValueError(f"not a topic the broker accepts: it {problem}")
    return topic


RequestId = Annotated[str, Field(min_length=1, max_length=128)]
ReplyTopic = Annotated[
    str,
    # The pattern documents the rule in the JSON Schema; `_publishable` enforces all of it
    # (noncharacters too) with a message that says which character is wrong.
    Field(min_length=1, max_length=256,
          json_schema_extra={"pattern": r"^[^#+\x00-\x1f\x7f-\x9f]+$"},
          description="v3.1.1 clients: topic the reply is published on (no wildcards, no "
                      "control characters)."),
    AfterValidator(_publishable),
]


# Fields that say where to answer and who asks, not what was asked: a command is stored,
# logged or echoed without them (a token must never leave the request that carried it).
ENVELOPE_FIELDS: frozenset[str] = frozenset({"reply_to", "token"})


class _Command(BaseModel):
    """Every inbound command: unknown fields are refused so typos get a clear error."""

    # NaN and Infinity (JSON's non-standard tokens, or 1e999) are refused in every number.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    request_id: RequestId | None = Field(
        None, description="Echoed in the reply; for song/create also the idempotency key.")
    reply_to: ReplyTopic | None = None
    token: str | None = Field(
        None, min_length=8, max_length=128, repr=False,
        description="A household member's or guest's token ([household] identify_by token); "
                    "never stored, echoed or logged.")


class SongRequest(_Command):
    """`<base>/song/create`: what a person asked for. Empty fields are chosen by the daemon."""

    prompt: str = Field("", max_length=2000, description="Free text: theme, style, wishes.")
    genre: Genre | None = None
    mood: Mood | None = None
    bpm: int | None = Field(None, ge=MIN_BPM, le=MAX_BPM)
    key: str | None = Field(None, pattern=KEY_PATTERN, description='e.g. "A minor", "F# major"')
    time_signature: TimeSignature | None = None
    duration_s: float | None = Field(None, ge=MIN_DURATION_S, le=MAX_DURATION_S)
    language: str | None = Field(None, pattern=r"^[a-z]{2}$", description="ISO 639-1 vocal language")
    lyrics: str | None = Field(None, max_length=MAX_LYRICS_CHARS,
                               description="Ready-made lyrics; skips the lyrics provider.")
    instrumental: bool = False
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    room: str | None = Field(None, pattern=ROOM_ID_PATTERN)
    party: bool = False
    child_safe: bool = False
    user: str | None = Field(None, max_length=64)
    engine: str | None = Field(None, max_length=32)
    lyrics_provider: str | None = Field(None, max_length=32)
    private: bool = Field(False, description="Keep the song out of the household's shared library")
    # Beyond text2music (ACE-Step engines; the built-in engine covers by re-rendering).
    task: Literal["text2music", "cover", "repaint"] = Field(
        "text2music", description="cover: re-perform a library song (e.g. a karaoke remix at a "
                                  "new bpm); repaint: redo a section of it")
    source_song_id: str | None = Field(None, max_length=64, validate_default=True,
                                       description="The library song a cover or repaint starts from")
    cover_strength: float | None = Field(None, ge=0.0, le=1.0,
                                         description="1 keeps the source's structure")
    repaint_start_s: float | None = Field(None, ge=0.0, le=MAX_DURATION_S)
    repaint_end_s: float | None = Field(None, gt=0.0, le=MAX_DURATION_S)
    variants: int = Field(1, ge=1, le=4, description="Takes made at once (seeds seed..seed+n-1); "
                                                    "keep one with song/<id>/keep")
    steps: int | None = Field(None, ge=1, le=200, description="Diffusion steps (ACE-Step)")
    shift: float | None = Field(None, ge=0.1, le=10.0, description="Timestep shift (ACE-Step)")
    lora: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
                             description="A LoRA style by its name in [acestep] loras (ACE-Step)")

    @field_validator("source_song_id")
    @classmethod
    def _task_has_a_source(cls, value: str | None, info: ValidationInfo) -> str | None:
        task = info.data.get("task", "text2music")
        if task != "text2music" and not value:
            raise ValueError(f"a {task} needs source_song_id")
        if task == "text2music" and value:
            raise ValueError("source_song_id needs task cover or repaint")
        return value

    @field_validator("repaint_end_s")
    @classmethod
    def _repaint_window(cls, value: float | None, info: ValidationInfo) -> float | None:
        start = info.data.get("repaint_start_s")
        if value is not None and start is not None and value <= start:
            raise ValueError("repaint_end_s must be after repaint_start_s")
        return value


class VoiceCommand(_Command):
    """`<base>/voice`: free speech, parsed into a SongRequest by the intent parser."""

    text: str = Field(min_length=1, max_length=1000)
    room: str | None = Field(None, pattern=ROOM_ID_PATTERN)
    site_id: str | None = Field(None, max_length=64)
    user: str | None = Field(None, max_length=64)


class JobCancel(_Command):
    """`<base>/job/<id>/cancel`: the payload may be empty (`{}`); who asked or an owner."""

    user: str | None = Field(None, max_length=64, description="Who asks (identify_by user_field)")


class RoomCommand(_Command):
    """`<base>/room/<room>/set`."""

    action: Literal[
        "play", "pause", "stop", "next", "previous", "volume", "seek",
        "play_song", "play_playlist", "add", "remove", "clear", "shuffle",
    ]
    song_id: str | None = Field(None, max_length=64)
    volume: int | None = Field(None, ge=0, le=100)
    position_s: float | None = Field(None, ge=0, le=MAX_POSITION_S)


class PartyCommand(_Command):
    """`<base>/party/set`."""

    action: Literal["start", "stop"]
    rooms: list[Annotated[str, Field(pattern=ROOM_ID_PATTERN)]] | Literal["all"] = "all"
    song_id: str | None = Field(None, max_length=64)
    playlist: str | None = Field(None, max_length=128)
    theme: str | None = Field(None, pattern=r"^[a-z0-9_]{1,64}$",
                              description="A [party.themes] preset, e.g. edm, rock, lounge")
    starters: int | None = Field(None, ge=0, le=20,
                                 description="Songs generated at start (default: the theme's)")
    guest_access: bool = Field(True, description="Guests may add songs to the party queue")
    user: str | None = Field(None, max_length=64, description="Who asks (identify_by user_field)")


class PartyPlaylistsQuery(_Command):
    """`<base>/party/playlists`: the playlists saved when parties ended, newest first."""


class KeepCommand(_Command):
    """`<base>/song/<id>/keep`: of a request's variants keep this one, delete the others
    (the song's maker or an owner)."""

    user: str | None = Field(None, max_length=64, description="Who asks (identify_by user_field)")


class VoteCommand(_Command):
    """`<base>/song/<id>/vote`: +1, -1, or 0 to take a vote back."""

    vote: Literal[-1, 0, 1]
    user: str | None = Field(None, max_length=64)


class LibraryQuery(_Command):
    """`<base>/library/query`: filters, sorting and paging; answered on the reply topic.

    A member sees the shared library and their own private songs; an owner sees everything.
    """

    genre: Genre | None = None
    mood: Mood | None = None
    room: str | None = Field(None, pattern=ROOM_ID_PATTERN)
    user: str | None = Field(None, max_length=64, description="Songs made by this user")
    text: str | None = Field(None, max_length=200)
    shared: bool | None = Field(None, description="Only shared (true) or only private (false)")
    sort: Literal["newest", "oldest", "title", "duration", "top_voted"] = "newest"
    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(20, ge=1, le=100)
    as_user: str | None = Field(None, max_length=64,
                                description="Who asks (identify_by user_field); sees their private songs")


class ShareCommand(_Command):
    """`<base>/song/<id>/share`: share a song with the household, or make it private again."""

    shared: bool
    user: str | None = Field(None, max_length=64)


class GuestCreate(_Command):
    """`<base>/guest/create` (owner or family): a temporary guest; the reply carries its token."""

    name: str = Field(min_length=1, max_length=64)
    rooms: list[Annotated[str, Field(pattern=ROOM_ID_PATTERN)]] | None = Field(
        None, description="Rooms the guest may use (default: every room open to guests)")
    quota: int | None = Field(None, ge=0, le=1000, description="Songs per quota window")
    ttl_h: float | None = Field(None, gt=0, le=24 * 30, description="Default [household] guest_ttl_h")
    party: bool = Field(False, description="A guest of the running party: counted against "
                                           "[party] guest_song_limit, expires when it ends")
    user: str | None = Field(None, max_length=64, description="Who creates it (identify_by user_field)")


class GuestRemove(_Command):
    """`<base>/guest/<id>/remove` (owner or family)."""

    user: str | None = Field(None, max_length=64)


class QuotaQuery(_Command):
    """`<base>/user/quota`: "how many songs can I create?"."""

    user: str | None = Field(None, max_length=64)


class RoomModeCommand(_Command):
    """`<base>/room/<room>/mode`: sleep, karaoke or normal; child_safe on, or off with the PIN."""

    mode: RoomMode | None = None
    child_safe: bool | None = None
    pin: str | None = Field(None, max_length=32, repr=False, description="Needed to turn child_safe off")
    fade_min: float | None = Field(None, gt=0, le=240, description="Sleep: minutes to fade to silence")
    user: str | None = Field(None, max_length=64)


class KaraokeCommand(_Command):
    """`<base>/karaoke/start`: remix a library song at a new tempo; lyrics go to the mirror."""

    song_id: str | None = Field(None, max_length=64)
    title: str | None = Field(None, max_length=200, description="A library song by (part of) its title")
    bpm: int = Field(ge=MIN_BPM, le=MAX_BPM)
    room: str | None = Field(None, pattern=ROOM_ID_PATTERN)
    user: str | None = Field(None, max_length=64)


class ChildSafeLogQuery(_Command):
    """`<base>/child_safe/log`: the requests made under child-safe mode, newest first."""

    room: str | None = Field(None, pattern=ROOM_ID_PATTERN)
    limit: int = Field(50, ge=1, le=500)
    user: str | None = Field(None, max_length=64)


# --------------------------------------------------------------------------- resolved spec


class SongSpec(BaseModel):
    """A request with every musical choice made: what engines and lyric writers receive."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = ""
    genre: Genre
    mood: Mood
    bpm: int = Field(ge=MIN_BPM, le=MAX_BPM)
    key: str = Field(pattern=KEY_PATTERN)
    time_signature: TimeSignature = "4/4"
    duration_s: float = Field(ge=MIN_DURATION_S, le=MAX_DURATION_S)
    language: str = "en"
    instrumental: bool = False
    seed: int = Field(ge=0, le=2**32 - 1)
    child_safe: bool = False
    title: str = ""
    lyrics: str = Field("", max_length=MAX_LYRICS_CHARS)
    style: str = Field("", description="Short caption for the music engine: instruments, feel.")

    @property
    def tonic(self) -> str:
        return self.key.split()[0]

    @property
    def is_minor(self) -> bool:
        return self.key.endswith("minor")


# --------------------------------------------------------------------------- outbound


class JobState(str, Enum):  # noqa: UP042 - StrEnum would change str() and format() of a state
    queued = "queued"
    writing_lyrics = "writing_lyrics"
    composing = "composing"
    encoding = "encoding"
    ready = "ready"
    playing = "playing"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.done, JobState.failed, JobState.cancelled)


class QuotaInfo(BaseModel):
    """Where a user stands with their quota; in every reply to a song request."""

    user: str | None = None
    role: Role
    limit: int | None = Field(None, description="Songs per window; absent (null) = unlimited")
    used: int = 0
    remaining: int | None = None
    window_h: float | None = None
    resets_at: float | None = Field(None, description="Unix time the oldest counted song leaves the window")


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_payload, unknown_room.")
    message: str
    field: str | None = None


class Reply(BaseModel):
    """The answer to every command, on the MQTT v5 response topic or the `reply_to` topic."""

    model_config = ConfigDict(extra="allow")

    ok: bool
    request_id: str | None = None
    error: ErrorInfo | None = None
    job_id: str | None = None
    state: JobState | None = None
    duplicate: bool | None = Field(None, description="True when request_id matched an existing job.")
    retry: bool | None = Field(None, description="True when a resent request_id starts a new "
                               "attempt of a job that failed for the system's fault")
    quota: QuotaInfo | None = Field(None, description="Song requests: the asker's quota after this one")
    party_position: int | None = Field(None, ge=1, description="A party song's place in the queue")


class JobEvent(BaseModel):
    """`<base>/job/<id>`: published at every state transition (and on progress)."""

    job_id: str
    request_id: str | None = None
    state: JobState
    progress: float = Field(ge=0.0, le=1.0)
    eta_s: float | None = Field(None, ge=0.0)
    song_id: str | None = None
    variants: list[str] | None = Field(None, description="Song ids of the other takes, if any")
    room: str | None = None
    file: str | None = None
    error: ErrorInfo | None = None
    warnings: list[str] | None = Field(
        None, description="What the song as made differs in from the request (on `ready`): "
                          "e.g. the server rendered it shorter than asked, or ignored its seeds.")
    attempt: int | None = Field(None, ge=0, description="The attempt that just failed")
    retry_in_s: float | None = Field(
        None, ge=0.0, description="Queued again after a failure that was the system's fault "
        "(disk, database, a killed worker): the next attempt starts in this many seconds")
    worker: str | None = Field(None, description="The worker that made the song (on `ready`, "
                               "`playing`, `done`): a local process or a `cassetted worker`")
    ts: float = Field(description="Unix time of the transition.")


class QueueState(BaseModel):
    """`<base>/queue` (retained)."""

    pending: int = Field(ge=0)
    running: list[str] = Field(default_factory=list, description="Ids of the jobs in progress.")
    max_concurrent: int = Field(ge=1)


class SongInfo(BaseModel):
    """`<base>/song/latest` (retained) and library query results."""

    id: str
    title: str
    prompt: str
    lyrics: str
    genre: Genre
    mood: Mood
    bpm: int
    key: str
    time_signature: str
    duration_s: float
    language: str
    instrumental: bool
    seed: int
    room: str | None = None
    user: str | None = None
    engine: str
    lyrics_provider: str
    file: str
    format: str
    url: str | None = None
    variant_of: str | None = Field(None, description="The first take, for the other takes")
    shared: bool = True
    score: int | None = Field(None, description="Sum of votes (library queries)")
    worker: str | None = Field(None, description="The worker that made it (none for songs made "
                               "before workers were recorded, or indexed from files)")
    created_at: float


class LearnedPreference(BaseModel):
    """What a room has learned from requests and votes in it."""

    genre: Genre | None = Field(None, description="Used when a request names no genre")
    mood: Mood | None = None
    genres: dict[str, float] = Field(default_factory=dict, description="Evidence per genre")
    moods: dict[str, float] = Field(default_factory=dict)


class RoomState(BaseModel):
    """`<base>/room/<room>/state` (retained)."""

    room: str
    name: str
    state: Literal["playing", "paused", "idle", "unavailable"]
    song: SongInfo | None = None
    volume: int | None = Field(None, ge=0, le=100)
    party: bool = False
    output: str
    playlist_length: int | None = Field(None, ge=0, description="Songs in the room's playlist")
    mode: RoomMode = "normal"
    child_safe: bool = False
    volume_cap: int | None = Field(None, ge=0, le=100)
    learned: LearnedPreference | None = None


class Event(BaseModel):
    """`<base>/event`: things that happened, for automations."""

    model_config = ConfigDict(extra="allow")

    type: Literal[
        "song_ready", "song_started", "song_finished", "party_started", "party_stopped", "error",
        "mode_changed", "guest_expired",
    ]
    ts: float
    job_id: str | None = None
    song_id: str | None = None
    room: str | None = None
    error: ErrorInfo | None = None


class LibraryPage(Reply):
    """The reply to a library query."""

    total: int = 0
    page: int = 1
    page_size: int = 20
    songs: list[SongInfo] = Field(default_factory=list)


class LibraryStats(BaseModel):
    """`<base>/library/stats` (retained): the household's library in numbers."""

    songs: int
    shared: int
    private: int
    votes: int
    by_user: dict[str, int] = Field(default_factory=dict)
    top_voted: list[dict[str, Any]] = Field(default_factory=list,
                                            description="Up to 5: id, title, score")
    ts: float


class PartyQueueItem(BaseModel):
    position: int = Field(ge=1)
    song_id: str | None = None
    job_id: str | None = None
    title: str | None = None
    user: str | None = None
    score: int = 0
    filler: bool = False
    state: Literal["generating", "queued"]


class PartyState(BaseModel):
    """`<base>/party/state` (retained): the party, its theme and its queue."""

    active: bool
    theme: str | None = None
    rooms: list[str] = Field(default_factory=list)
    started_at: float | None = None
    now_playing: str | None = None
    queue: list[PartyQueueItem] = Field(default_factory=list)
    guest_songs: int = 0
    fillers: int = 0


class LyricsDisplay(BaseModel):
    """`<base>/room/<room>/lyrics` (retained): timed lyrics for a mirror, as LRC and as lines."""

    room: str
    song_id: str | None = None
    title: str | None = None
    lrc: str = ""
    lines: list[dict[str, Any]] = Field(default_factory=list, description="{t: seconds, text}")
    started_at: float | None = Field(None, description="Unix time line 0 of the song began")


# Every payload by the name its JSON Schema file carries: drives `cassetted schemas`.
PAYLOADS: dict[str, type[BaseModel]] = {
    "song_create": SongRequest,
    "voice": VoiceCommand,
    "job_cancel": JobCancel,
    "room_set": RoomCommand,
    "party_set": PartyCommand,
    "party_playlists": PartyPlaylistsQuery,
    "song_vote": VoteCommand,
    "song_keep": KeepCommand,
    "library_query": LibraryQuery,
    "song_share": ShareCommand,
    "guest_create": GuestCreate,
    "guest_remove": GuestRemove,
    "user_quota": QuotaQuery,
    "room_mode": RoomModeCommand,
    "karaoke_start": KaraokeCommand,
    "child_safe_log": ChildSafeLogQuery,
    "library_stats": LibraryStats,
    "party_state": PartyState,
    "lyrics_display": LyricsDisplay,
    "reply": Reply,
    "library_page": LibraryPage,
    "job_event": JobEvent,
    "queue_state": QueueState,
    "song_info": SongInfo,
    "room_state": RoomState,
    "event": Event,
    "song_spec": SongSpec,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema per payload, keyed by file stem."""
    return {name: model.model_json_schema() for name, model in PAYLOADS.items()}
