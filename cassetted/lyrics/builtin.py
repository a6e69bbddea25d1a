"""The offline lyric writer: real verse/chorus structure, rhymes and syllable counts checked
against CMUdict, the theme taken from the prompt. No model, deterministic for a seed.

How a line is made: a template from `_vocab` (written to read well with any noun phrase)
gets the topic, a mood adjective or verb, a genre image, and a rhyme word at the end. Rhyme
words come from families grouped by CMUdict's rhyming part, so ABAB/AABB schemes hold; a
line is only kept when its syllable count is in the genre's range.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

from cassetted.contract.schemas import GENRES, MOODS, SongSpec
from cassetted.lyrics import _vocab as V
from cassetted.lyrics._structure import (
    INSTRUMENTAL,
    Section,
    line_syllables,
    phones,
    plan_sections,
    rhymes,
    style_caption,
)
from cassetted.lyrics.base import LyricsError, LyricsResult
from cassetted.lyrics.safety import is_child_safe

_POSSESSIVES = {"my", "our", "your"}
_MAX_TOPIC_WORDS = 2


@dataclass(frozen=True)
class Topic:
    """The theme as a noun phrase: `phrase` for mid-line use ("my cat"), `head` for rhyme."""

    phrase: str
    head: str
    words: tuple[str, ...]


def extract_topic(prompt: str) -> Topic | None:
    """The theme words of a prompt: after "about" when present, else its content words.

    Genre, mood and placement words ("for the living room") are not a theme. Only plain
    words survive, so URLs, markup or instructions in the prompt never reach the lyrics.
    """
    # Links, markup and dotted names are never a theme: drop them before looking for words.
    text = re.sub(r"\S*(?:://|www\.)\S*|<[^>]*>|\S+\.\w\S*", " ", prompt).strip()
    about = re.search(r"\b(?:about|of|on)\s+(.+)", text, re.IGNORECASE)
    if about:
        text = re.split(r"[.,;!?]|\b(?:for|in|with|that|which|and make|please)\b", about.group(1),
                        flags=re.IGNORECASE)[0]
    tokens = re.findall(r"[A-Za-z][A-Za-z'’]*", text)
    skip = V.STOP_WORDS | set(GENRES) | set(MOODS) | {"hip", "hop", "rap", "happy", "sad"}
    possessive = ""
    chosen: list[str] = []
    for i, token in enumerate(tokens):
        low = token.lower().replace("’", "'")
        if low.endswith("'s"):
            low = low[:-2]
        if (low in skip or len(low) < 2 or len(low) > 20 or not is_child_safe(low)
                or (not phones(low) and not token[0].isupper())):
            if chosen:
                break
            if low in _POSSESSIVES:
                possessive = low
            continue
        proper = token[0].isupper() and (i > 0 or about is not None)
        chosen.append(token if proper else low)
        if len(chosen) == _MAX_TOPIC_WORDS:
            break
    if not chosen:
        return None
    noun = " ".join(chosen)
    if possessive:
        phrase = f"{possessive} {noun}"
    elif chosen[0][0].isupper():
        phrase = noun
    else:
        phrase = f"the {noun}"
    return Topic(phrase=phrase, head=chosen[-1].lower(), words=tuple(w.lower() for w in chosen))


@lru_cache(maxsize=1)
def _families() -> dict[str, tuple[str, ...]]:
    """Rhyme families over END_WORDS, keyed by the rhyming part of each word's first
    pronunciation; a family with fewer than two words is useless and dropped."""
    import pronouncing

    groups: dict[str, list[str]] = defaultdict(list)
    for word in V.END_WORDS:
        found = phones(word)
        if found:
            groups[pronouncing.rhyming_part(found[0])].append(word)
    return {part: tuple(words) for part, words in groups.items() if len(words) >= 2}


def _sentence(line: str) -> str:
    line = re.sub(r"\ba ([aeiouAEIOU])", r"an \1", line)
    return line[:1].upper() + line[1:]


class _Writer:
    """One song's worth of state: the random stream, words and lines already used."""

    def __init__(self, spec: SongSpec, topic: Topic | None) -> None:
        self.spec = spec
        self.rng = random.Random(f"builtin:{spec.seed}:{spec.genre}:{spec.mood}:{spec.prompt}")
        if topic is None:
            phrase = self.rng.choice(V.DEFAULT_TOPICS[spec.mood])
            topic = Topic(phrase=phrase, head=phrase.split()[-1], words=(phrase.split()[-1],))
        self.topic = topic
        self.lo, self.hi = V.SYLLABLE_RANGE[spec.genre]
        self.used_ends: set[str] = {topic.head}
        self.used_lines: set[str] = set()
        self.used_templates: set[str] = set()
        self.families = _families()

    # -- words -------------------------------------------------------------------------

    def _fill(self, template: str, end: str) -> str:
        adjs = self.rng.sample(V.ADJECTIVES[self.spec.mood], 2)
        verbs = self.rng.sample(V.VERBS[self.spec.mood], 2)
        np = self.topic.phrase
        return _sentence(template.format(
            np=np, NP=np[:1].upper() + np[1:], adj=adjs[0], adj2=adjs[1], verb=verbs[0],
            verb2=verbs[1], image=self.rng.choice(V.IMAGES[self.spec.genre]), end=end))

    def _pick_families(self, count: int, need: int) -> list[str]:
        """`count` distinct rhyme families that still have `need` unused words each."""
        usable = [part for part, words in sorted(self.families.items())
                  if sum(w not in self.used_ends for w in words) >= need]
        if len(usable) < count:
            raise LyricsError("builtin ran out of rhymes")  # cannot happen with END_WORDS' size
        return self.rng.sample(usable, count)

    def _take_end(self, family: str) -> str:
        free = [w for w in self.families[family] if w not in self.used_ends]
        word = self.rng.choice(free)
        self.used_ends.add(word)
        return word

    # -- lines -------------------------------------------------------------------------

    def _line(self, templates: tuple[str, ...], end: str) -> str:
        """A filled template in the syllable range, never a line used before."""
        order = list(templates)
        self.rng.shuffle(order)
        order.sort(key=lambda t: t in self.used_templates)  # fresh templates first
        fallback = None
        for _attempt in range(3):
            for template in order:
                line = self._fill(template, end)
                if line in self.used_lines:
                    continue
                if self.lo <= line_syllables(line) <= self.hi:
                    self.used_templates.add(template)
                    self.used_lines.add(line)
                    return line
                fallback = fallback or line
        # A very long topic may not fit any template: take a plain line instead.
        if templates is not V.VERSE_PLAIN:
            return self._line(V.VERSE_PLAIN, end)
        if fallback is None:
            raise LyricsError("builtin could not write a fresh line")
        self.used_lines.add(fallback)
        return fallback

    def _section(self, section: Section, scheme: str, pools: list[tuple[str, ...]]) -> list[str]:
        if section.lines <= 2:
            scheme = "AA"  # two lines of ABAB would not rhyme at all
        letters = sorted(set(scheme[: section.lines]))
        per_letter = {letter: scheme[: section.lines].count(letter) for letter in letters}
        families = dict(zip(letters, self._pick_families(len(letters), max(per_letter.values())),
                            strict=True))
        return [self._line(pools[i % len(pools)], self._take_end(families[letter]))
                for i, letter in enumerate(scheme[: section.lines])]

    def chorus(self, lines: int) -> list[str]:
        """AABB; the first line names the topic, ending on it when a rhyme for it exists."""
        partners = [w for w in V.END_WORDS if w not in self.used_ends and rhymes(w, self.topic.head)]
        if partners and len(self.topic.words) <= 2:
            first = self._line(V.CHORUS_ENDS_ON_TOPIC, end="")
            second_end = self.rng.choice(partners)
            self.used_ends.add(second_end)
            second = self._line(V.CHORUS_TOPIC + V.CHORUS_PLAIN, second_end)
            head = [first, second]
            rest = self._section(Section("Chorus", lines - 2), "AA", [V.CHORUS_PLAIN]) if lines > 2 else []
            return head + rest
        return self._section(Section("Chorus", lines), "AABB",
                             [V.CHORUS_TOPIC, V.CHORUS_PLAIN, V.CHORUS_PLAIN, V.CHORUS_TOPIC])

    def song(self) -> tuple[str, str]:
        """(lyrics, title) following the section plan for the duration."""
        verse_scheme = self.rng.choice(("ABAB", "AABB"))
        chorus: list[str] | None = None
        out: list[str] = []
        for section in plan_sections(self.spec.duration_s):
            if section.tag == "Chorus":
                chorus = chorus or self.chorus(section.lines)
                lines = chorus[: section.lines]
            elif section.tag == "Verse":
                lines = self._section(section, verse_scheme,
                                      [V.VERSE_TOPIC, V.VERSE_PLAIN, V.VERSE_PLAIN, V.VERSE_TOPIC])
            elif section.tag == "Bridge":
                lines = self._section(section, "AABB", [V.BRIDGE])
            elif section.tag == "Outro":
                lines = self._section(section, "AA", [V.OUTRO, V.VERSE_PLAIN])
            else:
                lines = self._section(section, "AA", [V.INTRO])
            out.append(f"[{section.tag}]\n" + "\n".join(lines))
        return "\n\n".join(out), self.title(chorus or [])

    def title(self, chorus: list[str]) -> str:
        """"<Topic> and the <rhyme word of the hook>": short, and it names the theme."""
        name = re.sub(r"^(the|my|our|your) ", "", self.topic.phrase)
        ends = [re.findall(r"[A-Za-z]+", line)[-1] for line in chorus if line]
        end = next((w for w in ends if w.lower() not in self.topic.words), None)
        words = f"{name} and the {end}" if end else name
        return " ".join(w[:1].upper() + w[1:] for w in words.split())


class BuiltinLyrics:
    """Offline lyrics in English; always available, always clean (the chain's last resort)."""

    name = "builtin"

    def write(self, spec: SongSpec) -> LyricsResult:
        notes: tuple[str, ...] = ()
        if spec.language != "en":
            notes = (f"builtin lyrics are English only; language {spec.language!r} was requested",)
        writer = _Writer(spec, extract_topic(spec.prompt))
        if spec.instrumental:
            name = re.sub(r"^(the|my|our|your) ", "", writer.topic.phrase)
            title = " ".join(w[:1].upper() + w[1:] for w in name.split())
            return LyricsResult(title=title, lyrics=INSTRUMENTAL, style=style_caption(spec),
                                provider=self.name, notes=notes)
        lyrics, title = writer.song()
        return LyricsResult(title=title, lyrics=lyrics, style=style_caption(spec),
                            provider=self.name, notes=notes)


def create(name: str, section: object, api_key: object) -> BuiltinLyrics:
    """Plugin factory (cassetted.lyrics.plugins.BUILTIN): needs no settings and no key."""
    return BuiltinLyrics()
