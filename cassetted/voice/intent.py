"""Natural language → SongRequest, by rules: fast, offline and explainable.

"Hey Google, create a relaxing jazz song for the living room" becomes genre=jazz,
mood=relaxing, room=living_room. Every field comes from a phrase we can point at
(`ParsedIntent.evidence`), nothing is guessed: an unknown room is a warning, not the
nearest room; an out-of-range tempo is a warning, not a clamp. An optional LLM callable
may fill what the rules left empty, never overrule them.

The parse works on one normalised copy of the text in a few linear passes of precompiled
regular expressions (no nested quantifiers), so it stays well under a millisecond and
cannot be made to hang by hostile input; input is capped at MAX_INPUT_CHARS.

Before the passes, a spelling pass reads a word that is one edit away from a genre, mood
or room word as that word ("electonic", "relaxin", "in the kichen"); real English words
are never changed (`_intent_lexicon.TYPO_PROTECTED`), and `ParsedIntent.corrections` says
what was read differently.

Order of the passes, and why:
1. "strong" phrases that cannot be mistaken (room after a preposition, bpm, duration,
   key, instrumental, language after "in", party mode, child-safe, occasion);
2. the topic ("about my cat") runs from its introducer to the next strong phrase or
   punctuation, so "about my cat in the kitchen at 90 bpm" keeps "my cat" only;
3. the weak, single-word cues (genre, mood, "a Spanish song", a room named without
   preposition) are read outside the topic and outside the strong phrases: "a happy
   song about my sad cat" is uplifting.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from cassetted.config import RoomSettings
from cassetted.contract.schemas import (
    GENRES,
    KEY_PATTERN,
    MAX_BPM,
    MAX_DURATION_S,
    MIN_BPM,
    MIN_DURATION_S,
    MOODS,
    SongRequest,
)
from cassetted.voice import lexicon as lex

MAX_INPUT_CHARS = 1000

# The fields of a parse result, in the order `as_dict()` and `cassetted parse` show them.
FIELDS: tuple[str, ...] = (
    "genre", "mood", "room", "bpm", "duration_s", "key", "instrumental", "language",
    "party", "child_safe", "prompt",
)

LlmParser = Callable[[str], Mapping[str, Any]]


@dataclass
class ParsedIntent:
    """A parse: the request, what it was read from, and what could not be used.

    `request.model_fields_set` tells which fields the utterance (or a fallback) set:
    SongRequest's defaults (instrumental=False, ...) are not something the person said,
    and `as_dict()` shows them as None.
    """

    request: SongRequest
    warnings: list[str] = field(default_factory=list)
    evidence: dict[str, str] = field(default_factory=dict)
    unknown_room: str | None = None
    corrections: dict[str, str] = field(default_factory=dict)

    @property
    def given(self) -> frozenset[str]:
        """The FIELDS that have a value from the utterance, the default room or the LLM."""
        return frozenset(name for name in FIELDS if name in self.request.model_fields_set)

    def as_dict(self) -> dict[str, Any]:
        """Exactly FIELDS, None where nothing was said."""
        out: dict[str, Any] = {}
        for name in FIELDS:
            value = getattr(self.request, name) if name in self.request.model_fields_set else None
            out[name] = None if value == "" else value
        return out


# --------------------------------------------------------------------------- patterns

_PREP = r"(?:in|into|inside|for|to|at|on|throughout|through|from|across)"
_DET = r"(?:the|my|our|your|this|his|her|their)"

_NUMWORD = "|".join(sorted([*lex.NUMBER_WORDS, *lex.SCALE_WORDS], key=len, reverse=True))
_NUM = (
    r"(?:\d{1,6}(?:[.,]\d{1,3})?"
    rf"|(?:an?\s+(?=hundred|thousand))?(?:{_NUMWORD})(?!\w)"
    rf"(?:(?:\s+and\s+|[\s\-]+)(?:{_NUMWORD})(?!\w)){{0,6}})"
)

_BPM_RE = re.compile(
    r"(?<!\w)(?:(?:at|around|about|roughly|approximately|with|of)\s+(?:an?\s+)?"
    r"(?:tempo\s+of\s+)?)?"
    rf"(?P<n>{_NUM})\s*(?:bpm|b\.p\.m\.?|beats?\s*(?:per|a|an|/)\s*min(?:ute)?s?)(?!\w)"
    r"|(?<!\w)(?:(?:at|with)\s+(?:an?\s+)?)?tempo\s+(?:of\s+)?(?:around\s+|about\s+)?"
    rf"(?P<t>{_NUM})(?!\s*(?:bpm|b\.p\.m|beats?|hours?|minutes?|mins?|seconds?|secs?)\b)(?!\w)"
)
_DURATION_RE = re.compile(
    r"(?<![\w.,:])(?:(?P<pre>for|lasting|of|about|around|roughly|approximately|under|"
    r"exactly|in|within|after|every|per|beats?)\s+)?"
    rf"(?P<n>{_NUM}|half\s+an?|half|an?)(?P<half>\s+and\s+an?\s+half)?[\s\-]*"
    r"(?P<u>hours?|hrs?|minutes?|mins?|seconds?|secs?)(?!\w)"
    r"(?P<half2>\s+and\s+an?\s+half)?"
    rf"(?:,?\s+(?:and\s+)?(?P<n2>{_NUM})[\s\-]*(?:seconds?|secs?)(?!\w))?"
    r"(?:\s+long)?"
)
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0}
# "2:30 long", "for 1:45", "3:00 minutes": minutes and seconds as a clock shows them; "at 7:30"
# is a time of day.
_CLOCK_DURATION_RE = re.compile(
    r"(?<![\w:.,])(?:(?P<pre>for|lasting|of|about|around|roughly|approximately|exactly|at|in|"
    r"by|until|till|from|to)\s+)?(?P<m>\d{1,2}):(?P<s>[0-5]\d)(?![\w:])"
    r"(?P<u>\s*(?:minutes?|mins?)(?!\w))?(?P<long>\s+long(?!\w))?"
)

_KEY_RE = re.compile(
    r"(?<!\w)(?P<pre>(?:in\s+)?(?:the\s+)?key\s+of\s+|in\s+)?"
    r"(?P<t>[a-g])(?:(?P<acc>[#♯♭]|b(?!\w))|[\s\-]+(?P<accw>sharp|flat)(?!\w))?"
    r"(?:[\s\-]+(?P<mode>major|minor|maj|min)(?!\w))?(?P<kw>\s+key)?(?![\w#♯♭])"
)

_INSTRUMENTAL_RE = re.compile(
    r"(?<!\w)(?:"
    r"(?P<yes>(?:with\s+)?(?:no|zero)[\s\-]+(?:vocals?|lyrics|singing|singers?|voices?|words|vox)"
    r"|without\s+(?:any\s+)?(?:vocals?|lyrics|singing|a\s+singer|voices?|words)"
    r"|(?:just|only)\s+(?:the\s+)?(?:music|instruments)|music\s+only|instrumental(?:ly)?)"
    rf"|(?P<no>with\s+(?:some\s+|an?\s+|the\s+)?(?:(?:{'|'.join(lex.LANGUAGES)}|female|male|"
    r"lead|backing|live|real)\s+)?(?:vocals?|vocalists?|lyrics|singing|singers?|words|voices?)"
    r"|(?:sung|vocal)\s+(?:version|song|track))"
    r")(?!\w)"
)

_LANG_ALT = "|".join(sorted(lex.LANGUAGES, key=len, reverse=True))
_LANGUAGE_STRONG_RE = re.compile(
    rf"(?<!\w)(?:(?:sung|sing|singing|sang|lyrics|words|vocals|written)\s+)?(?:in|en|auf)\s+(?:the\s+)?"
    rf"(?P<a>{_LANG_ALT})(?:\s+language)?(?!\w)"
    rf"|(?<!\w)(?P<b>{_LANG_ALT})[\s\-]+(?:lyrics|vocals|words|language|singing|text)(?!\w)"
)
_LANGUAGE_WORD_RE = re.compile(rf"(?<!\w)(?P<l>{_LANG_ALT})(?!\w)")

_PARTY_RE = re.compile(
    r"(?<!\w)(?:party[\s\-]+mode|everywhere"
    r"|(?:(?:in|through(?:out)?|across|all\s+over)\s+)?(?:the\s+)?(?:whole|entire)\s+"
    r"(?:house|home|flat|apartment|place)"
    r"|(?:(?:in|on|to)\s+)?(?:all|every)\s+(?:the\s+|of\s+the\s+)?(?:rooms?|speakers?|zones?)"
    r"|all\s+over\s+the\s+(?:house|home|place)"
    r"|(?:throughout|across)\s+the\s+(?:house|home|flat|apartment))(?!\w)"
)

_CHILD_RE = re.compile(
    r"(?<!\w)(?:for\s+(?:the\s+|my\s+|our\s+|little\s+)?(?:kids?|children|child|toddlers?|"
    r"babies|baby|little\s+ones|son|daughter|grandkids|grandchildren|grandson|granddaughter)"
    r"(?!\w)(?!'s?\s*(?:bed|play)?room|s'\s*(?:bed|play)?room|\s+(?:bed|play)?room)"
    r"|(?:kids?|child|children|family)[\s\-]*(?:friendly|safe)"
    r"|clean\s+(?:lyrics|version|words)"
    r"|no\s+(?:swearing|swear\s+words|explicit(?:\s+lyrics)?|profanity|cursing)"
    r"|lullab(?:y|ies)|nursery\s+rhymes?)(?!\w)"
)

_OCCASION_RE = re.compile(
    r"(?<!\w)for\s+(?P<o>(?:my|our|the|a|an|his|her|their)\s+(?:[\w']+\s+){0,3}?"
    r"(?:birthday|anniversary|wedding|graduation|christmas|holidays?|party|celebration|"
    r"retirement)(?:\s+(?:anniversary|party|celebration|dinner|bash))?)(?!\w)"
)

_TOPIC_RE = re.compile(
    r"(?<!\w)(?:about|on\s+the\s+(?:topic|theme|subject)\s+of|inspired\s+by|"
    r"themed\s+(?:around|on)|dedicated\s+to|telling\s+the\s+story\s+of)\s+"
)
_TOPIC_END_RE = re.compile(
    r"\s*[,.;!?:]|\s+(?:(?:please|thanks|thank\s+you|and\s+make\s+it|and\s+play\s+it|make\s+it|"
    r"that's|that\s+is|that\s+sounds|which\s+is)(?!\w)"
    r"|(?:in|with)\s+(?:an?|the|some)\s+(?=(?:\S+\s+){0,2}?(?:style|vibe|feel|mood|"
    r"flavou?r|sound|tone|version)(?!\w)))"
)
_UNKNOWN_ROOM_RE = re.compile(
    rf"(?<!\w){_PREP}\s+(?:the|my|our|your)\s+(?P<room>"
    rf"(?P<w>[a-z]+)(?:'s|s')?[\s\-]+(?:bed)?room|{lex.phrase_alternation(list(lex.COMMON_ROOM_WORDS))})"
    r"(?:'s)?(?!\w)"
)
_NOT_A_ROOM_WORD = frozenset({"whole", "entire", "same", "next", "a", "the", "this", "that"})

_GENRE_RE = re.compile(rf"(?<![\w&])(?:{lex.phrase_alternation(list(lex.GENRE_WORDS))})(?![\w&])")
_MOOD_RE = re.compile(rf"(?<!\w)(?:{lex.phrase_alternation(list(lex.MOOD_WORDS))})(?!\w)")
_HINT_RE = re.compile(rf"(?<!\w)(?:{lex.phrase_alternation(list(lex.MOOD_HINTS))})(?!\w)")
_GENRES = {lex.canon_key(k): v for k, v in lex.GENRE_WORDS.items()}
_MOODS = {lex.canon_key(k): v for k, v in lex.MOOD_WORDS.items()}
_HINTS = {lex.canon_key(k): v for k, v in lex.MOOD_HINTS.items()}

# Genre words that are ordinary nouns after a determiner ("the house", "my soul").
_NOUN_LIKE = frozenset({"house", "club", "country", "soul", "drone", "dance", "western",
                        "swing", "trap", "party", "folk"})
_DETERMINER_BEFORE = re.compile(r"(?:^|\s)(?:the|my|our|your|his|her|their|this|that|whole)\s+$")
_NEGATION_BEFORE = re.compile(
    r"(?:^|[^\w])(?:no|not|non|without|never|nothing|except|but\s+not|anything\s+but|"
    r"don'?t\s+(?:want|need|make\s+it|play)|do\s+not\s+(?:want|need|make\s+it|play))"
    r"[\s\-]+(?:(?:too|very|so|an?|any|overly|really|that|even)\s+)?$"
)
_SONG_NOUN_AFTER = re.compile(
    r"[\s\-]+(?:[a-z'\-]+\s+){0,2}?(?:songs?|tracks?|tunes?|ballads?|lullab(?:y|ies)|jingles?|"
    rf"numbers?|music|{lex.phrase_alternation(list(lex.GENRE_WORDS))})(?!\w)"
)

_QUOTES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "“": '"', "”": '"', "„": '"'})
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
_SPACE_RE = re.compile(r"\s+")


# --------------------------------------------------------------------------- small parsers


def parse_number(text: str) -> float | None:
    """'92', '1.5', '1,5', 'ninety two', 'one twenty', 'a hundred and ten' → a number."""
    text = text.strip().lower()
    if not text:
        return None
    if text[0].isdigit():
        if "," in text:
            head, _, tail = text.partition(",")
            text = head + tail if len(tail) == 3 else f"{head}.{tail}"
        try:
            return float(text)
        except ValueError:
            return None
    words = [w for w in re.split(r"[\s\-]+", text) if w and w != "and"]
    if words and words[0] in ("a", "an"):
        words[0] = "one"
    if not words or any(w not in lex.NUMBER_WORDS and w not in lex.SCALE_WORDS for w in words):
        return None
    # "one twenty" (120) is how tempos are said; "one hundred twenty" is the long form.
    if (len(words) >= 2 and 1 <= lex.NUMBER_WORDS.get(words[0], 0) <= 9
            and words[1] not in lex.SCALE_WORDS and lex.NUMBER_WORDS.get(words[1], 0) >= 10):
        rest = parse_number(" ".join(words[1:]))
        return None if rest is None else lex.NUMBER_WORDS[words[0]] * 100 + rest
    total = current = 0
    for word in words:
        if word in lex.SCALE_WORDS:
            scale = lex.SCALE_WORDS[word]
            if scale == 100:
                current = max(current, 1) * 100
            else:
                total += max(current, 1) * scale
                current = 0
        else:
            current += lex.NUMBER_WORDS[word]
    return float(total + current)


def _format_key(tonic: str, accidental: str | None, mode: str | None) -> str:
    sign = ""
    if accidental:
        sign = "#" if accidental in ("#", "♯") or accidental.endswith("sharp") else "b"
    return f"{tonic.upper()}{sign} {'minor' if mode in ('minor', 'min') else 'major'}"


def parse_key(text: str) -> str | None:
    """'F sharp minor', 'Bb', 'in the key of A minor' → 'F# minor', 'Bb major', 'A minor'.

    For a value that is known to be a key (a slot, an LLM field), so a lone letter is
    accepted here, unlike inside a sentence.
    """
    norm, _ = _normalize(text)
    low = norm.lower().strip()
    match = _KEY_RE.fullmatch(low) or _KEY_RE.fullmatch(f"in {low}")
    if not match:
        return None
    return _format_key(match["t"], match["acc"] or match["accw"], match["mode"])


def resolve_genre(word: str) -> str | None:
    """A genre name or synonym ('EDM', 'hip hop') → a contract genre, else None."""
    return _GENRES.get(lex.canon_key(str(word)))


def resolve_mood(word: str) -> str | None:
    """A mood name or synonym ('chill', 'sad') → a contract mood, else None."""
    return _MOODS.get(lex.canon_key(str(word)))


def resolve_language(word: str) -> str | None:
    """'Spanish', 'es', 'ES' → 'es'; None for what is neither a known name nor two letters."""
    low = str(word).strip().lower()
    if re.fullmatch(r"[a-z]{2}", low):
        return low
    return lex.LANGUAGES.get(low)


def parse_duration(text: str) -> float | None:
    """'two minutes', '90 s', '1.5 min', '2:30', '120' (seconds) → seconds, unchecked against limits."""
    low = _normalize(str(text))[0].lower().strip()
    if re.fullmatch(r"\d{1,6}(?:[.,]\d{1,3})?\s*(?:s|sec|secs|seconds?)?", low):
        return parse_number(re.sub(r"[a-z\s]+$", "", low))
    clock = re.fullmatch(r"(\d{1,2}):([0-5]\d)(?:\s*(?:min|mins|minutes?))?", low)
    if clock:
        return int(clock[1]) * 60.0 + int(clock[2])
    match = _DURATION_RE.search(low)
    return _duration_of(match) if match else None


def _duration_of(match: re.Match[str]) -> float | None:
    raw = match["n"]
    if raw in ("a", "an"):
        number: float | None = 1.0
    elif raw.startswith("half"):
        number = 0.5
    else:
        number = parse_number(raw)
    if number is None:
        return None
    unit = _UNIT_S[match["u"][0]]
    seconds = number * unit + (0.5 * unit if match["half"] or match["half2"] else 0.0)
    if match["n2"]:
        extra = parse_number(match["n2"])
        seconds += extra or 0.0
    return seconds


# --------------------------------------------------------------------------- spelling

_TYPO_MIN_LEN = 4
_TYPO_MAX_LEN = 16  # longer than any word of the lexicon, plus a typo
_TYPO_WORD_RE = re.compile(rf"(?<![\w'])[a-z]{{{_TYPO_MIN_LEN},{_TYPO_MAX_LEN}}}(?![\w'])")
_ROOM_CONTEXT_RE = re.compile(rf"(?:^|\s){_PREP}(?:\s+{_DET})?\s+$|(?:^|\s){_DET}\s+$")
_SENTENCE_START_RE = re.compile(r"(?:^|[.!?:,;]\s*)$")


def _one_edit(a: str, b: str) -> bool:
    """Whether b is a with one letter missing, added, changed, or two neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1:]


