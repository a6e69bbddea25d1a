"""Timed lyrics (LRC): when each sung line starts, for karaoke mirrors and music players.

A mirror that scrolls the lyrics needs to know *when* each line is sung, not just the text.
For the built-in engine the answer is exact: its arrangement is deterministic for a spec,
so the same arranger the engine runs (`music._arrange.arrange`, read-only here) tells
where the voice sings. Each section with lyric lines is sung in two-bar phrases, phrase
k on line k of the section's lines (cycling); a line starts at its phrase's first sung note.
Lines that do not fit a section are not sung and not listed; lines a section repeats are
listed again, as sung.

For engines whose layout we cannot see (ACE-Step, local or remote), `timed_lines` gives a
documented estimate: the lyrics' sections are laid out over the song's bars at the spec's
bpm as the built-in form would lay them out (intro first, outro last), each lyric section
sung once, its lines spread evenly over its bars.

Structure tags ([Verse], [Chorus]) are never sung lines: they are skipped.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from cassetted.contract.schemas import SongSpec

log = logging.getLogger(__name__)

BUILTIN_ENGINES = frozenset({"builtin"})
SIDECAR_SUFFIX = ".lrc"
ARTIST = "cassetted"  # the artist every song file is tagged with (audio.Tags)

TimedLine = tuple[float, str]
_STAMP = re.compile(r"\[(\d+):(\d{1,2}(?:\.\d+)?)\]")


def timed_lines(spec: SongSpec, engine: str = "builtin") -> list[TimedLine]:
    """(start in seconds, text) of each sung line, in order; [] for an instrumental."""
    from cassetted.music.builtin.form import is_instrumental

    if is_instrumental(spec.lyrics, spec.instrumental):
        return []
    if engine in BUILTIN_ENGINES:
        return _builtin_lines(spec)
    return _estimated_lines(spec)


def _builtin_lines(spec: SongSpec) -> list[TimedLine]:
    """Exact: the engine's own arrangement, and the first vocal note of every phrase."""
    import numpy as np

    from cassetted.music.builtin.arrange import arrange
    from cassetted.music.builtin.form import sung_phrases

    # The arrangement's generator, seeded as BuiltinEngine.generate seeds it (the first of
    # four streams spawned from the spec's seed).
    arrangement_seed = np.random.SeedSequence(spec.seed).spawn(4)[0]
    arr = arrange(spec.genre, spec.mood, spec.bpm, spec.key, spec.time_signature, spec.duration_s,
                  spec.lyrics, spec.instrumental, np.random.default_rng(arrangement_seed))
    beat_s = 60.0 / spec.bpm
    return [(float(notes[0].start) * beat_s, line) for line, notes in sung_phrases(arr, spec.lyrics)]


def _estimated_lines(spec: SongSpec) -> list[TimedLine]:
    """An estimate for engines that lay a song out themselves (see the module docstring)."""
    from cassetted.music.builtin.arrange import meter_of
    from cassetted.music.builtin.form import lyric_sections, plan_form

    sections = lyric_sections(spec.lyrics)
    bar_s = 60.0 / spec.bpm * meter_of(spec.time_signature).beats_per_bar
    bars = max(1, int(spec.duration_s / bar_s))
    plan = plan_form([kind for kind, _ in sections], bars)
    out: list[TimedLine] = []
    next_lyric = 0
    for planned in plan:
        # The lyric sections are an ordered subsequence of the plan (which may add an intro,
        # an outro and a longer middle, or drop inner sections): match them greedily.
        match = next((j for j in range(next_lyric, len(sections))
                      if sections[j][0] == planned.kind), None)
        if match is None:
            continue
        next_lyric = match + 1
        lines = sections[match][1]
        for j, line in enumerate(lines):
            bar = planned.start_bar + j * planned.bars / len(lines)
            out.append((bar * bar_s, line))
    return out


# ----------------------------------------------------------------------------- the format


def _stamp(seconds: float) -> str:
    centis = int(round(max(0.0, seconds) * 100))
    minutes, centis = divmod(centis, 6000)
    return f"{minutes:02d}:{centis // 100:02d}.{centis % 100:02d}"


def to_lrc(lines: list[TimedLine], title: str, artist: str = ARTIST,
           duration_s: float | None = None) -> str:
    """Standard LRC: [ti:], [ar:], [length:] tags, then one [mm:ss.xx] line per sung line."""
    head = [f"[ti:{_tag_text(title)}]", f"[ar:{_tag_text(artist)}]"]
    if duration_s is not None:
        minutes, seconds = divmod(int(round(duration_s)), 60)
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
