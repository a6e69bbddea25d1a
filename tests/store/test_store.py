"""The store and the queue's invariants on SQLite and on the machine's PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cassetted.contract import errors
from cassetted.contract.schemas import JobState, LibraryQuery, SongRequest
from cassetted.jobs import runner as jobs
from cassetted.library import access
from cassetted.store import database as store


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    database = store.open_database(url, tmp_path)
    yield database
    database.close()


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    database = store.open_database(None, tmp_path)
    assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (tmp_path / "cassetted.db").is_file()


def test_schema_version_recorded_and_reopen_keeps_rows(tmp_path: Path) -> None:
    store.open_database(None, tmp_path)
    assert store.SchemaVersion.get().version == store.SCHEMA_VERSION
    store.Job.create(request="{}", state="queued")
    store.open_database(None, tmp_path)
    assert store.Job.select().count() == 1 and store.SchemaVersion.select().count() == 1


def test_insert_is_idempotent_per_request_id(db) -> None:
    request = SongRequest(prompt="x", request_id="r1", seed=1)
    first, dup1 = jobs._insert(request, max_pending=10)
    second, dup2 = jobs._insert(request, max_pending=10)
    assert (dup1, dup2) == (False, True) and first.id == second.id
    assert store.Job.select().count() == 1


def test_queue_full(db) -> None:
    for i in range(3):
        jobs._insert(SongRequest(prompt=str(i), seed=i), max_pending=3)
    with pytest.raises(errors.QueueFull) as info:
        jobs._insert(SongRequest(prompt="one too many", seed=9), max_pending=3)
    assert getattr(info.value, "code", "") == "queue_full"


def test_claim_in_arrival_order_and_only_once(db) -> None:
    made = [jobs._insert(SongRequest(prompt=str(i), seed=i), 10)[0] for i in range(3)]
    claimed = [jobs._claim_next() for _ in range(3)]
    assert [j.id for j in claimed] == [j.id for j in made]
    assert all(j.state == JobState.writing_lyrics.value and j.attempts == 1 for j in claimed)
    assert jobs._claim_next() is None


def test_recover_requeues_then_gives_up(db) -> None:
    job, _ = jobs._insert(SongRequest(prompt="x", seed=1), 10)
    for attempt in range(1, jobs.MAX_ATTEMPTS + 1):
        claimed = jobs._claim_next()
        assert claimed.id == job.id and claimed.attempts == attempt
        jobs._set(job.id, state=JobState.composing.value)
        jobs._recover()
    final = store.Job.get_by_id(job.id)
    assert final.state == JobState.failed.value and final.error_code == "interrupted"


def test_recover_finishes_ready_jobs(db) -> None:
    job, _ = jobs._insert(SongRequest(prompt="x", seed=1), 10)
    jobs._set(job.id, state=JobState.ready.value)
    jobs._recover()
    assert store.Job.get_by_id(job.id).state == JobState.done.value


def test_cancel_only_while_queued(db) -> None:
    a, _ = jobs._insert(SongRequest(prompt="a", seed=1), 10)
    b, _ = jobs._insert(SongRequest(prompt="b", seed=2), 10)
    jobs._claim_next()
    assert jobs._cancel_if_queued(a.id) is None  # already running
    assert jobs._cancel_if_queued(b.id).state == JobState.cancelled.value


def test_newer_schema_refused(tmp_path: Path) -> None:
    store.open_database(None, tmp_path)
    store.SchemaVersion.update(version=store.SCHEMA_VERSION + 1).execute()
    with pytest.raises(store.StoreError, match="newer"):
        store.open_database(None, tmp_path)


def test_describe_hides_password() -> None:
    text = store.describe("postgresql://u:hunter2@db.local:5432/music", Path("/x"))
    assert "hunter2" not in text and "db.local" in text


def test_a_version_1_database_migrates_to_the_current_schema(request: pytest.FixtureRequest,
                                                             tmp_path: Path) -> None:
    """A database made before the household (schema 1: no song.shared, no job.user, none of
    its tables, no song.worker, no score, indexes or text index) keeps its rows and gains
    what is missing, on SQLite and on PostgreSQL: the score is summed from the votes it
    had, and its songs are found by the text search."""
    for url in (None, request.getfixturevalue("pg_url")):
        here = tmp_path / ("pg" if url else "sqlite")
        database = store.open_database(url, here)
        _downgrade(database, url, 1)
        database.execute_sql("INSERT INTO job (id, request, state, progress, attempts, "
                             "created_at, updated_at) VALUES ('old', '{}', 'queued', 0, 0, 1, 1)")
        database.execute_sql(
            "INSERT INTO song (id, title, prompt, lyrics, style, genre, mood, bpm, key, "
            "time_signature, duration_s, language, instrumental, seed, child_safe, engine, "
            "lyrics_provider, file, format, url_token, created_at) VALUES ('s1', 'Old Garden', "
            "'a garden at dusk', '', '', 'jazz', 'relaxing', 90, 'C major', '4/4', 10, 'en', "
            "false, 1, false, 'builtin', 'builtin', 'old.flac', 'flac', 'tok', 1)")
        for user, value in (("anna", 1), ("bob", 1), ("carl", -1)):
            database.execute_sql("INSERT INTO vote (song_id, \"user\", value, created_at) "
                                 f"VALUES ('s1', '{user}', {value}, 1)")
        database.close()

        database = store.open_database(url, here)
        assert store.SchemaVersion.get().version == store.SCHEMA_VERSION == 4
        old = store.Job.get_by_id("old")
        assert old.user is None and old.state == "queued"
        store.User.create(id="dad", name="Dad", role="owner")
        store.RoomPreference.create(room="living_room", dimension="genre", value="jazz", weight=1)
        # SQLite copies the song table to add a NOT NULL column: the votes survive it.
        assert store.Vote.select().where(store.Vote.song == "s1").count() == 3
        assert store.Song.get_by_id("s1").score == 1 and store.Song.get_by_id("s1").shared
        owner = _Owner()
        assert [s.id for s, _ in access.query(LibraryQuery(text="GARD"), owner)[1]] == ["s1"]
        assert access.query(LibraryQuery(text="dusk old"), owner)[0] == 1
        assert access.query(LibraryQuery(text="dawn"), owner)[0] == 0
        database.close()


def _downgrade(database: Any, url: str | None, version: int) -> None:
    """Take a current database back to schema `version`, as that release made it."""
    from playhouse.migrate import SchemaMigrator, migrate

    migrator = SchemaMigrator.from_database(database)
    if version < 4:
        if url:
            database.execute_sql("DROP INDEX song_text")
        else:
            for trigger in ("insert", "delete", "update"):
                database.execute_sql(f"DROP TRIGGER song_fts_{trigger}")
            database.execute_sql("DROP TABLE song_fts")
        migrate(*(migrator.drop_index("song", "_".join(("song", *columns)))
                  for columns in store.SONG_PAGE_INDEXES),
                *(migrator.drop_index("job", "_".join(("job", *columns)))
                  for columns in store.JOB_INDEXES),
                migrator.drop_column("song", "score"))
    if version < 3:
        migrate(migrator.drop_column("song", "worker"))
    if version < 2:
        database.drop_tables([store.User, store.RoomPreference, store.RoomModeRow,
                              store.ChildSafeLog, store.PartyQueueEntry, store.Party])
        migrate(migrator.drop_index("song", "song_shared"), migrator.drop_column("song", "shared"),
                migrator.drop_index("job", "job_user"), migrator.drop_column("job", "user"))
    store.SchemaVersion.update(version=version).execute()


class _Owner:
    user = None
    is_owner = True

    def may_manage(self, user: str | None) -> bool:
        return True


def test_a_resent_request_id_retries_only_a_system_failure(db) -> None:
    system, _ = jobs._insert(SongRequest(prompt="disk", request_id="sys", seed=1), 10)
    own, _ = jobs._insert(SongRequest(prompt="own", request_id="own", seed=2), 10)
    jobs._set(system.id, state=JobState.failed.value, error_code="disk_full",
              error_message="no space left on the library disk", attempts=6, finished_at=1.0)
    jobs._set(own.id, state=JobState.failed.value, error_code="unsupported",
              error_message="the builtin engine cannot repaint", attempts=1, finished_at=1.0)
    again, duplicate = jobs._insert(SongRequest(prompt="disk", request_id="sys", seed=1), 10)
    assert (again.id, duplicate, again.state, again.attempts) == (system.id, False, "queued", 0)
    assert jobs.is_retry(again) and again.finished_at is None
    assert again.error_code == "disk_full"  # why it is tried again, until the attempt starts
    claimed = jobs._claim_next()
    assert claimed.id == system.id and claimed.error_code is None and claimed.attempts == 1
    same, duplicate = jobs._insert(SongRequest(prompt="own", request_id="own", seed=2), 10)
    assert (same.id, duplicate, same.state) == (own.id, True, "failed")


def test_jobs_waiting_for_their_retry_are_not_claimed(db) -> None:
    first, _ = jobs._insert(SongRequest(prompt="a", seed=1), 10)
    second, _ = jobs._insert(SongRequest(prompt="b", seed=2), 10)
    assert jobs._claim_next((first.id,)).id == second.id
    assert jobs._claim_next((first.id,)) is None
    assert jobs._claim_next().id == first.id


def test_recover_some_jobs_leaves_the_others(db) -> None:
    a, _ = jobs._insert(SongRequest(prompt="a", seed=1), 10)
    b, _ = jobs._insert(SongRequest(prompt="b", seed=2), 10)
    c, _ = jobs._insert(SongRequest(prompt="c", seed=3), 10)
    for job in (a, b):
        jobs._set(job.id, state=JobState.composing.value, attempts=1)
    jobs._set(c.id, state=JobState.ready.value)
    touched = jobs._recover([a.id, c.id])
    assert sorted(j.id for j in touched) == sorted([a.id, c.id])
    states = {j.id: j.state for j in store.Job.select()}
    assert states == {a.id: "queued", b.id: "composing", c.id: "done"}


def test_incoming_files_are_settled_after_a_crash(tmp_path: Path) -> None:
    from cassetted.library import incoming

    staging = tmp_path / ".incoming"
    staging.mkdir()
    for name in ("kept-1.flac", "kept-1.lrc", "orphan-2.flac", "orphan-2.lrc",
                 ".orphan-3.flac.part"):
        (staging / name).write_bytes(b"x")
    assert incoming.pending(tmp_path) == ["kept-1.flac", "orphan-2.flac"]
    placed, removed = incoming.settle(tmp_path, {"kept-1.flac"})
    assert placed == ["kept-1.flac"] and removed == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept-1.flac", "kept-1.lrc"]


def test_storage_faults_are_named(tmp_path: Path) -> None:
    import errno

    import peewee

    from cassetted.contract import errors
    from cassetted.jobs import diskfaults

    full = diskfaults.write_failure(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert isinstance(full, errors.DiskFull) and full.system_fault
    assert full.message == f"no space left on the library disk ({tmp_path})"
    wrapped = RuntimeError("System error.")
    wrapped.__cause__ = OSError(errno.EROFS, "Read-only file system")
    assert diskfaults.write_failure(wrapped, tmp_path).code == "storage_unavailable"
    assert diskfaults.write_failure(ValueError("a bug"), tmp_path) is None
    db_full = diskfaults.database_failure(
        peewee.OperationalError("database or disk is full"), "/x/cassetted.db")
    assert db_full.code == "disk_full" and "database disk" in db_full.message
    assert errors.system_fault_codes() >= {"interrupted", "disk_full", "storage_unavailable"}
    assert "invalid_payload" not in errors.system_fault_codes()


def test_library_index_knows_every_audio_format() -> None:
    from cassetted import audio
    from cassetted.library import index as library_index

    assert {ext: fmt for fmt, ext in audio.FORMATS.items()} == library_index._EXTENSIONS


def test_a_version_2_database_gains_the_song_worker(request: pytest.FixtureRequest,
                                                   tmp_path: Path) -> None:
    """Songs made before workers were recorded keep their rows, with no worker, on SQLite
    and on PostgreSQL."""
    for url in (None, request.getfixturevalue("pg_url")):
        here = tmp_path / ("pg" if url else "sqlite")
        database = store.open_database(url, here)
        _downgrade(database, url, 2)
        database.execute_sql(
            "INSERT INTO song (id, title, prompt, lyrics, style, genre, mood, bpm, key, "
            "time_signature, duration_s, language, instrumental, seed, child_safe, engine, "
            "lyrics_provider, file, format, url_token, shared, created_at) VALUES ('s-old', "
            "'Old', '', '', '', 'jazz', 'relaxing', 90, 'C major', '4/4', 30, 'en', false, 1, "
            "false, 'builtin', 'builtin', 'old.flac', 'flac', 'tok-old', true, 1)")
        database.close()

        database = store.open_database(url, here)
        assert store.SchemaVersion.get().version == store.SCHEMA_VERSION == 4
        assert store.Song.get_by_id("s-old").worker is None
        database.close()