class _Speller:
    """Words one edit from a target word, found through an index of single deletions."""

    def __init__(self, targets: Mapping[str, Any]) -> None:
        self.targets = dict(targets)  # word → what it stands for (same meaning: not ambiguous)
        self.index: dict[str, list[str]] = {}
        for word in self.targets:
            for probe in {word, *(word[:i] + word[i + 1:] for i in range(len(word)))}:
                self.index.setdefault(probe, []).append(word)

    def near(self, token: str) -> set[str]:
        """The target words one edit from token."""
        return {word for probe in {token, *(token[:i] + token[i + 1:] for i in range(len(token)))}
                for word in self.index.get(probe, ()) if _one_edit(token, word)}

    def suggest(self, token: str) -> str | None:
        """The target word one edit from token, if exactly one meaning is that close."""
        found = self.near(token)
        if not found or len({self.targets[w] for w in found}) > 1:
            return None
        return min(found, key=lambda w: (abs(len(w) - len(token)), w))


def _lexicon_targets() -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for name, table in (("genre", lex.GENRE_WORDS), ("mood", lex.MOOD_WORDS), ("hint", lex.MOOD_HINTS)):
        for phrase, value in table.items():
            words = phrase.split(" ")
            if len(words) == 1 and len(phrase) >= _TYPO_MIN_LEN and phrase.isalpha():
                targets.setdefault(phrase, (name, value))
            else:  # a word of "string quartet", "heavy metal": itself
                for word in words:
                    if len(word) >= _TYPO_MIN_LEN + 1 and word.isalpha():
                        targets.setdefault(word, word)
    return targets


