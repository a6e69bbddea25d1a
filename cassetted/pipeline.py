"""One song, start to finish, in a worker thread: lyrics -> music -> loudness -> file.

The pipeline is pure with respect to the daemon: it reads no MQTT and writes no rows. It
receives a resolved spec and reports progress; the job runner owns states and storage.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cassetted.lyrics.base import LyricsResult
from cassetted.music.base import Audio, Cancelled, MusicEngine
from cassetted.schemas import JobState, SongSpec

# report(state, overall progress 0..1)
Reporter = Callable[[JobState, float], None]
LyricsWriter = Callable[[SongSpec], LyricsResult]

# Share of the overall progress each stage covers.
_LYRICS_END = 0.05
_MUSIC_END = 0.9


@dataclass(frozen=True)
class Produced:
    """What a finished pipeline hands back to the job runner."""

    spec: SongSpec
    lyrics_provider: str
    engine: str
    relative_file: str
    format: str


def _audio():  # type: ignore[no-untyped-def]
    """cassetted.audio, imported on first use: it pulls in SciPy (seconds), which only the
    processes that produce songs need, not the daemon's event loop."""
    from cassetted import audio

    return audio


def slugify(text: str, limit: int = 48) -> str:
    """A file-name-safe rendering of a title (ASCII, lowercase, dashes)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "song"


def produce(
    spec: SongSpec,
    write_lyrics: LyricsWriter,
    engine: MusicEngine,
    report: Reporter,
    cancel: threading.Event,
) -> tuple[SongSpec, Audio, str]:
    """Lyrics then music then loudness: the finished spec, the audio, who wrote the lyrics."""

    def checkpoint(state: JobState, fraction: float) -> None:
        if cancel.is_set():
            raise Cancelled()
        report(state, fraction)

    checkpoint(JobState.writing_lyrics, 0.0)
    if spec.instrumental:
        written = LyricsResult(title="", lyrics="[Instrumental]", style="", provider="none")
    elif spec.lyrics:
        written = LyricsResult(title="", lyrics=spec.lyrics, style="", provider="request")
    else:
        written = write_lyrics(spec)
    title = spec.title or written.title or _title_from_prompt(spec)
    spec = spec.model_copy(update={"title": title, "lyrics": written.lyrics, "style": written.style})

    checkpoint(JobState.composing, _LYRICS_END)
    span = _MUSIC_END - _LYRICS_END
    song = engine.generate(
        spec, lambda f, _note=None: checkpoint(JobState.composing, _LYRICS_END + span * f))
    checkpoint(JobState.encoding, _MUSIC_END)
    return spec, _audio().normalize_loudness(song), written.provider


def save(song: Audio, spec: SongSpec, path: Path, fmt: str) -> Path:
    """Encode and tag the file that players will read."""
    audio = _audio()
    return audio.encode(song, path, fmt, audio.Tags(
        title=spec.title, genre=spec.genre, lyrics=spec.lyrics, bpm=spec.bpm, key=spec.key,
        comment=spec.prompt, date=time.strftime("%Y-%m-%d"),
    ))


class Pipeline:
    """Runs one job's production into the library. Thread-safe: no per-song state."""

    def __init__(self, library_dir: Path, fmt: str = "flac") -> None:
        self.library_dir = library_dir
        self.format = fmt

    def run(
        self,
        song_id: str,
        spec: SongSpec,
        write_lyrics: LyricsWriter,
        engine: MusicEngine,
        report: Reporter,
        cancel: threading.Event,
    ) -> Produced:
        spec, song, provider = produce(spec, write_lyrics, engine, report, cancel)
        report(JobState.encoding, 0.95)
        relative = Path(f"{slugify(spec.title)}-{song_id}{_audio().FORMATS[self.format]}")
        save(song, spec, self.library_dir / relative, self.format)
        report(JobState.encoding, 1.0)
        return Produced(spec=spec, lyrics_provider=provider, engine=engine.name,
                        relative_file=relative.as_posix(), format=self.format)


def _title_from_prompt(spec: SongSpec) -> str:
    words = spec.prompt.split()[:6]
    return " ".join(words).strip().title() if words else f"{spec.mood.title()} {spec.genre.title()}"
