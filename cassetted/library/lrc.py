"""Timed lyrics (LRC): when each sung line starts, for karaoke mirrors and music players.

A mirror that scrolls the lyrics needs to know *when* each line is sung, not just the text.
The music stage answers (cassetted.music.timing): exactly for an engine whose plugin
declares `timed_lyrics` (the built-in one: its arrangement is deterministic for a spec),
as a documented estimate for engines whose layout we cannot see (ACE-Step). Lines that do
not fit a section are not sung and not listed; lines a section repeats are listed again.
This module writes and reads the LRC format and the sidecar file.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from cassetted.contract.schemas import SongSpec
from cassetted.music import timing
from cassetted.music.plugin import TimedLine as TimedLine

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".lrc"
ARTIST = "cassetted"  # the artist every song file is tagged with (audio.Tags)

_STAMP = re.compile(r"\[(\d+):(\d{1,2}(?:\.\d+)?)\]")


def timed_lines(spec: SongSpec, engine: str = "builtin") -> list[TimedLine]:
    """(start in seconds, text) of each sung line, in order; [] for an instrumental.

    Exact when the engine's plugin declares `timed_lyrics`, else an estimate (see
    cassetted.music.timing)."""
    return timing.timed_lines(spec, engine)


# ----------------------------------------------------------------------------- the format


def _stamp(seconds: float) -> str:
    centis = round(max(0.0, seconds) * 100)
    minutes, centis = divmod(centis, 6000)
    return f"{minutes:02d}:{centis // 100:02d}.{centis % 100:02d}"


def to_lrc(lines: list[TimedLine], title: str, artist: str = ARTIST,
           duration_s: float | None = None) -> str:
    """Standard LRC: [ti:], [ar:], [length:] tags, then one [mm:ss.xx] line per sung line."""
    head = [f"[ti:{_tag_text(title)}]", f"[ar:{_tag_text(artist)}]"]
    if duration_s is not None:
        minutes, seconds = divmod(round(duration_s), 60)
        head.append(f"[length:{minutes:02d}:{seconds:02d}]")
    head.append(f"[re:{ARTIST}]")
    body = [f"[{_stamp(t)}]{' '.join(text.split())}" for t, text in lines]
    return "\n".join(head + body) + "\n"


def _tag_text(text: str) -> str:
    """An ID tag's value on one line, without the brackets that would end it early."""
    return " ".join(text.replace("[", "(").replace("]", ")").split())


def parse_lrc(text: str) -> list[TimedLine]:
    """The timed lines of an LRC document (ID tags skipped; several stamps on a line each count)."""
    out: list[TimedLine] = []
    for raw in text.splitlines():
        stamps: list[float] = []
        rest = raw.strip()
        while (m := _STAMP.match(rest)) is not None:
            stamps.append(int(m.group(1)) * 60 + float(m.group(2)))
            rest = rest[m.end():]
        out += [(t, rest.strip()) for t in stamps]
    return sorted(out, key=lambda line: line[0])


# ----------------------------------------------------------------------------- the sidecar


def sidecar_path(audio_path: Path) -> Path:
    """Where players look for a song's timed lyrics: same folder, same stem, `.lrc`."""
    return audio_path.with_suffix(SIDECAR_SUFFIX)


def write_sidecar(audio_path: Path, spec: SongSpec, engine: str) -> Path | None:
    """Write the song's LRC next to its audio file; None (and nothing written) when nothing
    is sung. Written under a temporary name and renamed, like the audio.

    Best effort: a song whose sidecar could not be written is still a finished song (the
    display falls back to computing the timings), so this logs and never raises."""
    path = sidecar_path(audio_path)
    tmp = path.with_name(f".{path.name}.part")
    try:
        lines = timed_lines(spec, engine)
        if not lines:
            return None
        tmp.write_text(to_lrc(lines, spec.title, ARTIST, spec.duration_s), encoding="utf-8")
        os.chmod(tmp, 0o644)  # read by MPD clients and other players, like the audio
        tmp.replace(path)
    except Exception:
        log.exception("no timed lyrics for %s", audio_path.name)
        tmp.unlink(missing_ok=True)
        return None
    return path
