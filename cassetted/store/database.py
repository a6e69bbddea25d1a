"""Persistence with peewee: SQLite (WAL) in the state directory, or PostgreSQL by URL.

Schema changes migrate forward with numbered steps (see MIGRATIONS): the database records
the last step applied in `schema_version`, and `open_database` applies the missing ones in
order inside a transaction. A step is a function of a peewee `SchemaMigrator`, so the same
step runs on SQLite and PostgreSQL. Never edit a released step; append a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import peewee as pw
from playhouse.migrate import SchemaMigrator

T = TypeVar("T")

log = logging.getLogger(__name__)

database = pw.DatabaseProxy()


def new_id() -> str:
    """Short, URL-safe, collision-free ids for jobs and songs."""
    return uuid.uuid4().hex[:16]


class BaseModel(pw.Model):  # type: ignore[misc]  # peewee ships no type information
    class Meta:
        database = database
        legacy_table_names = False


# The orders and filters of library pages (see library.access.query), each an index that
# ends in created_at: shared for what a member sees, genre and mood the common filters.
SONG_PAGE_INDEXES: tuple[tuple[str, ...], ...] = (
    ("shared", "created_at"), ("score", "created_at"), ("shared", "score", "created_at"),
    ("genre", "shared", "created_at"), ("mood", "shared", "created_at"))


# The queue (the oldest queued job) and a member's quota window (their recent jobs).
JOB_INDEXES: tuple[tuple[str, ...], ...] = (("state", "created_at"), ("user", "created_at"))


class Song(BaseModel):
    """One finished song: every parameter it was made with, its lyrics and its file."""

    id = pw.CharField(primary_key=True, max_length=32, default=new_id)
    title = pw.CharField(max_length=200)
    prompt = pw.TextField(default="")
    lyrics = pw.TextField(default="")
    style = pw.TextField(default="")
    genre = pw.CharField(max_length=32, index=True)
    mood = pw.CharField(max_length=32, index=True)
    bpm = pw.IntegerField()
    key = pw.CharField(max_length=16)
    time_signature = pw.CharField(max_length=8)
    duration_s = pw.DoubleField()
    language = pw.CharField(max_length=8)
    instrumental = pw.BooleanField(default=False)
    seed = pw.BigIntegerField()
    child_safe = pw.BooleanField(default=False)
    room = pw.CharField(max_length=64, null=True, index=True)
    user = pw.CharField(max_length=64, null=True, index=True)
    engine = pw.CharField(max_length=32)
    lyrics_provider = pw.CharField(max_length=32)
    file = pw.CharField(max_length=512, help_text="Path relative to the library directory")
    format = pw.CharField(max_length=8)
    # Unguessable token for media URLs: knowing a song id is not enough to fetch it.
    url_token = pw.CharField(max_length=64, unique=True, default=lambda: secrets.token_urlsafe(24))
    # The first take of a request made with variants > 1 (NULL for it and for plain songs).
    variant_of = pw.CharField(max_length=32, null=True, index=True)
    # Shared with the household (default) or private to its maker.
    shared = pw.BooleanField(default=True, index=True)
    # The worker that made it: a local process ("local-0") or a `cassetted worker`'s name.
    worker = pw.CharField(max_length=64, null=True)
    # The sum of its votes, kept by library.access.vote, so `top_voted` reads an index
    # instead of summing every song's votes.
    score = pw.IntegerField(default=0)
    created_at = pw.DoubleField(default=time.time, index=True)

    class Meta:
        # Every library page is "these songs, newest (or best) first, twenty of them": an
        # index ending in created_at answers it without reading the rest of the library.
        indexes = tuple((columns, False) for columns in SONG_PAGE_INDEXES)


class Job(BaseModel):
    """A request on its way to becoming a song. Survives restarts: the queue is this table."""

    id = pw.CharField(primary_key=True, max_length=32, default=new_id)
    request_id = pw.CharField(max_length=128, null=True, unique=True)
    request = pw.TextField(help_text="The validated SongRequest as JSON")
    user = pw.CharField(max_length=64, null=True, index=True, help_text="Who asked (quotas)")
    state = pw.CharField(max_length=32, index=True)
    progress = pw.FloatField(default=0.0)
    attempts = pw.IntegerField(default=0)
    error_code = pw.CharField(max_length=64, null=True)
    error_message = pw.TextField(null=True)
    song = pw.ForeignKeyField(Song, null=True, backref="jobs", on_delete="SET NULL")
    created_at = pw.DoubleField(default=time.time, index=True)
    started_at = pw.DoubleField(null=True)
    finished_at = pw.DoubleField(null=True)
    updated_at = pw.DoubleField(default=time.time)

    class Meta:
        # The queue: the oldest queued job is one index step away, however long it is.
        indexes = tuple((columns, False) for columns in JOB_INDEXES)


class Credential(BaseModel):
    """An API key or token, Fernet-encrypted. `owner` NULL means the household default."""

    id = pw.AutoField()
    owner = pw.CharField(max_length=64, null=True)
    provider = pw.CharField(max_length=32)
    secret = pw.BlobField()
    created_at = pw.DoubleField(default=time.time)

    class Meta:
        indexes = ((("owner", "provider"), True),)


class Vote(BaseModel):
    """One person's +1/-1 on a song; 0 is stored as no row."""

    id = pw.AutoField()
    song = pw.ForeignKeyField(Song, backref="votes", on_delete="CASCADE")
    user = pw.CharField(max_length=64)
    value = pw.SmallIntegerField()
    created_at = pw.DoubleField(default=time.time)

    class Meta:
        indexes = ((("song", "user"), True),)