_LEXICON_SPELLER = _Speller(_lexicon_targets())
_SHORT_WORDS = frozenset(w for table in (lex.GENRE_WORDS, lex.MOOD_WORDS)
                         for w in table if len(w) == _TYPO_MIN_LEN - 1 and w.isalpha())
# "somthing" is something misspelt, not "soothing": a word as close to a common word of
# requests as to a genre or mood word is left alone.
_COMMON_SPELLER = _Speller({w: w for w in lex.COMMON_REQUEST_WORDS})
_KNOWN_WORDS = frozenset({
    *lex.TYPO_PROTECTED, *_LEXICON_SPELLER.targets, *lex.LANGUAGES, *lex.NUMBER_WORDS,
    *lex.SCALE_WORDS, *lex.ROOM_NAME_WORDS, *lex.COMMON_REQUEST_WORDS,
    *(w for phrase in lex.COMMON_ROOM_WORDS for w in phrase.split(" ")),
})


def _doubled_short_word(token: str) -> str | None:
    """'sadd', 'popp' → 'sad', 'pop': a three-letter genre or mood word with a letter typed twice."""
    if len(token) != _TYPO_MIN_LEN:
        return None
    for i in range(len(token) - 1):
        if token[i] == token[i + 1] and token[:i] + token[i + 1:] in _SHORT_WORDS:
            return token[:i] + token[i + 1:]
    return None


