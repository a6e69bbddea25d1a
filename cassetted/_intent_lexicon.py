"""Word lists of the intent parser: what people say, mapped onto the contract's values.

Kept apart from the matching logic so that adding a synonym is a one-line change that
needs no understanding of the regular expressions in `cassetted.intent`.

Decisions worth knowing (see also examples/homeassistant/assist/README.md):
- "lounge" is NOT a genre: it is the most common alias of a living room.
- "lo-fi" is hip-hop (lo-fi beats) and suggests a relaxing mood when none is said.
- folk, bluegrass, americana → country; metal, punk, grunge → rock; blues, swing → jazz;
  soul, funk, disco, r&b → pop; meditation, new age, drone → ambient.
- "party" on its own ("a party song") is an energetic mood; party *mode* needs
  "party mode", "everywhere", "the whole house", "all rooms" and the like.
"""

from __future__ import annotations

import re

# Keys are written with spaces between the words people may join with a space, a hyphen
# or nothing ("hip hop" also matches "hip-hop" and "hiphop"); lookups go through canon_key().
GENRE_WORDS: dict[str, str] = {
    # rock
    "rock": "rock", "rock n roll": "rock", "rock and roll": "rock",
    "rockabilly": "rock", "metal": "rock", "heavy metal": "rock", "punk": "rock",
    "grunge": "rock", "hard rock": "rock", "alt rock": "rock",
    # pop
    "pop": "pop", "synth pop": "pop", "k pop": "pop", "j pop": "pop",
    "disco": "pop", "funk": "pop", "funky": "pop", "soul": "pop", "r&b": "pop", "rnb": "pop",
    # jazz
    "jazz": "jazz", "jazzy": "jazz", "blues": "jazz", "bluesy": "jazz", "swing": "jazz",
    "bebop": "jazz", "bossa nova": "jazz", "big band": "jazz",
    # electronic
    "electronic": "electronic", "electronica": "electronic", "edm": "electronic",
    "techno": "electronic", "trance": "electronic", "dubstep": "electronic",
    "house": "electronic", "deep house": "electronic", "drum and bass": "electronic",
    "drum n bass": "electronic", "dnb": "electronic", "electro": "electronic",
    "synthwave": "electronic", "dance": "electronic", "club": "electronic",
    # classical
    "classical": "classical", "orchestral": "classical", "orchestra": "classical",
    "symphony": "classical", "symphonic": "classical", "piano sonata": "classical",
    "sonata": "classical", "concerto": "classical", "baroque": "classical",
    "string quartet": "classical",
    # hip-hop
    "hip hop": "hip-hop", "rap": "hip-hop", "trap": "hip-hop",
    "boom bap": "hip-hop", "grime": "hip-hop", "lo fi": "hip-hop",
    # country
    "country": "country", "bluegrass": "country", "folk": "country", "americana": "country",
    "western": "country", "honky tonk": "country",
    # ambient
    "ambient": "ambient", "new age": "ambient", "drone": "ambient", "soundscape": "ambient",
    "meditation": "ambient", "chillout": "ambient",
}

MOOD_WORDS: dict[str, str] = {
    # relaxing
    "relaxing": "relaxing", "relaxed": "relaxing", "relax": "relaxing", "chill": "relaxing",
    "chilled": "relaxing", "calm": "relaxing", "calming": "relaxing", "mellow": "relaxing",
    "sleepy": "relaxing", "peaceful": "relaxing", "soothing": "relaxing", "gentle": "relaxing",
    "soft": "relaxing", "laid back": "relaxing", "dreamy": "relaxing",
    "tranquil": "relaxing", "serene": "relaxing", "cozy": "relaxing", "cosy": "relaxing",
    "quiet": "relaxing",
    # uplifting
    "uplifting": "uplifting", "happy": "uplifting", "cheerful": "uplifting",
    "upbeat": "uplifting", "euphoric": "uplifting", "triumphant": "uplifting",
    "joyful": "uplifting", "joyous": "uplifting", "positive": "uplifting", "fun": "uplifting",
    "bright": "uplifting", "sunny": "uplifting", "feel good": "uplifting",
    "inspiring": "uplifting", "hopeful": "uplifting",
    "optimistic": "uplifting", "festive": "uplifting", "celebratory": "uplifting",
    # energetic
    "energetic": "energetic", "energizing": "energetic", "energising": "energetic",
    "workout": "energetic", "angry": "energetic", "heavy": "energetic", "banger": "energetic",
    "pumped": "energetic", "pumping": "energetic", "pump up": "energetic", "hype": "energetic",
    "intense": "energetic", "powerful": "energetic", "aggressive": "energetic",
    "party": "energetic", "driving": "energetic", "high energy": "energetic",
    # melancholic
    "melancholic": "melancholic", "melancholy": "melancholic", "sad": "melancholic",
    "gloomy": "melancholic", "dark": "melancholic", "somber": "melancholic",
    "sombre": "melancholic", "moody": "melancholic", "heartbroken": "melancholic",
    "heartbreak": "melancholic", "lonely": "melancholic", "mournful": "melancholic",
    "wistful": "melancholic", "nostalgic": "melancholic", "bittersweet": "melancholic",
    "depressing": "melancholic", "sorrowful": "melancholic",
}