class PlaylistEntry(BaseModel):
    """One song in a room's ordered playlist (a room's songs are added as they are made)."""

    id = pw.AutoField()
    room = pw.CharField(max_length=64, index=True)
    position = pw.IntegerField()
    song = pw.ForeignKeyField(Song, backref="playlist_entries", on_delete="CASCADE")
    added_at = pw.DoubleField(default=time.time)

    class Meta:
        indexes = ((("room", "position"), True),)


class User(BaseModel):
    """A household member (mirrored from `[users]` at start) or a guest (made over MQTT).

    Tokens are stored as SHA-256 hashes: the database never holds one that works."""

    id = pw.CharField(primary_key=True, max_length=64)
    name = pw.CharField(max_length=64)
    role = pw.CharField(max_length=16)
    token_hash = pw.CharField(max_length=64, null=True, unique=True)
    configured = pw.BooleanField(default=False, help_text="From [users]; else a guest")
    rooms = pw.TextField(null=True, help_text="JSON list of rooms a guest may use; NULL = all")
    quota = pw.IntegerField(null=True, help_text="Overrides the role's songs per window")
    quota_since = pw.DoubleField(null=True, help_text="Count songs from here (party guests)")
    party = pw.CharField(max_length=32, null=True, index=True, help_text="Guest of this party")
    expires_at = pw.DoubleField(null=True, index=True)
    created_by = pw.CharField(max_length=64, null=True)
    created_at = pw.DoubleField(default=time.time)


class RoomPreference(BaseModel):
    """Evidence that a room likes a genre or mood (see household.learning)."""

    id = pw.AutoField()
    room = pw.CharField(max_length=64)
    dimension = pw.CharField(max_length=8)  # genre | mood
    value = pw.CharField(max_length=32)
    weight = pw.DoubleField(default=0.0)
    updated_at = pw.DoubleField(default=time.time)

    class Meta:
        indexes = ((("room", "dimension", "value"), True),)


class RoomModeRow(BaseModel):
    """A room's mode and child-safe switch, kept across restarts."""

    room = pw.CharField(primary_key=True, max_length=64)
    mode = pw.CharField(max_length=16, default="normal")
    child_safe = pw.BooleanField(default=False)
    params = pw.TextField(default="{}")
    since = pw.DoubleField(default=time.time)

    class Meta:
        table_name = "room_mode"


class ChildSafeLog(BaseModel):
    """What was asked in a child-safe room, for the parents."""

    id = pw.AutoField()
    ts = pw.DoubleField(default=time.time, index=True)
    room = pw.CharField(max_length=64, null=True, index=True)
    user = pw.CharField(max_length=64, null=True)
    request = pw.TextField()
    outcome = pw.CharField(max_length=32)  # accepted | refused
    reason = pw.TextField(default="")


class Party(BaseModel):
    id = pw.CharField(primary_key=True, max_length=32, default=new_id)
    theme = pw.CharField(max_length=64)
    rooms = pw.TextField(default="[]")
    guest_access = pw.BooleanField(default=True)
    started_at = pw.DoubleField(default=time.time)
    stopped_at = pw.DoubleField(null=True)
    playlist = pw.CharField(max_length=128, null=True, help_text="Saved as this on stop")


class PartyQueueEntry(BaseModel):
    """A song on its way into a party, or waiting in its queue; played ones are kept."""

    id = pw.AutoField()
    party = pw.ForeignKeyField(Party, backref="entries", on_delete="CASCADE")
    job_id = pw.CharField(max_length=32, null=True, index=True)
    song = pw.ForeignKeyField(Song, null=True, on_delete="CASCADE")
    user = pw.CharField(max_length=64, null=True)
    filler = pw.BooleanField(default=False)
    starter = pw.BooleanField(default=False)
    added_at = pw.DoubleField(default=time.time)
    played_at = pw.DoubleField(null=True)


