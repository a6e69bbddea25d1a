"""Song form: which sections, in what order, how many bars each.

The order comes from the lyrics' section tags when there are any (so the chorus plays when
the chorus is sung), otherwise from a standard instrumental form. The lengths are then
fitted so the sections fill exactly the bars that the requested duration holds.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any

SECTION_KINDS = ("intro", "verse", "chorus", "bridge", "instrumental", "outro")

# Relative loudness/density of each section kind (the arranger scales parts by it).
ENERGY: dict[str, float] = {
    "intro": 0.55, "verse": 0.72, "chorus": 1.0, "bridge": 0.8, "instrumental": 0.9, "outro": 0.55,
}
_NOMINAL_BARS = {"intro": 4, "verse": 8, "chorus": 8, "bridge": 8, "instrumental": 8, "outro": 4}

_TAG = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_ALIASES = {
    "intro": "intro", "verse": "verse", "pre-chorus": "verse", "prechorus": "verse",
    "chorus": "chorus", "hook": "chorus", "refrain": "chorus", "post-chorus": "chorus",
    "bridge": "bridge", "break": "bridge", "interlude": "instrumental", "solo": "instrumental",
    "instrumental": "instrumental", "outro": "outro", "coda": "outro", "ending": "outro",
}
DEFAULT_FORM = ("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus", "outro")


@dataclass(frozen=True)
class Section:
    kind: str
    start_bar: int
    bars: int
    index: int          # how many sections of this kind came before (0 = first verse)

    @property
    def energy(self) -> float:
        return ENERGY[self.kind]


def lyric_sections(lyrics: str) -> list[tuple[str, list[str]]]:
    """[(kind, lyric lines)] from tagged lyrics; untagged text counts as one verse."""
    sections: list[tuple[str, list[str]]] = []
    for raw in lyrics.splitlines():
        m = _TAG.match(raw)
        if m:
            name = m.group(1).strip().lower()
            name = re.sub(r"\s*\d+$", "", name)          # "Verse 2" -> "verse"
            kind = _ALIASES.get(name, _ALIASES.get(name.split()[0] if name else "", "verse"))
            sections.append((kind, []))
        elif raw.strip():
            if not sections:
                sections.append(("verse", []))
            sections[-1][1].append(raw.strip())
    return sections


def is_instrumental(lyrics: str, instrumental_flag: bool) -> bool:
    secs = lyric_sections(lyrics)
    return instrumental_flag or not any(lines for _, lines in secs)


def plan_form(kinds: list[str] | tuple[str, ...], total_bars: int) -> list[Section]:
    """Fit `kinds` into exactly `total_bars` bars.

    Too much room: the middle is extended with an instrumental break and another chorus
    (as a band would), then lengths are stretched in multiples of two bars. Too little:
    lengths shrink proportionally and, if still too many sections, inner ones are dropped.
    """
    kinds = list(kinds) or list(DEFAULT_FORM)
    total_bars = max(1, total_bars)
    if "intro" not in kinds:
        kinds.insert(0, "intro")
    if kinds[-1] != "outro":
        kinds.append("outro")

    # Grow the form while it would have to be stretched more than 1.5x.
    while sum(_NOMINAL_BARS[k] for k in kinds) * 1.5 < total_bars and len(kinds) < 40:
        kinds[-1:-1] = ["instrumental", "chorus"] if "chorus" in kinds else ["instrumental", "verse"]

    # Shrink: drop inner sections (keep the last chorus) while there are more than bars.
    while len(kinds) > total_bars and len(kinds) > 1:
        drop = next((i for i in range(1, len(kinds) - 1) if kinds[i] in ("bridge", "instrumental")),
                    1 if len(kinds) > 2 else 0)
        del kinds[drop]

    nominal = [_NOMINAL_BARS[k] for k in kinds]
    scale = total_bars / sum(nominal)
    step = 2 if total_bars >= 4 * len(kinds) else 1
    bars = [max(step, round(n * scale / step) * step) for n in nominal]
    # Settle rounding on the longest sections first, keeping every section >= 1 bar.
    diff = total_bars - sum(bars)
    order = sorted(range(len(bars)), key=lambda i: -bars[i])
    i = 0
    while diff != 0 and i < 10_000:
        j = order[i % len(order)]
        delta = max(-step, min(step, diff)) if abs(diff) >= step else diff
        if bars[j] + delta >= 1:
            bars[j] += delta
            diff -= delta
        i += 1

    sections: list[Section] = []
    start = 0
    seen: dict[str, int] = {}
    for kind, n in zip(kinds, bars, strict=True):
        sections.append(Section(kind=kind, start_bar=start, bars=n, index=seen.get(kind, 0)))
        seen[kind] = seen.get(kind, 0) + 1
        start += n
    return sections


def sung_phrases(arr: Any, lyrics: str) -> list[tuple[str, list[Any]]]:
    """(lyric line, its vocal notes) for every sung phrase of an arrangement, in order.

    A phrase is two bars of a section with lyrics: its line is the section's next line (they
    repeat when the section is longer than its lines). The voice sings a line on these
    notes, and `cassetted.library.lrc` times the line at the first of them: one rule for both.
    """
    by_kind: dict[str, list[list[str]]] = {}
    for kind, lines in lyric_sections(lyrics):
        by_kind.setdefault(kind, []).append(lines)
    notes = sorted(arr.parts.get("vocal", []), key=lambda note: note.start)
    starts = [note.start for note in notes]
    bpb = arr.meter.beats_per_bar
    out: list[tuple[str, list[Any]]] = []
    for section in arr.sections:
        groups = by_kind.get(section.kind)
        lines = groups[section.index % len(groups)] if groups else []
        if not lines:
            continue
        end = (section.start_bar + section.bars) * bpb
        for k, bar_in_section in enumerate(range(0, section.bars, 2)):
            start = (section.start_bar + bar_in_section) * bpb
            i = bisect.bisect_left(starts, start - 1e-9)
            j = bisect.bisect_left(starts, min(start + 2 * bpb, end) - 1e-9)
            if j > i:
                out.append((lines[k % len(lines)], notes[i:j]))
    return out
