"""The shared library: queries that respect privacy, votes, sharing, and statistics.

A song is shared with the household unless its maker asked for it to be private. Who sees
what: an owner sees every song; anybody else the shared ones and their own. Making a song
private again rotates its media URL token, so a URL seen while it was shared stops working.
Only the maker or an owner may share, keep or drop a song's takes. Store-thread functions.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import TYPE_CHECKING, Protocol

import peewee as pw

from cassetted.contract import errors
from cassetted.contract.schemas import LibraryQuery, LibraryStats, SongInfo
from cassetted.store.database import Job, Song, Vote

if TYPE_CHECKING:
    from cassetted.config import Settings


class Caller(Protocol):
    """What the library needs to know of whoever asks. The household's
    `cassetted.household.identity.Caller` is one; the library sits below the household and
    does not import it."""

    @property
    def user(self) -> str | None: ...

    @property
    def is_owner(self) -> bool: ...

    def may_manage(self, user: str | None) -> bool: ...

_SCORE = pw.fn.COALESCE(pw.fn.SUM(Vote.value), 0)
_WORD = re.compile(r"\w+")


def visible(select: pw.ModelSelect, caller: Caller) -> pw.ModelSelect:
    """`select` narrowed to the songs `caller` may see."""
    if caller.is_owner:
        return select
    if caller.user is None:
        return select.where(Song.shared == True)  # noqa: E712 - a peewee expression
    return select.where((Song.shared == True) | (Song.user == caller.user))  # noqa: E712


def query(query: LibraryQuery, caller: Caller) -> tuple[int, list[tuple[Song, int]]]:
    """(total matches, [(song, score)] of the requested page). Reads only the page's rows
    off an index (the score is kept on the song; see store.database), so the first page
    costs the same in a library of 100 songs or 10,000; the total is one index count."""
    select = visible(Song.select(), caller)
    for field in ("genre", "mood", "room", "user", "shared"):
        value = getattr(query, field)
        if value is not None:
            select = select.where(getattr(Song, field) == value)
    if query.text:
        select = select.where(_text_match(query.text))
    total = select.count()
    order = {
        "newest": [Song.created_at.desc()], "oldest": [Song.created_at.asc()],
        "title": [Song.title.asc()], "duration": [Song.duration_s.asc()],
        "top_voted": [Song.score.desc(), Song.created_at.desc()],
    }[query.sort]
    rows = select.order_by(*order, Song.id).paginate(query.page, query.page_size)
    return total, [(song, song.score) for song in rows]


def _text_match(text: str) -> pw.Expression:
    """Songs whose title, prompt or lyrics have words starting with each word of `text`
    (case and accents ignored), from the text index: "rain" finds "Rainy Monday". Text
    with no word in it (punctuation only) falls back to a substring scan."""
    words = _WORD.findall(text.lower())
    db = Song._meta.database
    if not words:
        return (Song.title.contains(text) | Song.prompt.contains(text)
                | Song.lyrics.contains(text))
    if isinstance(db.obj, pw.PostgresqlDatabase):  # the proxy's database, as policy._takes
        from cassetted.store.database import PG_TEXT_VECTOR

        terms = " & ".join(f"{word}:*" for word in words)
        return pw.SQL(f"{PG_TEXT_VECTOR} @@ to_tsquery('simple', %s)", (terms,))
    terms = " ".join(f'"{word}"*' for word in words)
    # The song table's own rowid (unqualified: peewee aliases the table), so SQLite reads
    # the matching rows by rowid instead of testing every song against the match list.
    return pw.SQL("rowid IN (SELECT rowid FROM song_fts WHERE song_fts MATCH ?)", (terms,))


def readable(song_id: str, caller: Caller) -> Song:
    """The song if `caller` may see it, else UnknownSong (a cover, repaint or karaoke remix
    needs this right to its source)."""
    return _song(song_id, caller, "source_song_id")


def _song(song_id: str, caller: Caller, field: str = "song_id") -> Song:
    song: Song | None = visible(Song.select().where(Song.id == song_id), caller).first()
    if song is None:  # or not the caller's to see: the same answer
        raise errors.UnknownSong(f"no song {song_id!r}", field)
    return song


def vote(song_id: str, caller: Caller, value: int) -> tuple[Song, int, int]:
    """Record the caller's vote (0 takes it back). Returns (song, new score, change of the
    caller's vote) - the change is what learning and the party queue react to."""
    song = _song(song_id, caller)
    voter = caller.user or "household"
    old = Vote.get_or_none((Vote.song == song) & (Vote.user == voter))
    with Song._meta.database.atomic():
        Vote.delete().where((Vote.song == song) & (Vote.user == voter)).execute()
        if value:
            Vote.create(song=song, user=voter, value=value)
        score = int(Vote.select(_SCORE).where(Vote.song == song).scalar())
        Song.update(score=score).where(Song.id == song.id).execute()
    return song, score, value - (old.value if old else 0)


