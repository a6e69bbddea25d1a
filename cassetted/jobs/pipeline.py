"""One song, start to finish, in a worker thread: lyrics -> music -> loudness -> file.

The pipeline is pure with respect to the daemon: it reads no MQTT and writes no rows. It
receives a resolved spec and reports progress; the job runner owns states and storage.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cassetted.contract import errors
from cassetted.contract.schemas import JobState, SongSpec
from cassetted.library import lrc
from cassetted.library.incoming import incoming_dir
from cassetted.lyrics.base import LyricsResult, LyricsWriter
from cassetted.music.base import (
    Audio,
    Cancelled,
    LyricsWritingEngine,
    MusicEngine,
    NeedsLyrics,
    ProgressCallback,
    TaskEngine,
)
from cassetted.music.registry import capabilities_of
from cassetted.music.task import EngineTask

# report(state, overall progress 0..1)
Reporter = Callable[[JobState, float], None]

# Share of the overall progress each stage covers.
_LYRICS_END = 0.05
_MUSIC_END = 0.9


@dataclass(frozen=True)
class TaskOrder:
    """A request's task beyond text2music, as the producing process needs it."""

    kind: str = "text2music"
    source_path: str | None = None
    source_bpm: float | None = None
    cover_strength: float | None = None
    repaint_start_s: float | None = None
    repaint_end_s: float | None = None
    steps: int | None = None
    shift: float | None = None
    variants: int = 1
    lora: str | None = None


@dataclass(frozen=True)
class Produced:
    """What a finished pipeline hands back to the job runner."""

    spec: SongSpec
    lyrics_provider: str
    engine: str
    relative_file: str
    format: str
    variant_files: tuple[str, ...] = ()  # takes 2..n
    seeds: tuple[int, ...] = ()  # the seed of each take as the engine rendered it
    notes: tuple[str, ...] = ()  # what the engine wants the household to know
    worker: str | None = None  # the worker that made it (set by whoever ran the pipeline)
    song_id: str | None = None  # set when the song's id is not the one asked for (cluster)

    def seed_of(self, take: int) -> int:
        """The seed that reproduces take `take` (0 = the song itself)."""
        if take < len(self.seeds):
            return self.seeds[take]
        return (self.spec.seed + take) % 2**32


# cassetted.audio is imported inside the functions that use it: it pulls in SciPy (seconds),
# which only the processes that produce songs need, not the daemon's event loop.


def _variant_progress(progress: ProgressCallback, i: int, n: int) -> ProgressCallback:
    """Variant i of n reports its share of the overall progress."""
    def report(fraction: float, note: str | None = None) -> None:
        progress((i + fraction) / n, note)
    return report


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
    order: TaskOrder | None = None,
) -> tuple[SongSpec, list[Audio], str]:
    """Lyrics then music then loudness: the finished spec, the audio of each take (one unless
    the order asks for variants), who wrote the lyrics."""

    def checkpoint(state: JobState, fraction: float) -> None:
        if cancel.is_set():
            raise Cancelled()
        report(state, fraction)

    checkpoint(JobState.writing_lyrics, 0.0)
    order = order or TaskOrder()
    asked_title = spec.title
    capabilities = capabilities_of(engine)
    if spec.instrumental:
        written = LyricsResult(title="", lyrics="[Instrumental]", style="", provider="none")
    elif spec.lyrics:
        given_by = "request" if order.kind == "text2music" else "source"
        written = LyricsResult(title="", lyrics=spec.lyrics, style="", provider=given_by)
    elif capabilities.writes_lyrics and cast("LyricsWritingEngine", engine).writes_lyrics(spec, order.kind):
        # The engine's own model writes them while it composes (ACE-Step's simple mode).
        written = LyricsResult(title="", lyrics="", style="", provider=engine.name)
    else:
        written = write_lyrics(spec)
    title = spec.title or written.title or _title_from_prompt(spec)
    spec = spec.model_copy(update={"title": title, "lyrics": written.lyrics, "style": written.style})

    checkpoint(JobState.composing, _LYRICS_END)
    span = _MUSIC_END - _LYRICS_END

    def progress(fraction: float, _note: str | None = None) -> None:
        checkpoint(JobState.composing, _LYRICS_END + span * fraction)

    try:
        takes = _compose(engine, spec, progress, order)
    except NeedsLyrics as why:  # the engine's model could not write them after all
        written = write_lyrics(spec)
        spec = spec.model_copy(update={"title": asked_title or written.title or spec.title,
                                       "lyrics": written.lyrics, "style": written.style})
        note = f"{engine.name} could not write the lyrics ({str(why)[:160]}); {written.provider} did"
        takes = [dataclasses.replace(take, notes=(*take.notes, note))
                 for take in _compose(engine, spec, progress, order)]
    if takes[0].rendered is not None:  # the engine chose lyrics, caption or metas itself
        spec = takes[0].rendered.model_copy(update={"title": spec.title, "seed": spec.seed})
    checkpoint(JobState.encoding, _MUSIC_END)
    rendered = round(takes[0].duration_s, 2)
    if abs(rendered - spec.duration_s) > 0.05:  # the engine could not render the length asked
        spec = spec.model_copy(update={"duration_s": rendered})
    from cassetted.audio import normalize_loudness

    return spec, [dataclasses.replace(normalize_loudness(take), seed=take.seed,
                                      notes=take.notes) for take in takes], written.provider