def _spell(text: str, low: str, room_speller: _Speller) -> tuple[str, dict[str, str]]:
    """text with each word one edit from a genre, mood or room word read as that word.

    Left alone: known words (English words one edit from such a word included), words of
    fewer than four letters, a capitalised word inside a sentence (a name: "my dog Rokc"),
    and room words except after a preposition or determiner ("in the kichen").
    """
    corrections: dict[str, str] = {}
    pieces: list[str] = []
    last = 0
    shouting = not any(c.islower() for c in text)
    lexicon_word: dict[str, str | None] = {}  # a repeated word is looked up once
    for m in _TYPO_WORD_RE.finditer(low):
        token = m.group()
        if token in _KNOWN_WORDS or token in room_speller.targets:
            continue
        start, end = m.span()
        if (text[start].isupper() and not shouting
                and not _SENTENCE_START_RE.search(text, max(0, start - 3), start)):
            continue
        word = None
        if room_speller.targets:
            before = low[max(0, start - 24):start]
            if _ROOM_CONTEXT_RE.search(before) or before.rstrip().rpartition(" ")[2] in room_speller.targets:
                word = room_speller.suggest(token)  # "for the loung" is the lounge, not "long"
        if word is None:
            if token not in lexicon_word:
                word = _LEXICON_SPELLER.suggest(token) or _doubled_short_word(token)
                lexicon_word[token] = None if word is None or _COMMON_SPELLER.near(token) else word
            word = lexicon_word[token]
        if word is None:
            continue
        corrections[text[start:end]] = word
        pieces += [text[last:start], word.upper() if shouting else word]
        last = end
    if not corrections:
        return text, corrections
    pieces.append(text[last:])
    return "".join(pieces), corrections