def share(song_id: str, caller: Caller, shared: bool) -> Song:
    """Only the song's maker (or an owner) decides whether it is shared."""
    song = _song(song_id, caller)
    if not caller.may_manage(song.user):
        raise errors.Forbidden("only the song's maker or an owner may share it or make it private")
    fields: dict[str, object] = {"shared": shared}
    if song.shared and not shared:  # a URL handed out while it was shared must stop working
        fields["url_token"] = secrets.token_urlsafe(24)
    Song.update(**fields).where(Song.id == song_id).execute()
    for name, value in fields.items():
        setattr(song, name, value)
    return song


def keep(song_id: str, caller: Caller) -> tuple[str, dict[str, str]]:
    """Keep one take of a request's variants: the others' rows go (their files, by the
    caller). Only the maker or an owner. Returns the kept id and {removed id: file}."""
    song = _song(song_id, caller)
    if not caller.may_manage(song.user):
        raise errors.Forbidden("only the song's maker or an owner may keep a take", "song_id")
    first = song.variant_of or song.id
    group = Song.select().where((Song.id == first) | (Song.variant_of == first))
    others = {s.id: s.file for s in group if s.id != song.id}
    if not others:
        raise errors.InvalidState(f"song {song_id} has no other takes to drop")
    with Song._meta.database.atomic():
        Job.update(song=song.id).where(Job.song.in_(list(others))).execute()
        Song.delete().where(Song.id.in_(list(others))).execute()
        Song.update(variant_of=None).where(Song.id == song.id).execute()
    return song.id, others


def stats() -> LibraryStats:
    songs = Song.select().count()
    shared = Song.select().where(Song.shared == True).count()  # noqa: E712
    by_user = {(user or "household"): count for user, count in
               Song.select(Song.user, pw.fn.COUNT(Song.id)).group_by(Song.user).tuples()}
    top = (Song.select(Song.id, Song.title, Song.score)
           .where((Song.shared == True) & (Song.score > 0))  # noqa: E712
           .order_by(Song.score.desc(), Song.id).limit(5))
    return LibraryStats(
        songs=songs, shared=shared, private=songs - shared, votes=Vote.select().count(),
        by_user=by_user, top_voted=[{"id": s.id, "title": s.title, "score": int(s.score)} for s in top],
        ts=time.time())


def song_info(song: Song, settings: Settings) -> SongInfo:
    """The public view of a Song row: its file's absolute path and, when the media server is
    on, the unguessable URL network players fetch it from."""
    url = None
    if settings.media.enabled:
        from cassetted.library.media import media_url, public_base_url

        url = media_url(public_base_url(settings.media), song)
    return SongInfo(
        id=song.id, title=song.title, prompt=song.prompt, lyrics=song.lyrics, genre=song.genre,
        mood=song.mood, bpm=song.bpm, key=song.key, time_signature=song.time_signature,
        duration_s=song.duration_s, language=song.language, instrumental=song.instrumental,
        seed=song.seed, room=song.room, user=song.user, engine=song.engine,
        lyrics_provider=song.lyrics_provider, file=str(settings.library_dir / song.file),
        format=song.format, url=url, variant_of=song.variant_of, shared=song.shared,
        worker=song.worker, created_at=song.created_at,
    )
