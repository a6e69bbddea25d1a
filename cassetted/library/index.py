"""The library's files as the database's songs: count them, and re-index them from their tags.

A deleted database must not be silently replaced by an empty one (the files would be
orphaned and every request id forgotten), so the daemon counts the library's audio files
before it opens an empty database; `cassetted run --rebuild-library` makes the rows again
from what cassetted wrote into each file (title, genre, lyrics, bpm, key, prompt, date).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from cassetted.contract.schemas import GENRES, MOODS
from cassetted.library.incoming import INCOMING

log = logging.getLogger(__name__)

# As cassetted.audio.FORMATS has them (not imported: it pulls SciPy into the daemon).
_EXTENSIONS = {".flac": "flac", ".ogg": "ogg", ".mp3": "mp3", ".wav": "wav"}
# Our file names end in the song id: "<slug>-<16 hex>[-<take>].<ext>" (pipeline.Pipeline.run)
_SONG_ID = re.compile(r"-(?P<id>[0-9a-f]{16})(?:-(?P<take>\d+))?$")


def audio_files(library_dir: Path) -> list[Path]:
    """The songs cassetted made in the library: audio files named `<slug>-<song id>.<ext>`,
    without hidden ones and `.incoming/` (not yet songs). Music of other origins that
    happens to sit in the folder is neither counted nor indexed."""
    if not library_dir.is_dir():
        return []
    found = []
    for path in library_dir.rglob("*"):
        relative = path.relative_to(library_dir)
        if any(part.startswith(".") for part in relative.parts) or relative.parts[0] == INCOMING:
            continue
        if path.suffix.lower() in _EXTENSIONS and _SONG_ID.search(path.stem) and path.is_file():
            found.append(path)
    return sorted(found)


_VORBIS = {"title": ("TITLE",), "genre": ("GENRE",), "lyrics": ("LYRICS",), "bpm": ("BPM",),
           "key": ("KEY", "INITIALKEY"), "prompt": ("COMMENT",), "date": ("DATE",)}
_ID3 = {"title": "TIT2", "genre": "TCON", "lyrics": "USLT", "bpm": "TBPM", "key": "TKEY",
        "prompt": "COMM", "date": "TDRC"}  # as audio._id3_frames writes them


def _vorbis(tags: Any, keys: tuple[str, ...]) -> str:
    for key in keys:
        values = tags.get(key) or tags.get(key.lower()) or []
        if values and str(values[0]).strip():
            return str(values[0]).strip()
    return ""


def _id3(tags: Any, name: str) -> str:
    frames = tags.getall(name)
    if not frames:
        return ""
    value = frames[0].text
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value).strip()


def read_tags(path: Path) -> dict[str, Any]:
    """What a song file says about itself (Vorbis comments or ID3), and its length."""
    import mutagen

    audio = mutagen.File(path)
    if audio is None:
        raise ValueError("not an audio file mutagen can read")
    tags = audio.tags
    values: dict[str, Any]
    if tags is None:
        values = dict.fromkeys(_VORBIS, "")
    elif hasattr(tags, "getall"):
        values = {name: _id3(tags, frame) for name, frame in _ID3.items()}
    else:
        values = {name: _vorbis(tags, keys) for name, keys in _VORBIS.items()}
    values["duration_s"] = float(getattr(audio.info, "length", 0.0) or 0.0)
    return values


def rebuild(library_dir: Path) -> tuple[int, int]:
    """Song rows for the library's files that have none (run on the store's thread).

    Returns (songs added, files skipped). What the tags do not hold is filled in plainly:
    the mood from the prompt (else "uplifting"), seed 0, engine and provider "unknown"."""
    from cassetted.store.database import Song, new_id
    from cassetted.voice import intake

    known = {song.file for song in Song.select(Song.file)}
    added = skipped = 0
    for path in audio_files(library_dir):
        relative = path.relative_to(library_dir).as_posix()
        if relative in known:
            continue
        try:
            tags = read_tags(path)
        except Exception as error:  # noqa: BLE001 - one unreadable file must not stop the rest
            log.warning("library: %s skipped: %s", relative, error)
            skipped += 1
            continue
        match = _SONG_ID.search(path.stem)
        song_id = match["id"] if match and not match["take"] and \
            Song.get_or_none(Song.id == match["id"]) is None else new_id()
        genre_read, mood_read = intake.read_prompt(tags["prompt"]) if tags["prompt"] else (None, None)
        genre = tags["genre"].lower() if tags["genre"].lower() in GENRES else (genre_read or "pop")
        bpm = int(float(tags["bpm"])) if re.fullmatch(r"\d+(\.\d+)?", tags["bpm"]) else 120
        lyrics = tags["lyrics"]
        Song.create(
            id=song_id, title=(tags["title"] or path.stem)[:200], prompt=tags["prompt"],
            lyrics=lyrics, genre=genre, mood=mood_read if mood_read in MOODS else "uplifting",
            bpm=bpm, key=tags["key"][:16] or "C major", time_signature="4/4",
            duration_s=round(tags["duration_s"], 3), language="en",
            instrumental=lyrics.strip() in ("", "[Instrumental]"), seed=0, engine="unknown",
            lyrics_provider="unknown", file=relative, format=_EXTENSIONS[path.suffix.lower()],
            variant_of=match["id"] if match and match["take"] else None,
            created_at=path.stat().st_mtime or time.time())
        added += 1
    log.warning("library re-indexed: %d song(s) added from their tags, %d file(s) skipped",
                added, skipped)
    return added, skipped
