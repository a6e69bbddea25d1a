"""`cassetted generate`: one song straight to a file, with no broker and no job queue."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cassetted import audio
from cassetted.config import Settings
from cassetted.contract.schemas import SongRequest
from cassetted.jobs import spec as spec_module
from cassetted.jobs.pipeline import produce, save
from cassetted.lyrics.service import LyricsService
from cassetted.music.registry import EngineRegistry
from cassetted.store.credentials import CredentialStore
from cassetted.store.database import open_database
from cassetted.voice import intake


def format_for(path: Path) -> str:
    """The audio format named by the file's extension (FLAC when it names none we know)."""
    suffix = path.suffix.lower()
    for fmt, extension in audio.FORMATS.items():
        if extension == suffix:
            return fmt
    return "flac"


def generate_file(settings: Settings, request: SongRequest, out: Path,
                  progress: Callable[[float, str], None]) -> dict[str, Any]:
    """Produce `request` into `out`; returns the resolved parameters for the user to see."""
    if request.seed is None:
        request = request.model_copy(update={"seed": spec_module.new_seed()})
    spec = spec_module.resolve(request, settings.generation, None, intake.read_prompt)
    url = settings.storage.database_url
    open_database(url.get_secret_value() if url else None, settings.state_dir)  # stored keys
    credentials = CredentialStore.open(settings.state_dir)
    engine = EngineRegistry(settings, credentials).get(request.engine)
    lyrics = LyricsService(settings, credentials)
    spec, (song, *_), provider = produce(spec, lyrics.writer_for(request), engine,
                                   lambda state, f: progress(f, state.value), threading.Event())
    path = save(song, spec, out, format_for(out))
    return {"file": str(path), "lyrics_provider": provider, "engine": engine.name,
            **spec.model_dump(exclude={"lyrics", "style"}), "lyrics": spec.lyrics}