class SchemaVersion(BaseModel):
    version = pw.IntegerField()


MODELS: list[type[BaseModel]] = [Song, Job, Vote, Credential, PlaylistEntry, User,
                                 RoomPreference, RoomModeRow, ChildSafeLog, Party,
                                 PartyQueueEntry]


def _household(migrator: SchemaMigrator) -> None:
    """2: shared songs, the asker of a job, and the household tables."""
    from playhouse.migrate import migrate

    migrate(migrator.add_column("song", "shared", Song.shared),
            migrator.add_column("job", "user", Job.user))
    migrator.database.create_tables([User, RoomPreference, RoomModeRow, ChildSafeLog, Party,
                                     PartyQueueEntry])


def _song_worker(migrator: SchemaMigrator) -> None:
    """3: which worker made a song (songs made on other machines, issue 16)."""
    from playhouse.migrate import migrate

    migrate(migrator.add_column("song", "worker", Song.worker))


def _growth(migrator: SchemaMigrator) -> None:
    """4: costs that do not grow with the library or the queue (issue 17): the vote score
    kept on the song, the indexes of the queue and of library pages, and a text index."""
    from playhouse.migrate import migrate

    # A plain ADD COLUMN with an SQL default: no copy of the song table.
    migrator.database.execute_sql("ALTER TABLE song ADD COLUMN score INTEGER NOT NULL DEFAULT 0")
    migrate(*(migrator.add_index("song", columns) for columns in SONG_PAGE_INDEXES),
            *(migrator.add_index("job", columns) for columns in JOB_INDEXES))
    migrator.database.execute_sql(
        "UPDATE song SET score = (SELECT COALESCE(SUM(value), 0) FROM vote "
        "WHERE vote.song_id = song.id)")
    create_text_index(migrator.database)


def create_text_index(db: pw.Database) -> None:
    """Full-text search of title, prompt and lyrics: SQLite FTS5 (an external-content table
    the triggers keep in step with `song`), PostgreSQL a GIN index on a tsvector. The
    'simple' configuration: no stemming, no stop words; lyrics are in any language."""
    if isinstance(db, pw.PostgresqlDatabase):
        db.execute_sql(f"CREATE INDEX IF NOT EXISTS song_text ON song USING GIN "
                       f"({PG_TEXT_VECTOR})")
        return
    statements = [
        ("CREATE VIRTUAL TABLE IF NOT EXISTS song_fts USING fts5(title, prompt, lyrics, "
         "content='song', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')"),
        ("CREATE TRIGGER IF NOT EXISTS song_fts_insert AFTER INSERT ON song BEGIN "
         f"{_FTS_ADD} END"),
        ("CREATE TRIGGER IF NOT EXISTS song_fts_delete AFTER DELETE ON song BEGIN "
         f"{_FTS_REMOVE} END"),
        ("CREATE TRIGGER IF NOT EXISTS song_fts_update AFTER UPDATE OF title, prompt, lyrics "
         f"ON song BEGIN {_FTS_REMOVE} {_FTS_ADD} END"),
        "INSERT INTO song_fts(song_fts) VALUES ('rebuild')",
    ]
    for sql in statements:
        db.execute_sql(sql)


_FTS_ADD = ("INSERT INTO song_fts(rowid, title, prompt, lyrics) "
            "VALUES (new.rowid, new.title, new.prompt, new.lyrics);")
_FTS_REMOVE = ("INSERT INTO song_fts(song_fts, rowid, title, prompt, lyrics) "
               "VALUES ('delete', old.rowid, old.title, old.prompt, old.lyrics);")
PG_TEXT_VECTOR = ("to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(prompt, '') "
                  "|| ' ' || coalesce(lyrics, ''))")


# Step N brings the schema from version N-1 to N. Step 1 is the initial create_tables.
Migration = Callable[[SchemaMigrator], None]
MIGRATIONS: list[Migration] = [_household, _song_worker, _growth]
SCHEMA_VERSION = 1 + len(MIGRATIONS)


def _connect(url: str | None, state_dir: Path) -> pw.Database:
    if url:
        from playhouse.db_url import connect

        return connect(url)
    state_dir.mkdir(parents=True, exist_ok=True)
    return pw.SqliteDatabase(
        str(state_dir / "cassetted.db"),
        pragmas={
            "journal_mode": "wal",
            "synchronous": "normal",   # durable across process crashes with WAL
            "foreign_keys": 1,
            "busy_timeout": 5000,
        },
        check_same_thread=False,
    )