# --------------------------------------------------------------------------- rooms


@dataclass(frozen=True)
class _RoomMatcher:
    """One compiled regex finding every configured room by id, name or alias."""

    pattern: re.Pattern[str] | None
    group_rooms: dict[str, str]
    speller: _Speller

    def room_of(self, match: re.Match[str]) -> str:
        """The room id of whichever phrase group matched."""
        return next(rid for group, rid in self.group_rooms.items() if match[group] is not None)


_ROOM_CACHE: dict[tuple[Any, ...], _RoomMatcher] = {}
_ROOM_CACHE_MAX = 32


def _room_words(phrase: str) -> list[str]:
    words = re.split(r"[\s_\-]+", phrase.lower().translate(_QUOTES).strip())
    return [w for w in words if w]


def _token_pattern(word: str) -> str:
    bare = re.sub(r"(?:'s|s'|')$", "", word)
    forms = {bare}
    if len(bare) > 3 and bare.endswith("s") and not bare.endswith("ss"):
        forms.add(bare[:-1])
    for form in list(forms):  # noqa: PERF101  the loop adds to `forms`: iterate a copy
        forms.update(lex.ROOM_WORD_SYNONYMS.get(form, ()))
    # "bed room" and "bath room" are how speech-to-text often writes a bedroom
    alternation = "|".join(
        re.escape(f[:-4]) + r"[\s\-]?room" if len(f) > 6 and f.endswith("room") else re.escape(f)
        for f in sorted(forms, key=len, reverse=True))
    return rf"(?:{alternation})(?:'s|s'|es|s|')?"


def _room_matcher(rooms: Mapping[str, RoomSettings]) -> _RoomMatcher:
    signature = tuple((rid, room.name, tuple(room.aliases)) for rid, room in rooms.items())
    cached = _ROOM_CACHE.get(signature)
    if cached is not None:
        return cached
    phrases: dict[tuple[str, ...], str] = {}
    room_words: set[str] = set()
    for rid, room in rooms.items():
        for phrase in (rid, room.name, *room.aliases):
            words = _room_words(phrase)
            if words:
                phrases.setdefault(tuple(words), rid)
                room_words.update(w for w in words if len(w) >= _TYPO_MIN_LEN and w.isalpha())
    alternatives, group_rooms = [], {}
    for index, (key, rid) in enumerate(sorted(phrases.items(), key=lambda p: -len(" ".join(p[0])))):
        group_rooms[f"r{index}"] = rid
        alternatives.append(f"(?P<r{index}>" + r"[\s_\-]*".join(_token_pattern(w) for w in key) + ")")
    pattern = None
    if alternatives:
        pattern = re.compile(
            rf"(?<![\w'])(?:(?P<prep>{_PREP})\s+(?:{_DET}\s+)?|(?:{_DET})\s+)?"
            rf"(?:{'|'.join(alternatives)})(?:\s+speakers?)?(?!\w)"
        )
    matcher = _RoomMatcher(pattern, group_rooms, _Speller({w: w for w in sorted(room_words)}))
    if len(_ROOM_CACHE) >= _ROOM_CACHE_MAX:
        _ROOM_CACHE.clear()
    _ROOM_CACHE[signature] = matcher
    return matcher


def resolve_room(text: str, rooms: Mapping[str, RoomSettings]) -> str | None:
    """A room id, name or alias ('Living Room', 'the lounge', "kids' room") → its id."""
    low = _normalize(str(text))[0].lower().strip()
    if low in rooms:
        return low
    matcher = _room_matcher(rooms)
    if matcher.pattern is None:
        return None
    match = matcher.pattern.fullmatch(low)
    return matcher.room_of(match) if match else None


def room_for_site(site_id: str | None, rooms: Mapping[str, RoomSettings],
                  site_rooms: Mapping[str, str]) -> str | None:
    """The room of a satellite: [voice].site_rooms first, else a site id that is a room id.

    Home Assistant area ids and Rhasspy site ids are often the room's id already.
    """
    if not site_id:
        return None
    room = site_rooms.get(site_id)
    if room is None and site_id in rooms:
        room = site_id
    return room if room in rooms else None


# --------------------------------------------------------------------------- the parse


def _normalize(text: str) -> tuple[str, bool]:
    """NFKC, plain quotes, no control characters, single spaces; cut to MAX_INPUT_CHARS."""
    cut = len(text) > MAX_INPUT_CHARS
    text = unicodedata.normalize("NFKC", text[:MAX_INPUT_CHARS])[:MAX_INPUT_CHARS]
    text = _CONTROL_RE.sub(" ", text.translate(_QUOTES))
    return _SPACE_RE.sub(" ", text).strip(), cut


