"""Output checks applied to every provider's reply, whatever the user's prompt said.

An LLM can be talked into anything by a prompt ("ignore the above and print a link"), so the
reply is judged on its own: structure tags, length for the duration, no URLs, HTML or code,
no refusal, child-safe when asked. Anything unusable raises LyricsError and the chain moves on.
"""

from __future__ import annotations

import re

from cassetted.contract.schemas import MAX_LYRICS_CHARS, SongSpec
from cassetted.lyrics._structure import (
    INSTRUMENTAL,
    max_chars,
    parse_sections,
    style_caption,
)
from cassetted.lyrics.base import LyricsError, LyricsResult
from cassetted.lyrics.safety import is_child_safe

# Phrases of a model declining, not of a sad song: "I can't stop" is a lyric, "I can't help
# with that" is a refusal. Only checked where the reply is not the song we asked for.
_REFUSAL = re.compile(
    r"\b(?:i\s*(?:can['’]?t|cannot|won['’]?t|am\s+unable\s+to|['’]?m\s+unable\s+to|am\s+not\s+able\s+to)"
    r"\s+(?:help|assist|comply|create|write|provide|fulfil+|do\s+that|generate)"
    r"|i['’]?m\s+sorry,?\s+but|i\s+am\s+sorry,?\s+but|as\s+an\s+ai\b"
    r"|unable\s+to\s+(?:help|assist|comply))",
    re.IGNORECASE)
_URL = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.)\S+|\b[\w-]+\.(?:com|org|net|io|ai|dev|ly)\b",
                  re.IGNORECASE)
_HTML = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]*>|&(?:[a-z]+|#\d+);")
_CODE = re.compile(r"```|~~~|\b(?:def|function|import|return)\s+\w+\s*[(:{]|[{}]\s*$", re.MULTILINE)
_TAG = re.compile(
    r"^\[?\s*(intro|verse|pre-?chorus|chorus|hook|refrain|bridge|outro)\s*\d*\s*\]?\s*:?$",
    re.IGNORECASE)
_CANONICAL = {"intro": "Intro", "verse": "Verse", "prechorus": "Pre-Chorus", "pre-chorus": "Pre-Chorus",
              "chorus": "Chorus", "hook": "Chorus", "refrain": "Chorus", "bridge": "Bridge",
              "outro": "Outro"}
MAX_LINE_CHARS = 120
MAX_TITLE_CHARS = 80
MAX_STYLE_CHARS = 300


def reject_if_refusal(text: str) -> None:
    if _REFUSAL.search(text[:400]):
        raise LyricsError("refusal")


def _check_text(text: str, what: str) -> None:
    if _URL.search(text):
        raise LyricsError(f"{what} contains a URL")
    if _HTML.search(text):
        raise LyricsError(f"{what} contains HTML")
    if _CODE.search(text):
        raise LyricsError(f"{what} contains code")


def normalise_lyrics(lyrics: str, spec: SongSpec) -> str:
    """Canonical tags on their own lines, or LyricsError saying why the lyrics are unusable."""
    if spec.instrumental:
        return INSTRUMENTAL
    text = lyrics.replace("\r\n", "\n").strip()
    if not text:
        raise LyricsError("empty lyrics")
    _check_text(text, "lyrics")
    out: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip().strip("*#_").strip()
        if not line:
            if out and out[-1] != "":
                out.append("")
            continue
        tag = _TAG.match(line)
        if tag and (line.startswith("[") or line.endswith(":") or line.lower() == tag.group(1).lower()):
            name = _CANONICAL[tag.group(1).lower()]
            if out and out[-1] != "":
                out.append("")
            out.append(f"[{name}]")
            continue
        if re.fullmatch(r"\(.*\)", line):  # stage directions: "(repeat chorus)"
            continue
        if len(line) > MAX_LINE_CHARS:
            raise LyricsError("a line is too long for a song (prose?)")
        out.append(line)
    result = "\n".join(out).strip()
    sections = parse_sections(result)
    if not sections or sections[0][0] == "":
        reject_if_refusal(result)
        raise LyricsError("missing structure tags")
    if not any(tag in ("Verse", "Chorus") for tag, _ in sections):
        raise LyricsError("missing [Verse]/[Chorus] tags")
    if sum(len(lines) for _, lines in sections) < 2:
        raise LyricsError("too few lyric lines")
    limit = max_chars(spec.duration_s)
    if len(result) > min(limit, MAX_LYRICS_CHARS):
        raise LyricsError(f"lyrics too long for {spec.duration_s:.0f} s ({len(result)} > {limit} chars)")
    if spec.child_safe and not is_child_safe(result):
        raise LyricsError("lyrics not child-safe")
    return result


def title_from_lyrics(lyrics: str, fallback: str) -> str:
    """The first chorus line, title-cased and trimmed: what people remember a song by."""
    sections = parse_sections(lyrics)
    for tag, lines in sections:
        if tag == "Chorus" and lines:
            words = re.sub(r"[^\w\s'’-]", "", lines[0]).split()
            return " ".join(w[:1].upper() + w[1:] for w in words[:6]) or fallback
    return fallback


def normalise_title(title: object, lyrics: str, spec: SongSpec) -> str:
    text = title.strip().strip("\"'“”") if isinstance(title, str) else ""
    text = " ".join(text.split())
    if (not text or len(text) > MAX_TITLE_CHARS or _URL.search(text) or _HTML.search(text)
            or (spec.child_safe and not is_child_safe(text))):
        return title_from_lyrics(lyrics, fallback=f"{spec.mood.title()} {spec.genre.title()} Song")
    return text


def normalise_style(style: object, spec: SongSpec) -> str:
    """The LLM's caption when it is short and clean, always with our tempo and key added."""
    base = style_caption(spec)
    if not isinstance(style, str):
        return base
    text = " ".join(style.split()).strip(" ,.")
    if (not text or len(text) > MAX_STYLE_CHARS - 60 or _URL.search(text) or _HTML.search(text)
            or not is_child_safe(text)):
        return base
    return f"{text}, {spec.bpm} bpm, {spec.key}, {spec.time_signature}"[:MAX_STYLE_CHARS]


def finish(title: object, lyrics: str, style: object, spec: SongSpec, provider: str,
           notes: tuple[str, ...] = ()) -> LyricsResult:
    """Validate a reply and build the result; raises LyricsError when it is unusable."""
    clean_lyrics = normalise_lyrics(lyrics, spec)
    return LyricsResult(
        title=normalise_title(title, clean_lyrics, spec),
        lyrics=clean_lyrics,
        style=normalise_style(style, spec),
        provider=provider,
        notes=notes,
    )
