"""The party's queue as the store keeps it: entries, their order, the saved playlist.

Store-thread functions (the party host awaits them through `Store.call`). An entry is a
song on its way (a job) or waiting; it leaves the queue when the party MPD starts it
(`played_at`) but stays in the table, so the playlist saved at the end holds what was
played and what was still to come, and a restarted daemon finds the party as it was.

Order: score (the sum of the votes on the entry's song) descending, then the time the entry
was added; a song still being made has no votes yet.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import cast

import peewee as pw

from cassetted.contract.schemas import Genre, Mood
from cassetted.store.database import Job, Party, PartyQueueEntry, PlaylistEntry, Song, User, Vote

_GONE = ("failed", "cancelled")


@dataclass(frozen=True)
class PartyInfo:
    """A running party, as the host keeps it in memory."""

    id: str
    theme: str
    rooms: list[str]
    guest_access: bool
    started_at: float


@dataclass(frozen=True)
class QueuedSong:
    """One unplayed entry, with what the queue shows of it."""

    entry_id: int
    job_id: str | None
    song_id: str | None
    title: str | None
    user: str | None
    score: int
    filler: bool
    starter: bool


def _info(row: Party) -> PartyInfo:
    return PartyInfo(id=row.id, theme=row.theme, rooms=json.loads(row.rooms),
                     guest_access=row.guest_access, started_at=row.started_at)


def begin(party_id: str, theme: str, rooms: list[str], guest_access: bool) -> PartyInfo:
    return _info(Party.create(id=party_id, theme=theme, rooms=json.dumps(rooms),
                              guest_access=guest_access))


def running() -> PartyInfo | None:
    """The party that has not stopped (the newest, should a crash have left two)."""
    row = (Party.select().where(Party.stopped_at.is_null())
           .order_by(Party.started_at.desc()).first())
    return _info(row) if row is not None else None


def set_rooms(party_id: str, rooms: list[str]) -> None:
    Party.update(rooms=json.dumps(rooms)).where(Party.id == party_id).execute()


def add(party_id: str, *, job_id: str | None = None, song_id: str | None = None,
        user: str | None = None, filler: bool = False, starter: bool = False) -> str | None:
    """A new entry; a job already in the party is not added twice (a repeated request).
    Returns the entry's song id: a job that had finished already brings its song."""
    if job_id is not None:
        existing = PartyQueueEntry.get_or_none((PartyQueueEntry.party == party_id)
                                               & (PartyQueueEntry.job_id == job_id))
        if existing is not None:
            return cast("str | None", existing.song_id)
        job = Job.get_or_none(Job.id == job_id)
        song_id = job.song_id if job is not None else None
    PartyQueueEntry.create(party=party_id, job_id=job_id, song=song_id, user=user,
                           filler=filler, starter=starter)
    return song_id


def attach_song(job_id: str, song_id: str) -> None:
    PartyQueueEntry.update(song=song_id).where(PartyQueueEntry.job_id == job_id).execute()


def drop_job(job_id: str) -> None:
    """A song that will never come (its job failed or was cancelled) leaves the queue."""
    PartyQueueEntry.delete().where((PartyQueueEntry.job_id == job_id)
                                   & PartyQueueEntry.song.is_null()).execute()


def _scores(song_ids: list[str]) -> dict[str, int]:
    if not song_ids:
        return {}
    rows = (Vote.select(Vote.song, pw.fn.SUM(Vote.value)).where(Vote.song.in_(song_ids))
            .group_by(Vote.song).tuples())
    return {song_id: int(total or 0) for song_id, total in rows}


def queue(party_id: str) -> list[QueuedSong]:
    """The unplayed entries in the order they will play."""
    entries = list(PartyQueueEntry.select(PartyQueueEntry, Song)
                   .join(Song, pw.JOIN.LEFT_OUTER)
                   .where((PartyQueueEntry.party == party_id) & PartyQueueEntry.played_at.is_null()))
    scores = _scores([e.song_id for e in entries if e.song_id])
    entries.sort(key=lambda e: (-scores.get(e.song_id, 0), e.added_at, e.id))
    return [QueuedSong(entry_id=e.id, job_id=e.job_id, song_id=e.song_id,
                       title=e.song.title if e.song_id else None, user=e.user,
                       score=scores.get(e.song_id, 0), filler=e.filler, starter=e.starter)
            for e in entries]