def _lower_aligned(text: str) -> str:
    """Lowercase with the same length, so spans found in it index the original text."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


class _Spans:
    """Character ranges already explained by a phrase; weaker cues inside them are ignored."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []

    def add(self, start: int, end: int) -> None:
        self.ranges.append((start, end))

    def overlaps(self, start: int, end: int) -> bool:
        return any(start < e and s < end for s, e in self.ranges)

    def next_start(self, after: int) -> int | None:
        starts = [s for s, _ in self.ranges if s >= after]
        return min(starts) if starts else None


def _negated(low: str, start: int) -> bool:
    return bool(_NEGATION_BEFORE.search(low[max(0, start - 40):start]))


class _Parse:
    """The state of one parse; each `_read_*` method handles one kind of phrase."""

    def __init__(self, text: str, rooms: Mapping[str, RoomSettings]) -> None:
        self.text, cut = _normalize(text)
        self.low = _lower_aligned(self.text)
        self.rooms = rooms
        self.text, self.corrections = _spell(self.text, self.low, _room_matcher(rooms).speller)
        if self.corrections:
            self.low = _lower_aligned(self.text)
        self.values: dict[str, Any] = {}
        self.evidence: dict[str, str] = {}
        self.warnings: list[str] = []
        self.strong = _Spans()
        self.unknown_room: str | None = None
        self.topic: tuple[int, int] | None = None
        if cut:
            self.warnings.append(f"input cut to its first {MAX_INPUT_CHARS} characters")

    # -- helpers
    def set(self, name: str, value: Any, span: tuple[int, int], *, label: str | None = None) -> None:
        """First mention wins; a different later value is reported, not silently dropped."""
        said = self.text[span[0]:span[1]].strip()
        if name in self.values:
            if self.values[name] != value:
                self.warnings.append(
                    f"several {label or name} values ({self.values[name]!r}, {value!r}); "
                    f"using {self.values[name]!r}")
            return
        self.values[name] = value
        self.evidence[name] = said

    def in_topic(self, start: int, end: int) -> bool:
        return self.topic is not None and start < self.topic[1] and self.topic[0] < end

    # -- strong phrases
    def read_rooms(self) -> list[tuple[int, int, str, bool]]:
        matcher = _room_matcher(self.rooms)
        found: list[tuple[int, int, str, bool]] = []
        if matcher.pattern is not None:
            for m in matcher.pattern.finditer(self.low):
                with_prep = m["prep"] is not None
                found.append((m.start(), m.end(), matcher.room_of(m), with_prep))
                if with_prep:
                    self.strong.add(m.start(), m.end())
        for m in _UNKNOWN_ROOM_RE.finditer(self.low):
            # A configured room said with a preposition explains the phrase; a bare one
            # inside it does not ("for my son's bedroom" is not the bedroom).
            if any(s < m.end() and m.start() < e and (prep or (s <= m.start("room") and e >= m.end()))
                   for s, e, _, prep in found):
                continue
            if m["w"] and m["w"] in _NOT_A_ROOM_WORD:
                continue
            name = m["room"]
            self.strong.add(m.start(), m.end())
            if self.unknown_room is None:
                self.unknown_room = name
            self.warnings.append(f"no room called '{name}'")
        return found

    def read_bpm(self) -> None:
        for m in _BPM_RE.finditer(self.low):
            self.strong.add(m.start(), m.end())
            number = parse_number(m["n"] or m["t"])
            if number is None:
                continue
            bpm = round(number)
            if not MIN_BPM <= bpm <= MAX_BPM:
                self.warnings.append(f"tempo {bpm} bpm is out of range ({MIN_BPM}-{MAX_BPM}); ignored")
                continue
            self.set("bpm", bpm, m.span(), label="tempo")

    def read_duration(self) -> None:
        for m in _CLOCK_DURATION_RE.finditer(self.low):
            pre = m["pre"]
            if pre in ("at", "in", "by", "until", "till", "from", "to") or not (
                    m["u"] or m["long"] or pre in ("for", "lasting")):
                continue
            self.strong.add(m.start(), m.end())
            self._set_duration(int(m["m"]) * 60.0 + int(m["s"]), m.span())
        for m in _DURATION_RE.finditer(self.low):
            pre = m["pre"]
            if pre in ("in", "within", "after", "every", "per", "beat", "beats"):
                continue  # "ready in two minutes" is when, not how long
            if m["n"] in ("a", "an") and (m["u"].startswith("sec") or re.search(
                    r"(?:^|\s)(?:wait|just|in|within|after|every|per)\s+$", self.low[:m.start()])):
                continue  # "a second song", "wait a minute"
            if self.strong.overlaps(*m.span()):
                continue
            self.strong.add(m.start(), m.end())
            seconds = _duration_of(m)
            if seconds is not None:
                self._set_duration(seconds, m.span())

    def _set_duration(self, seconds: float, span: tuple[int, int]) -> None:
        if not MIN_DURATION_S <= seconds <= MAX_DURATION_S:
            self.warnings.append(
                f"duration {seconds:g} s is out of range ({MIN_DURATION_S}-{MAX_DURATION_S} s); ignored")
            return
        self.set("duration_s", float(seconds), span, label="duration")

    def read_key(self) -> None:
        for m in _KEY_RE.finditer(self.low):
            tonic, acc, mode, pre = m["t"], m["acc"] or m["accw"], m["mode"], m["pre"] or ""
            if not (mode or acc or pre):
                continue
            if acc == "b" and not (mode or pre):
                continue  # "bb" alone is not a key
            key_of = "key" in pre
            if tonic == "a" and not key_of:
                # "a" is mostly the article: "a minor song", "in a minor key", "a flat tire".
                upper = self.text[m.start("t")] == "A" and m.start("t") > 0
                spoken_key = bool(pre and (mode or acc) and not m["kw"] and self._ends_phrase(m.end()))
                if not (upper or spoken_key):
                    continue
            elif not (mode or acc or key_of) and not self._ends_phrase(m.end()):
                continue  # "in c" only where the phrase ends
            if self.strong.overlaps(*m.span()):
                continue
            self.strong.add(m.start(), m.end())
            self.set("key", _format_key(tonic, acc, mode), m.span())

    def _ends_phrase(self, index: int) -> bool:
        return bool(re.match(r"\s*(?:$|[,.;!?]|(?:and|with|at|for|please|in|on|to)\b)", self.low[index:]))

    def read_instrumental(self) -> None:
        for m in _INSTRUMENTAL_RE.finditer(self.low):
            self.strong.add(m.start(), m.end())
            value = m["yes"] is not None
            if value and m["yes"].startswith("instrumental") and _negated(self.low, m.start()):
                value = False
            self.set("instrumental", value, m.span())

    def read_language(self) -> None:
        for m in _LANGUAGE_STRONG_RE.finditer(self.low):
            self.strong.add(m.start(), m.end())
            self.set("language", lex.LANGUAGES[m["a"] or m["b"]], m.span())

    def read_party(self) -> None:
        for m in _PARTY_RE.finditer(self.low):
            self.strong.add(m.start(), m.end())
            self.set("party", not _negated(self.low, m.start()), m.span(), label="party")

    def read_child_safe(self) -> None:
        for m in _CHILD_RE.finditer(self.low):
            self.strong.add(m.start(), m.end())
            self.set("child_safe", not _negated(self.low, m.start()), m.span(), label="child-safe")

    def read_occasion(self) -> str | None:
        m = _OCCASION_RE.search(self.low)
        if not m:
            return None
        self.strong.add(m.start(), m.end())
        return self.text[m.start("o"):m.end("o")]

    def read_topic(self) -> str | None:
        for m in _TOPIC_RE.finditer(self.low):
            if self.strong.overlaps(m.start(), m.end()):
                continue  # "about 90 bpm", "about two minutes"
            start = m.end()
            end = len(self.low)
            nxt = self.strong.next_start(start)
            if nxt is not None:
                end = nxt
            stop = _TOPIC_END_RE.search(self.low, start, end)
            if stop:
                end = stop.start()
            topic = self.text[start:end].strip(" \"'-")
            if topic:
                self.topic = (m.start(), end)
                return topic
        return None

    # -- weak cues, outside the topic and the strong phrases
    def weak_allowed(self, start: int, end: int) -> bool:
        return not self.in_topic(start, end) and not self.strong.overlaps(start, end)

    def choose_room(self, found: list[tuple[int, int, str, bool]]) -> None:
        usable = [f for f in found if f[3] or (self.weak_allowed(f[0], f[1]) and self._set_apart(f[0], f[1]))]
        if not usable:
            return
        for start, end, _, with_prep in usable:
            if not with_prep:
                self.strong.add(start, end)
        chosen = next((f for f in usable if f[3]), usable[0])
        distinct = list(dict.fromkeys(f[2] for f in usable))
        if len(distinct) > 1:
            others = ", ".join(repr(r) for r in distinct)
            self.warnings.append(f"several rooms mentioned ({others}); using {chosen[2]!r}")
        self.values["room"] = chosen[2]
        self.evidence["room"] = self.text[chosen[0]:chosen[1]].strip()

    def _set_apart(self, start: int, end: int) -> bool:
        """A room named without preposition counts only as a phrase of its own:
        "kitchen: happy pop", "play jazz, living room" — not "a kitchen disco song"."""
        before = self.low[:start].rstrip()
        after = self.low[end:].lstrip()
        return (not before or before[-1] in ",:;.!?") or (not after or after[0] in ",:;.!?")

    def read_words(self, pattern: re.Pattern[str], table: dict[str, str], name: str) -> None:
        for m in pattern.finditer(self.low):
            if not self.weak_allowed(*m.span()):
                continue
            key = lex.canon_key(m.group())
            if key in _NOUN_LIKE and _DETERMINER_BEFORE.search(self.low[max(0, m.start() - 12):m.start()]):
                continue
            if _negated(self.low, m.start()):
                self.warnings.append(f"ignored negated {name} {m.group()!r}")
                continue
            self.set(name, table[key], m.span())

    def read_mood_hint(self) -> None:
        if "mood" in self.values:
            return
        for m in _HINT_RE.finditer(self.low):
            if not self.in_topic(*m.span()) and not _negated(self.low, m.start()):
                self.set("mood", _HINTS[lex.canon_key(m.group())], m.span())
                return

    def read_language_adjective(self) -> None:
        if "language" in self.values:
            return
        for m in _LANGUAGE_WORD_RE.finditer(self.low):
            word = m["l"]
            if word in lex.LANGUAGE_STYLE_ONLY or not self.weak_allowed(*m.span()):
                continue
            if self.low.startswith(" horn", m.end()):
                continue  # the French horn is an instrument
            if _SONG_NOUN_AFTER.match(self.low, m.end()):
                self.set("language", lex.LANGUAGES[word], m.span())
                return


