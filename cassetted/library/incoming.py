"""Two-phase placement of new song files, so a crash never leaves a file without a row.

Production writes a song's files (audio, `.lrc` sidecar) under `<library>/.incoming/`; the
job runner moves them into the library only after the song row is committed. A process
killed in between leaves them in `.incoming/`, and the next start settles it: files a row
names are moved into place (the commit happened), the rest are an interrupted attempt's
and are deleted. The library itself therefore only ever holds files the database knows.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from cassetted.library import lrc

log = logging.getLogger(__name__)

INCOMING = ".incoming"


def incoming_dir(library_dir: Path) -> Path:
    return library_dir / INCOMING


def place(library_dir: Path, relative_files: list[str]) -> None:
    """Move committed songs' files (and their sidecars) from `.incoming/` into the library."""
    staging = incoming_dir(library_dir)
    for relative in relative_files:
        audio = Path(relative)
        for name in (audio, lrc.sidecar_path(audio)):
            source = staging / name
            if source.exists():
                target = library_dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)


def discard(library_dir: Path, relative_files: list[str]) -> None:
    """Delete files whose row could not be committed (the next attempt writes new ones)."""
    staging = incoming_dir(library_dir)
    for relative in relative_files:
        audio = Path(relative)
        for name in (audio, lrc.sidecar_path(audio)):
            (staging / name).unlink(missing_ok=True)


def pending(library_dir: Path) -> list[str]:
    """Audio files waiting in `.incoming/`, relative to it (sidecars and parts left out)."""
    staging = incoming_dir(library_dir)
    if not staging.is_dir():
        return []
    return sorted(path.relative_to(staging).as_posix() for path in staging.rglob("*")
                  if path.is_file() and not path.name.startswith(".")
                  and path.suffix != lrc.SIDECAR_SUFFIX)


def settle(library_dir: Path, committed: set[str]) -> tuple[list[str], int]:
    """After a crash: place what a row names (`committed`), delete everything else in
    `.incoming/`. Returns the files placed and the number of files deleted."""
    staging = incoming_dir(library_dir)
    if not staging.is_dir():
        return [], 0
    placed = [name for name in pending(library_dir) if name in committed]
    place(library_dir, placed)
    removed = sum(1 for path in staging.rglob("*") if path.is_file())
    shutil.rmtree(staging, ignore_errors=True)
    if placed or removed:
        log.warning("library: %d finished file(s) moved into place, %d left by an interrupted "
                    "song deleted", len(placed), removed)
    return placed, removed
