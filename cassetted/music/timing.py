"""When each lyric line is sung, for any engine: what library/lrc.py asks music for.

An engine whose plugin declares `timed_lyrics` answers exactly (its `timing` hook). For the
others (ACE-Step, local or remote) this gives a documented estimate: the lyrics' sections
are laid out over the song's bars at the spec's bpm as the built-in form would lay them out
(intro first, outro last), each lyric section sung once, its lines spread evenly over its
bars. Structure tags ([Verse], [Chorus]) are never sung lines.
"""

from __future__ import annotations

from cassetted.contract.schemas import SongSpec
from cassetted.music.builtin.arrange import meter_of
from cassetted.music.builtin.form import is_instrumental, lyric_sections, plan_form
from cassetted.music.plugin import TimedLine
from cassetted.music.registry import ENGINE_PLUGINS


def timed_lines(spec: SongSpec, engine: str) -> list[TimedLine]:
    """(start in seconds, text) of each sung line, in order; [] for an instrumental.

    `engine` is the name the song was rendered by (a Song row's `engine`); an engine that is
    not installed any more gets the estimate."""
    if is_instrumental(spec.lyrics, spec.instrumental):
        return []
    plugin = ENGINE_PLUGINS.get(engine)
    if plugin is not None and plugin.capabilities.timed_lyrics:
        exact = plugin.timed_lines(spec)
        if exact is not None:
            return exact
    return estimated_lines(spec)


def estimated_lines(spec: SongSpec) -> list[TimedLine]:
    """An estimate for engines that lay a song out themselves (see the module docstring)."""
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