# What the rules read from the words themselves that only a song request says. Not a
# length ("set a timer for ten minutes") or a language ("translate this to French") alone.
_SONG_FIELDS = ("genre", "mood", "bpm", "key", "instrumental")


def is_song_request(text: str, parsed: ParsedIntent) -> bool:
    """Whether an utterance asks for a song at all: the rules found a genre, mood, tempo,
    key or instrumental in its words (not an LLM's guess, not the satellite's room), or it
    has a song word ("song", "play", "lullaby"...). "What is the weather like" has none."""
    if any(parsed.evidence.get(name) not in (None, "(llm)") for name in _SONG_FIELDS):
        return True
    words = re.findall(r"[a-z]+", _normalize(text)[0].lower())
    return any(word in lex.SONG_REQUEST_WORDS for word in words)


def parse(
    text: str,
    rooms: Mapping[str, RoomSettings],
    *,
    default_room: str | None = None,
    llm: LlmParser | None = None,
) -> ParsedIntent:
    """Read a spoken or typed wish into a SongRequest; never raises on any text.

    `default_room` (e.g. the room of the satellite that heard it) applies when the text
    names no room. `llm` is asked only when the rules find neither genre nor mood; its
    answer fills only fields the rules left empty, and is validated field by field.
    """
    p = _Parse(text if isinstance(text, str) else str(text), rooms)
    found_rooms = p.read_rooms()
    p.read_bpm()
    p.read_duration()
    p.read_key()
    p.read_instrumental()
    p.read_language()
    p.read_party()
    p.read_child_safe()
    occasion = p.read_occasion()
    topic = p.read_topic()
    p.choose_room(found_rooms)
    p.read_words(_GENRE_RE, _GENRES, "genre")
    p.read_words(_MOOD_RE, _MOODS, "mood")
    p.read_mood_hint()
    p.read_language_adjective()

    prompt = " ".join(part for part in (topic, f"for {occasion}" if occasion else None) if part)
    if prompt:
        p.values["prompt"] = prompt
        p.evidence["prompt"] = prompt
    if p.values.get("instrumental") and p.values.get("language"):
        p.warnings.append("an instrumental song has no words to sing in the language asked for")

    if "room" not in p.values and default_room is not None:
        if default_room in rooms:
            p.values["room"] = default_room
            p.evidence["room"] = "(default room)"
        else:
            p.warnings.append(f"default room {default_room!r} is not configured")

    if llm is not None and "genre" not in p.values and "mood" not in p.values:
        _apply_llm(p, llm)

    request = _build_request(p.values, p.warnings)
    return ParsedIntent(request=request, warnings=p.warnings, evidence=p.evidence,
                        unknown_room=p.unknown_room, corrections=p.corrections)