# Words that suggest a mood without saying it; used only when no mood word is present.
MOOD_HINTS: dict[str, str] = {"lullaby": "relaxing", "bedtime": "relaxing", "lo fi": "relaxing"}

# ISO 639-1 by English (and a few native) names.
LANGUAGES: dict[str, str] = {
    "english": "en", "spanish": "es", "espanol": "es", "español": "es", "french": "fr",
    "francais": "fr", "français": "fr", "german": "de", "deutsch": "de", "italian": "it",
    "italiano": "it", "portuguese": "pt", "brazilian": "pt", "dutch": "nl", "swedish": "sv",
    "norwegian": "no", "danish": "da", "finnish": "fi", "polish": "pl", "russian": "ru",
    "ukrainian": "uk", "turkish": "tr", "greek": "el", "japanese": "ja", "korean": "ko",
    "chinese": "zh", "mandarin": "zh", "cantonese": "zh", "hindi": "hi", "arabic": "ar",
    "czech": "cs", "hebrew": "he", "irish": "ga", "welsh": "cy", "latin": "la",
    "hungarian": "hu", "romanian": "ro", "vietnamese": "vi", "thai": "th",
    "indonesian": "id",
}
# Language adjectives that, before a genre word, usually describe the style, not the words.
LANGUAGE_STYLE_ONLY: frozenset[str] = frozenset({"latin", "brazilian", "irish"})

# Words a room is commonly called; "in the garage" with no such room configured is
# answered with a warning instead of a guess.
COMMON_ROOM_WORDS: tuple[str, ...] = (
    "garage", "basement", "attic", "cellar", "kitchen", "bathroom", "bedroom", "office",
    "study", "hallway", "hall", "garden", "patio", "porch", "yard", "backyard", "gym",
    "nursery", "den", "lounge", "loft", "sauna", "balcony", "terrace", "library", "studio",
    "conservatory", "pantry", "laundry", "workshop", "shed", "foyer", "playroom", "toilet",
    "kitchenette", "veranda", "living room", "dining room", "kids room", "guest room",
)

# Word-level synonyms for room matching ("the children's room" is the kids room).
ROOM_WORD_SYNONYMS: dict[str, tuple[str, ...]] = {
    "kid": ("kid", "child", "children"),
    "child": ("kid", "child", "children"),
    "children": ("kid", "child", "children"),
}

NUMBER_WORDS: dict[str, int] = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}
SCALE_WORDS: dict[str, int] = {"hundred": 100, "thousand": 1000}

_JOINERS = re.compile(r"[\s\-'’`]+")


def canon_key(text: str) -> str:
    """The lookup form of a phrase: "Rock 'n' Roll", "rock-n-roll" → "rocknroll"."""
    return _JOINERS.sub("", text.lower())


def phrase_alternation(phrases: list[str]) -> str:
    """A regex alternation accepting each phrase with loose spaces, hyphens, apostrophes.

    Longest first, so "heavy metal" wins over "heavy" at the same position.
    """
    parts = []
    for phrase in sorted(set(phrases), key=len, reverse=True):
        parts.append(r"[\s\-']*".join(re.escape(word) for word in phrase.split(" ")))
    return "|".join(parts)