def _has_table(db: pw.Database, name: str) -> bool:
    """peewee looks for PostgreSQL tables in `public` only; ask for the table where the
    connection's search_path finds it (a `?options=-csearch_path=...` URL)."""
    if isinstance(db, pw.PostgresqlDatabase):
        return bool(db.execute_sql("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0])
    return bool(db.table_exists(name))


class StoreError(Exception):
    """The database cannot be used as it is. The message is one line for a person: what is
    wrong, with which database, and the way out (no traceback in a restart loop)."""


REBUILD_HINT = ("start once with `cassetted run --rebuild-library` to index the library's "
                "files from their tags")


def is_empty(url: str | None, state_dir: Path) -> bool:
    """Whether opening would create the schema from nothing (a new or deleted database).
    Creates nothing; a database that cannot be read is not empty (open says why)."""
    if url:
        db = _connect(url, state_dir)
        try:
            db.connect()
            return not _has_table(db, SchemaVersion._meta.table_name)
        except pw.DatabaseError:
            return False
        finally:
            db.close()
    path = state_dir / "cassetted.db"
    if not path.exists() or path.stat().st_size == 0:
        return True
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            found: int = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = ?",
                                      (SchemaVersion._meta.table_name,)).fetchone()[0]
            return found == 0
    except sqlite3.DatabaseError:
        return False


def open_database(url: str | None, state_dir: Path) -> pw.Database:
    """Connect, create or migrate the schema, and bind the models. Returns the database.

    Raises StoreError for a database that is corrupt, unreachable or too new."""
    where = describe(url, state_dir)
    try:
        return _open(url, state_dir)
    except StoreError:
        raise
    except pw.OperationalError as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise StoreError(f"cannot open the database {where}: {first}") from None
    except pw.DatabaseError as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise StoreError(_corrupt(where, first)) from None


def _corrupt(where: str, reason: str) -> str:
    return (f"the database {where} is corrupt ({reason}): restore it from a backup, or move "
            f"it aside and {REBUILD_HINT}")


def _open(url: str | None, state_dir: Path) -> pw.Database:
    db = _connect(url, state_dir)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    if isinstance(db, pw.SqliteDatabase):
        check = db.execute_sql("PRAGMA quick_check(1)").fetchone()[0]
        if check != "ok":
            raise StoreError(_corrupt(describe(url, state_dir), check))
    sqlite = isinstance(db, pw.SqliteDatabase)
    if sqlite:
        # SQLite changes a column by copying the table and dropping the old one; with
        # foreign keys on, that drop would cascade (every vote of every song deleted).
        # The pragma only takes effect outside a transaction.
        db.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        _create_or_migrate(db, url, state_dir)
    finally:
        if sqlite:
            db.execute_sql("PRAGMA foreign_keys = ON")
    return db


def _create_or_migrate(db: pw.Database, url: str | None, state_dir: Path) -> None:
    with db.atomic():
        if not _has_table(db, SchemaVersion._meta.table_name):
            db.create_tables([*MODELS, SchemaVersion])
            create_text_index(db)
            SchemaVersion.create(version=SCHEMA_VERSION)
            log.info("database created at schema version %d", SCHEMA_VERSION)
        else:
            row = SchemaVersion.get()
            if row.version > SCHEMA_VERSION:
                raise StoreError(
                    f"the database {describe(url, state_dir)} has schema {row.version}, newer "
                    f"than this cassetted's ({SCHEMA_VERSION}): install the newer cassetted")
            migrator = SchemaMigrator.from_database(db)
            for step in range(row.version, SCHEMA_VERSION):
                log.info("migrating database schema %d -> %d", step, step + 1)
                MIGRATIONS[step - 1](migrator)
            if row.version != SCHEMA_VERSION:
                row.version = SCHEMA_VERSION
                row.save()


def describe(url: str | None, state_dir: Path) -> str:
    """Where the data lives, without credentials (for logs)."""
    if url:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        return f"{parts.scheme}://{host}:{parts.port or ''}{parts.path}"
    return str(state_dir / "cassetted.db")


class Store:
    """The database, owned by one thread: asyncio code awaits `call`, never blocks on I/O.

    A single thread gives a single connection (peewee keeps one per thread) and serialises
    writes, so SQLite never reports "database is locked" to ourselves.
    """

    def __init__(self, url: str | None, state_dir: Path) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._url = url
        self._state_dir = state_dir
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.db: pw.Database | None = None

    @property
    def where(self) -> str:
        """The database, for messages: its file or URL without credentials."""
        return describe(self._url, self._state_dir)

    async def open(self) -> None:
        self.db = await self.call(open_database, self._url, self._state_dir)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def close(self) -> None:
        if self.db is not None:
            await self.call(self.db.close)
        self._executor.shutdown(wait=True)