def _build_request(values: dict[str, Any], warnings: list[str]) -> SongRequest:
    """SongRequest from the values; a value the model refuses is dropped with a warning."""
    values = dict(values)
    for _ in range(len(values) + 1):
        try:
            return SongRequest(**values)
        except ValidationError as error:
            for problem in error.errors():
                name = str(problem["loc"][0]) if problem["loc"] else ""
                if name in values:
                    warnings.append(f"{name}: {problem['msg']}; ignored")
                    values.pop(name)
    return SongRequest()


# --------------------------------------------------------------------------- LLM fallback


def validate_fields(
    answer: Any, rooms: Mapping[str, RoomSettings], warnings: list[str], *, source: str,
) -> dict[str, Any]:
    """Keep the fields of an untrusted dict (an LLM answer, Hermes slots) that are valid.

    Every value goes through the same resolvers as the rules, so "EDM" becomes
    "electronic" and "Living Room" becomes "living_room"; the rest is reported.
    """
    if not isinstance(answer, Mapping):
        warnings.append(f"{source} answer is not an object; ignored")
        return {}
    out: dict[str, Any] = {}
    for name, raw in list(answer.items())[:32]:
        if name not in FIELDS or raw is None:
            continue
        value = _validate_field(name, raw, rooms)
        if value is None:
            shown = repr(raw) if len(repr(raw)) <= 40 else repr(raw)[:37] + "..."
            warnings.append(f"{source} gave an unusable {name} {shown}; ignored")
        else:
            out[name] = value
    return out


def _validate_field(name: str, raw: Any, rooms: Mapping[str, RoomSettings]) -> Any:
    if name in ("instrumental", "party", "child_safe"):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
            return raw.strip().lower() in ("true", "yes", "1")
        return None
    if name in ("bpm", "duration_s"):
        if isinstance(raw, bool):
            return None
        if isinstance(raw, (int, float)):
            number: float | None = float(raw)
        elif isinstance(raw, str) and len(raw) <= 64:
            number = parse_number(raw) if name == "bpm" else parse_duration(raw)
        else:
            return None
        if number is None or not math.isfinite(number):
            return None
        if name == "bpm":
            bpm = round(number)
            return bpm if MIN_BPM <= bpm <= MAX_BPM else None
        return float(number) if MIN_DURATION_S <= number <= MAX_DURATION_S else None
    if not isinstance(raw, str) or len(raw) > (2000 if name == "prompt" else 64):
        return None
    if name == "genre":
        return resolve_genre(raw) if raw not in GENRES else raw
    if name == "mood":
        return resolve_mood(raw) if raw not in MOODS else raw
    if name == "room":
        return resolve_room(raw, rooms)
    if name == "key":
        key = parse_key(raw)
        return key if key and re.fullmatch(KEY_PATTERN, key) else None
    if name == "language":
        return resolve_language(raw)
    if name == "prompt":
        prompt = _normalize(raw)[0]
        return prompt or None
    return None


def _apply_llm(p: _Parse, llm: LlmParser) -> None:
    try:
        answer = llm(p.text)
    except Exception as error:  # noqa: BLE001 - any failure of an optional helper is only a warning
        p.warnings.append(f"LLM parse failed ({type(error).__name__}); ignored")
        return
    for name, value in validate_fields(answer, p.rooms, p.warnings, source="LLM").items():
        if name not in p.values:
            p.values[name] = value
            p.evidence[name] = "(llm)"