def _compose(engine: MusicEngine, spec: SongSpec, progress: ProgressCallback,
             order: TaskOrder) -> list[Audio]:
    """Plain text2music, or the engine's own task (cover, repaint) when it has tasks; one
    audio per variant."""
    capabilities = capabilities_of(engine)
    supported = capabilities.tasks
    if order.kind not in supported:
        raise errors.Unsupported(f"the {engine.name} engine cannot {order.kind} "
                                 f"(it can: {', '.join(sorted(supported))})", "task")
    if order.lora is not None and not capabilities.loras:
        raise errors.Unsupported(f"the {engine.name} engine takes no LoRA styles", "lora")
    if not capabilities.takes_task:
        # The engine's cover is a render of the changed spec (see its `tasks`); variants
        # are renders with the next seeds, one after the other.
        n = order.variants
        return [engine.generate(spec.model_copy(update={"seed": (spec.seed + i) % 2**32}),
                                _variant_progress(progress, i, n))
                for i in range(n)]
    source = None
    if order.source_path is not None:
        import soundfile

        samples, rate = soundfile.read(order.source_path, dtype="float32", always_2d=True)
        source = Audio(samples, rate)
    task = EngineTask(
        kind=order.kind, source=source, source_bpm=order.source_bpm,  # type: ignore[arg-type]
        cover_strength=1.0 if order.cover_strength is None else order.cover_strength,
        repaint_start_s=order.repaint_start_s or 0.0, repaint_end_s=order.repaint_end_s,
        steps=order.steps, shift=order.shift, variants=order.variants, lora=order.lora)
    return cast("TaskEngine", engine).generate_variants(spec, progress, task)


def save(song: Audio, spec: SongSpec, path: Path, fmt: str) -> Path:
    """Encode and tag the file that players will read."""
    from cassetted import audio

    return audio.encode(song, path, fmt, audio.Tags(
        title=spec.title, genre=spec.genre, lyrics=spec.lyrics, bpm=spec.bpm, key=spec.key,
        comment=spec.prompt, date=time.strftime("%Y-%m-%d"),
    ))


class Pipeline:
    """Runs one job's production into the library's `.incoming/` (see cassetted.library.incoming:
    the job runner moves the files in once the song row is committed). Thread-safe: no
    per-song state."""

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
        order: TaskOrder | None = None,
    ) -> Produced:
        spec, takes, provider = produce(spec, write_lyrics, engine, report, cancel, order)
        from cassetted.audio import FORMATS

        report(JobState.encoding, 0.95)
        files = []
        seeds = tuple(take.seed if take.seed is not None else (spec.seed + i) % 2**32
                      for i, take in enumerate(takes))
        spec = spec.model_copy(update={"seed": seeds[0]})
        for i, take in enumerate(takes):
            suffix = f"-{i + 1}" if i else ""
            relative = Path(f"{slugify(spec.title)}-{song_id}{suffix}"
                            f"{FORMATS[self.format]}")
            take_spec = spec.model_copy(update={"seed": seeds[i]})
            path = save(take, take_spec, incoming_dir(self.library_dir) / relative, self.format)
            lrc.write_sidecar(path, take_spec, engine.name)  # timed lyrics beside the audio
            files.append(relative.as_posix())
        report(JobState.encoding, 1.0)
        return Produced(spec=spec, lyrics_provider=provider, engine=engine.name,
                        relative_file=files[0], format=self.format,
                        variant_files=tuple(files[1:]), seeds=seeds,
                        notes=tuple(dict.fromkeys(n for take in takes for n in take.notes)))


def _title_from_prompt(spec: SongSpec) -> str:
    words = spec.prompt.split()[:6]
    return " ".join(words).strip().title() if words else f"{spec.mood.title()} {spec.genre.title()}"