def mark_played(party_id: str, song_id: str) -> bool:
    """The party MPD started `song_id`: its first unplayed entry (in queue order) is played."""
    for entry in queue(party_id):
        if entry.song_id == song_id:
            (PartyQueueEntry.update(played_at=time.time())
             .where(PartyQueueEntry.id == entry.entry_id).execute())
            return True
    return False


def snapshot(party_id: str) -> tuple[list[QueuedSong], int, int]:
    """The queue, the songs guests added and the fillers so far: what party/state shows."""
    entries = list(PartyQueueEntry.select().where(PartyQueueEntry.party == party_id))
    users = {e.user for e in entries if e.user is not None}
    guests = {row.id for row in User.select(User.id).where(User.id.in_(list(users))
                                                            & (User.role == "guest"))} if users else set()
    return (queue(party_id), sum(1 for e in entries if e.user in guests),
            sum(1 for e in entries if e.filler))


def profile(party_id: str) -> tuple[float | None, Mood | None, Genre | None]:
    """(mean bpm, commonest mood, commonest genre) of the party's songs so far."""
    songs = list(Song.select(Song.bpm, Song.mood, Song.genre).join(PartyQueueEntry)
                 .where(PartyQueueEntry.party == party_id))
    if not songs:
        return None, None, None
    mood = Counter(s.mood for s in songs).most_common(1)[0][0]
    genre = Counter(s.genre for s in songs).most_common(1)[0][0]
    return sum(s.bpm for s in songs) / len(songs), mood, genre


def resume(party_id: str) -> tuple[list[str], list[str]]:
    """After a restart: entries whose song was made meanwhile get it, those whose job failed
    go. Returns the party's (job ids, song ids)."""
    for entry in PartyQueueEntry.select().where((PartyQueueEntry.party == party_id)
                                                & PartyQueueEntry.song.is_null()):
        job = Job.get_or_none(Job.id == entry.job_id) if entry.job_id else None
        if job is None or job.state in _GONE:
            entry.delete_instance()
        elif job.song_id is not None:
            entry.song = job.song_id
            entry.save()
    entries = list(PartyQueueEntry.select().where(PartyQueueEntry.party == party_id))
    return ([e.job_id for e in entries if e.job_id], [e.song_id for e in entries if e.song_id])


def playlist_name(party_id: str) -> str:
    """`party_<yyyymmdd_hhmm>` of the party's start (local time); `_2`, `_3` ... when taken."""
    started = Party.get_by_id(party_id).started_at
    base = time.strftime("party_%Y%m%d_%H%M", time.localtime(started))
    name, n = base, 1
    while PlaylistEntry.select().where(PlaylistEntry.room == name).exists():
        n += 1
        name = f"{base}_{n}"
    return name


def finish(party_id: str, name: str) -> list[str]:
    """End the party: its played songs (in the order they played), then the queued ones,
    become the playlist `name`. Returns the song ids."""
    played = (PartyQueueEntry.select().where((PartyQueueEntry.party == party_id)
                                             & PartyQueueEntry.played_at.is_null(False)
                                             & PartyQueueEntry.song.is_null(False))
              .order_by(PartyQueueEntry.played_at, PartyQueueEntry.id))
    songs = [e.song_id for e in played] + [q.song_id for q in queue(party_id) if q.song_id]
    with Party._meta.database.atomic():
        for position, song_id in enumerate(songs):
            PlaylistEntry.create(room=name, position=position, song=song_id)
        Party.update(stopped_at=time.time(), playlist=name).where(Party.id == party_id).execute()
    return songs


def own_jobs_in_flight(party_id: str) -> list[str]:
    """Jobs still making the party's own songs (starters, fillers): nobody asked for them,
    so they are not worth finishing once the party ends."""
    rows = (PartyQueueEntry.select(PartyQueueEntry.job_id)
            .where((PartyQueueEntry.party == party_id) & PartyQueueEntry.song.is_null()
                   & PartyQueueEntry.job_id.is_null(False)
                   & (PartyQueueEntry.starter | PartyQueueEntry.filler)))
    return [row.job_id for row in rows]


def saved_playlists() -> list[dict[str, object]]:
    """Every ended party's playlist, newest first: name, theme, when, how many songs."""
    parties = (Party.select().where(Party.playlist.is_null(False))
               .order_by(Party.started_at.desc()))
    out: list[dict[str, object]] = []
    for party in parties:
        count = PlaylistEntry.select().where(PlaylistEntry.room == party.playlist).count()
        out.append({"name": party.playlist, "theme": party.theme, "started_at": party.started_at,
                    "stopped_at": party.stopped_at, "songs": count})
    return out
