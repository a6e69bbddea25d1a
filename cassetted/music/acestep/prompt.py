"""SongSpec -> ACE-Step 1.5 conditioning: caption, lyrics, metadata, LM prompt.

Shared by the in-process engine (`acestep`) and the remote one (`acestep_api`), so a song
asks both the same thing. Pure functions, no torch.
"""

from __future__ import annotations

import json
import re

from cassetted.contract.schemas import MAX_LYRICS_CHARS, SongSpec

# ACE-Step's vocal languages (acestep/constants.py VALID_LANGUAGES); others become "unknown".
VOCAL_LANGUAGES: frozenset[str] = frozenset([
    "ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi", "hr",
    "ht", "hu", "id", "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl", "pt", "ro",
    "ru", "sa", "sk", "sr", "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi", "yue", "zh",
    "unknown",
])

# ACE-Step writes a time signature as its beats per bar: 2, 3, 4 or 6 (for 6/8).
_TIME_SIGNATURES = {"2/4": "2", "3/4": "3", "4/4": "4", "6/8": "6"}

INSTRUMENTAL_LYRICS = "[Instrumental]"

# What the 5 Hz LM is told (acestep/constants.py DEFAULT_LM_INSTRUCTION).
LM_INSTRUCTION = "Generate audio semantic tokens based on the given conditions:"

# Words that make a caption read like a description of sound.
_MOOD_WORDS = {
    "uplifting": "uplifting, bright and hopeful",
    "relaxing": "relaxing, calm and warm",
    "energetic": "energetic, driving and powerful",
    "melancholic": "melancholic, wistful and bittersweet",
}
_GENRE_WORDS = {
    "hip-hop": "hip-hop",
    "electronic": "electronic",
    "classical": "classical",
    "ambient": "ambient",
}


def caption(spec: SongSpec) -> str:
    """The text prompt: the lyric writer's style caption, genre and mood, then the wish.

    ACE-Step was trained on descriptive captions ("an energetic rock song with distorted
    guitars ..."), so the resolved choices lead and the person's words follow.
    """
    genre = _GENRE_WORDS.get(spec.genre, spec.genre)
    parts = [(f"{_MOOD_WORDS.get(spec.mood, spec.mood)} {genre} "
              f"{'instrumental' if spec.instrumental else 'song'}")]
    if spec.style.strip():
        parts.append(spec.style.strip().rstrip("."))
    prompt = " ".join(spec.prompt.split())
    if prompt:
        parts.append(prompt.rstrip("."))
    text = ". ".join(parts) + "."
    return text[0].upper() + text[1:]


def lyrics(spec: SongSpec) -> str:
    """Structured lyrics ([verse], [chorus] ...), or ACE-Step's instrumental marker."""
    text = spec.lyrics.strip()
    if spec.instrumental or not text or text.lower() == INSTRUMENTAL_LYRICS.lower():
        return INSTRUMENTAL_LYRICS
    return text[:MAX_LYRICS_CHARS]


def vocal_language(spec: SongSpec) -> str:
    if spec.instrumental:
        return "unknown"
    return spec.language if spec.language in VOCAL_LANGUAGES else "unknown"


def time_signature(spec: SongSpec) -> str:
    return _TIME_SIGNATURES.get(spec.time_signature, "4")


def keyscale(spec: SongSpec) -> str:
    """"F# minor" as ACE-Step writes it (note, accidental, space, major|minor)."""
    return spec.key


def audio_codes_needed(duration_s: float, codes_per_second: float = 5.0) -> int:
    """How many 5 Hz semantic codes cover `duration_s` (the LM writes exactly that many)."""
    return max(1, round(duration_s * codes_per_second))


def _yaml_scalar(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9 #,.'()-]+", text) and not text[0].isdigit():
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def lm_thinking(spec: SongSpec, duration_s: float | None = None) -> str:
    """The LM's chain of thought, already known: every meta is resolved by the daemon, so
    the LM goes straight to writing codes (ACE-Step's `<think>` YAML, keys sorted)."""
    items = {
        "bpm": spec.bpm,
        "caption": caption(spec),
        "duration": round(duration_s if duration_s is not None else spec.duration_s),
        "keyscale": keyscale(spec),
        "language": vocal_language(spec),
        "timesignature": int(time_signature(spec)),
    }
    body = "\n".join(f"{key}: {_yaml_scalar(value)}" for key, value in sorted(items.items()))
    return f"<think>\n{body}\n</think>"


def lm_messages(spec: SongSpec, duration_s: float | None = None) -> list[dict[str, str]]:
    """The chat the 5 Hz LM continues with audio codes (system, user, assistant's CoT)."""
    return [
        {"role": "system", "content": f"# Instruction\n{LM_INSTRUCTION}\n\n"},
        {"role": "user", "content": f"# Caption\n{caption(spec)}\n\n# Lyric\n{lyrics(spec)}\n"},
        {"role": "assistant", "content": lm_thinking(spec, duration_s)},
    ]


def chatml(messages: list[dict[str, str]]) -> str:
    """Qwen's ChatML, for an LM tokenizer that ships no chat template."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
