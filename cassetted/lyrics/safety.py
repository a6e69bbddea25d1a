"""Child-safe filter: an explicit-word list kept in the package, a check and a cleaner.

A word list cannot judge meaning; it is the last gate after the prompt has asked an LLM for
child-suitable content. It covers profanity, sexual words, drugs and alcohol, and graphic
violence. Matching is on whole words, case-insensitive, after undoing common obfuscations
(f*ck, sh1t); stems match their inflections (fuck -> fucking, fucked).
"""

from __future__ import annotations

import re

# Whole words only: too short or too common to match as a prefix ("ass" must not hit "class").
_EXACT: frozenset[str] = frozenset(["ass", "asses", "arse", "damn", "damned", "dammit", "goddamn", "hell", "crap", "crappy", "piss", "pissed", "tits", "tit", "boob", "boobs", "cock", "cocks", "dick", "dicks", "prick", "pricks", "twat", "twats", "slut", "sluts", "whore", "whores", "hoe", "hoes", "bastard", "bastards", "bitch", "bitches", "wank", "wanker", "wankers", "bollocks", "bugger", "sex", "sexy", "sexual", "nude", "nudes", "naked", "porn", "porno", "horny", "orgasm", "kill", "kills", "killed", "killing", "killer", "murder", "murdered", "murderer", "gun", "guns", "blood", "bloody", "gore", "suicide", "rape", "raped", "rapist", "stab", "stabbed", "beer", "beers", "wine", "whiskey", "whisky", "vodka", "booze", "drunk", "drunken", "cocaine", "heroin", "meth", "stoned", "hangover", "tequila", "nazi"])

# Stems: the word and anything it starts (fuck, fucking, fucker, motherfucker via _INFIX).
_STEMS: tuple[str, ...] = (
    "fuck", "shit", "cunt", "nigg", "fag", "retard", "pussy", "pussies", "dildo", "blowjob",
    "handjob", "jizz", "cum", "masturbat", "erotic", "stripper", "hooker", "bullshit",
    "asshole", "dumbass", "jackass", "slaughter", "decapitat", "overdos",
)
# Stems that are explicit wherever they occur inside a word.
_INFIX: tuple[str, ...] = ("fuck", "shit")
# Words that start with a stem but are harmless.
_ALLOWED: frozenset[str] = frozenset(
    {"cumulus", "cumulative", "cucumber", "cumin", "fagus", "shitake", "shiitake", "document"})

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a",
                       "$": "s", "!": "i"})
_WORD = re.compile(r"[A-Za-z0-9@$!*'’-]+")


def _normalise(token: str) -> str:
    return token.lower().translate(_LEET).strip("'’-")


def _is_explicit(word: str) -> bool:
    if not word or word in _ALLOWED:
        return False
    if word in _EXACT:
        return True
    if "*" in word and not word.strip("*"):
        return False  # already masked
    if "*" in word:  # f*ck, sh*t: compare with the masked letters as wildcards
        pattern = re.compile("^" + re.escape(word).replace(r"\*", "[a-z]") + "$")
        return any(pattern.match(candidate) for candidate in (*_EXACT, *_STEMS)) or any(
            pattern.match(stem + "ing") or pattern.match(stem + "s") for stem in _STEMS)
    if word.startswith(_STEMS):
        return True
    return any(stem in word for stem in _INFIX)


def explicit_words(text: str) -> list[str]:
    """The explicit words found in `text`, in order (for tests and logs of why, never secrets)."""
    found = []
    for match in _WORD.finditer(text):
        token = match.group(0)
        parts = [token, *re.split(r"[-']", token)] if "-" in token or "'" in token else [token]
        if any(_is_explicit(_normalise(part)) for part in parts):
            found.append(token)
    return found


def is_child_safe(text: str) -> bool:
    """True when no word of `text` is on the explicit list."""
    return not explicit_words(text)


def clean(text: str) -> str:
    """`text` with every explicit word masked by asterisks (same length, layout kept)."""
    def mask(match: re.Match[str]) -> str:
        token = match.group(0)
        parts = [token, *re.split(r"[-']", token)]
        if any(_is_explicit(_normalise(part)) for part in parts):
            return "*" * len(token)
        return token

    return _WORD.sub(mask, text)
