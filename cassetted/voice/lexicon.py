"""Word lists of the intent parser: what people say, mapped onto the contract's values.

Kept apart from the matching logic so that adding a synonym is a one-line change that
needs no understanding of the regular expressions in `cassetted.voice.intent`.

Decisions worth knowing (see also examples/homeassistant/assist/README.md):
- "lounge" is NOT a genre: it is the most common alias of a living room.
- "lo-fi" is hip-hop (lo-fi beats) and suggests a relaxing mood when none is said.
- folk, bluegrass, americana → country; metal, punk, grunge → rock; blues, swing → jazz;
  soul, funk, disco, r&b → pop; meditation, new age, drone → ambient.
- speech-to-text spellings count as the word: "jaz", "low fi", "r and b"; other typos are
  read by `cassetted.voice.intent`'s spelling pass (one edit away from a word of these lists).
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
    "r and b": "pop", "r n b": "pop",
    # jazz
    "jazz": "jazz", "jaz": "jazz", "jazzy": "jazz", "blues": "jazz", "bluesy": "jazz",
    "swing": "jazz", "bebop": "jazz", "bossa nova": "jazz", "big band": "jazz",
    # electronic
    "electronic": "electronic", "electronica": "electronic", "edm": "electronic",
    "techno": "electronic", "trance": "electronic", "dubstep": "electronic",
    "house": "electronic", "deep house": "electronic", "drum and bass": "electronic",
    "drum n bass": "electronic", "drum and base": "electronic", "drum n base": "electronic",
    "dnb": "electronic", "electro": "electronic",
    "synthwave": "electronic", "dance": "electronic", "club": "electronic",
    # classical
    "classical": "classical", "orchestral": "classical", "orchestra": "classical",
    "symphony": "classical", "symphonic": "classical", "piano sonata": "classical",
    "sonata": "classical", "concerto": "classical", "baroque": "classical",
    "string quartet": "classical",
    # hip-hop
    "hip hop": "hip-hop", "rap": "hip-hop", "trap": "hip-hop",
    "boom bap": "hip-hop", "grime": "hip-hop", "lo fi": "hip-hop",
    "low fi": "hip-hop",
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
MOOD_HINTS: dict[str, str] = {
    "lullaby": "relaxing", "bedtime": "relaxing", "lo fi": "relaxing", "low fi": "relaxing",
}

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
    return "|".join(r"[\s\-']*".join(re.escape(word) for word in phrase.split(" "))
                    for phrase in sorted(set(phrases), key=len, reverse=True))


# Typo tolerance: a word of four letters or more that is one edit (a letter missing,
# extra, wrong, or two swapped) from a genre, mood or room word is read as that word
# ("electonic", "relaxin", "kichen"). Real English words one edit from such a word are
# never "corrected": "sing" is not "swing", "child" not "chill", "mouse" not "house".
# Generated once from a US English word list (wamerican) against the words above and the
# usual room words; regenerate it when adding a word of four letters or more.
TYPO_PROTECTED: frozenset[str] = frozenset(["aback", "abasement", "abby", "aids", "aloft", "american", "americans", "ames", "anger", "antic", "arden", "aright", "arty", "ashed", "aster", "attica", "attics", "awing", "baath", "babe", "bach", "backs", "backward", "backyards", "badger", "balk", "ball", "balm", "banged", "bangor", "bank", "banker", "banner", "banter", "bard", "bark", "barth", "basemen", "basements", "bash", "bask", "batch", "bate", "bathe", "bathrooms", "baths", "bats", "batu", "bays", "bebops", "beck", "bedrooms", "bedtimes", "bellow", "beth", "bids", "bight", "bittersweets", "black", "blight", "blot", "blue", "blued", "bluer", "bluest", "blurs", "boas", "boat", "bobs", "bogs", "bolt", "bomber", "boob", "book", "boom", "boon", "boor", "boos", "boost", "booth", "boots", "booty", "bops", "boss", "bossy", "both", "bout", "bows", "boyd", "boyer", "brock", "broom", "buck", "bumped", "bumping", "bunk", "bunny", "buoys", "buys", "cain", "calf", "cali", "calk", "calking", "call", "calling", "calms", "calving", "came", "card", "casement", "caster", "cellars", "cheater", "child", "chile", "chili", "chiller", "chilli", "chills", "chilly", "cinemas", "cisco", "clam", "clay", "clubs", "clue", "clues", "cock", "cody", "collar", "come", "concert", "concerti", "concertos", "concerts", "conservator", "conservators", "coot", "copy", "cory", "cosby", "cost", "county", "coyer", "crap", "creamy", "crime", "crock", "crone", "dame", "dames", "danced", "dancer", "dances", "dane", "danger", "dank", "dante", "dare", "darn", "dart", "deriving", "dicing", "diking", "dine", "dinging", "dinning", "dirk", "disc", "discos", "discs", "diving", "dock", "dome", "done", "doom", "dork", "douse", "draping", "drawings", "drawling", "dream", "dreams", "dreary", "drivings", "droned", "drones", "drove", "dumped", "dumping", "dunce", "dunk", "easter", "elector", "electra", "electron", "electronics", "emusic", "euphoria", "ewing", "fain", "fall", "fame", "faster", "fauna", "fellow", "fetal", "fine", "fining", "fink", "fistful", "fitting", "flay", "flub", "flues", "flunk", "flunky", "flyer", "fold", "folks", "font", "foot", "fork", "foul", "foyers", "france", "fright", "frock", "frond", "fronts", "frost", "fryer", "fuck", "fund", "fundy", "funks", "funny", "futility", "gage", "gages", "gain", "gale", "gales", "gall", "gamed", "gamer", "gamest", "gamey", "gamy", "gantry", "gape", "gapes", "garaged", "garages", "garbage", "gardens", "gases", "gate", "gates", "gave", "gaze", "gazes", "gentile", "gentled", "gentler", "gentles", "gently", "gills", "girds", "girl", "girts", "giving", "gloom", "glues", "goody", "grange", "grim", "grimed", "grimes", "grimm", "grimy", "gripe", "groom", "grudge", "grunges", "grungy", "guess", "guests", "gunk", "gunny", "gust", "hack", "hail", "hale", "half", "halfway", "halls", "hallways", "halo", "hals", "halt", "hanger", "hanky", "hard", "harden", "hark", "harpy", "hath", "haul", "heady", "heartbreaks", "heater", "heave", "hell", "hill", "hippy", "hitting", "hiving", "hock", "hole", "homed", "homer", "homes", "homey", "homie", "homy", "hone", "honey", "honk", "honks", "hooky", "hoot", "hope", "hopefuls", "horse", "hose", "housed", "houses", "hove", "howe", "hull", "hume", "humped", "humping", "hunk", "hyde", "hyped", "hyper", "hypes", "hypo", "incense", "intenser", "jack", "jain", "jame", "james", "jiving", "jock", "joys", "jumped", "jumping", "junk", "junky", "kidd", "kinds", "kiss", "kitchenettes", "kitchens", "kits", "krone", "lack", "lain", "lame", "lames", "lance", "landry", "lard", "lark", "lath", "left", "lids", "lift", "liking", "liming", "line", "lining", "livings", "lock", "lofts", "lofty", "lome", "loom", "loot", "lost", "lott", "lounged", "lounges", "louse", "lout", "lovely", "loving", "lumped", "lumping", "lunge", "mack", "maid", "mail", "maim", "maine", "mains", "mall", "mallow", "manger", "mani", "mann", "marin", "mark", "marty", "masher", "masters", "mastery", "math", "matter", "mavin", "meal", "medal", "medea", "medial", "median", "medias", "mediation", "medic", "medication", "medina", "meditations", "mejia", "melancholia", "melancholics", "mellon", "mellows", "mental", "meta", "metals", "mine", "mining", "mister", "mock", "moldy", "mood", "moods", "moot", "mouse", "musics", "muster", "name", "names", "nappy", "nark", "nine", "nome", "nostalgia", "nosy", "oath", "officer", "offices", "orchestras", "owing", "pack", "pain", "pall", "palm", "palming", "paltry", "panty", "parch", "pare", "parity", "park", "parry", "part", "partly", "parts", "pastry", "pasty", "path", "patios", "patty", "perch", "petal", "pianos", "pimped", "pimping", "pine", "pining", "pink", "pitting", "plan", "playrooms", "plays", "ploy", "plumped", "plumping", "plunk", "poach", "pock", "polk", "pooch", "positives", "posy", "pouch", "prance", "pray", "prime", "prone", "puck", "pulped", "pulping", "pumper", "punks", "puns", "punt", "puny", "pupped", "pupping", "quarter", "quartets", "quest", "quiets", "quilt", "quit", "quite", "rack", "rain", "ranger", "raster", "ratio", "razz", "related", "relating", "relaxes", "relay", "relayed", "relaying", "repressing", "restive", "rick", "rids", "right", "rime", "roam", "rocks", "rocky", "rome", "rood", "roof", "rook", "rooms", "roomy", "root", "rosy", "rouse", "rumps", "runny", "sack", "same", "sames", "sana", "sanger", "sappy", "saul", "saunas", "sawing", "scare", "seed", "seoul", "serena", "serener", "setting", "sewing", "shad", "shall", "share", "shauna", "shea", "sheds", "sherd", "shes", "shied", "shill", "shilled", "shitting", "shod", "shoed", "shred", "sids", "sift", "sifting", "silting", "sine", "sing", "siring", "siting", "sittings", "skids", "slay", "sled", "sleep", "sleeps", "sleety", "sling", "slitting", "slues", "smoothing", "snare", "sober", "sock", "sofa", "softy", "soil", "some", "sonatas", "sonny", "soot", "sort", "souls", "soup", "sour", "souse", "sowing", "space", "spade", "spake", "spar", "spared", "sparer", "spares", "spark", "spars", "sparse", "spate", "sped", "spire", "spitting", "splay", "spore", "spring", "spunk", "stare", "staring", "stdio", "sting", "storing", "strap", "strings", "stringy", "strong", "strung", "stud", "studios", "studly", "studs", "sturdy", "sued", "suing", "sunk", "sunni", "swig", "swine", "swings", "swung", "synch", "tack", "tall", "tame", "tames", "tarp", "taster", "terraced", "terraces", "terrance", "theaters", "theatres", "tine", "toiled", "toiler", "toilets", "tome", "toot", "torch", "toys", "trace", "tram", "tramp", "tran", "trances", "traps", "tray", "trip", "tunny", "twine", "type", "umped", "umping", "upbeats", "upliftings", "vain", "vance", "vaster", "verandah", "verandas", "vine", "wack", "wall", "wane", "ward", "warden", "warty", "waster", "westerns", "whine", "wide", "wife", "wile", "wince", "wind", "wined", "wines", "wing", "wining", "wink", "wino", "wins", "wipe", "wire", "wise", "wishful", "witting", "wive", "wonky", "woody", "workouts", "workshops", "wrap", "wright", "yack", "yards", "yarn", "yellow", "yock", "yolk", "zoom", "zorch"])

# Words that make up room names, besides COMMON_ROOM_WORDS, whose English neighbours are
# in TYPO_PROTECTED too (a configured room's own words are the targets at run time).
ROOM_NAME_WORDS: tuple[str, ...] = (
    "living", "room", "master", "guest", "kids", "dining", "bath", "main", "upstairs",
    "downstairs", "family", "media", "game", "games", "play", "utility", "laundry", "spare",
    "baby", "children", "childrens", "boys", "girls", "front", "back", "home", "house",
    "theater", "theatre", "cinema", "wine", "music", "sitting", "drawing", "rumpus",
)

# Frequent words of requests: a typo one edit from one of them ("somthing") is that word
# misspelt, so the spelling pass leaves it alone even when it is one edit from a genre or
# mood word too ("soothing").
COMMON_REQUEST_WORDS: tuple[str, ...] = (
    "something", "anything", "nothing", "everything", "some", "song", "songs", "tune",
    "tunes", "track", "tracks", "music", "piece", "beat", "beats", "sound", "style",
    "make", "play", "create", "write", "compose", "generate", "please", "thanks", "thank",
    "want", "would", "could", "like", "with", "without", "about", "minute", "minutes",
    "second", "seconds", "vocals", "lyrics", "instrumental", "version", "speaker",
    "speakers", "tempo", "major", "minor", "sharp", "flat", "long", "short", "slow",
    "fast", "little", "more", "less", "really", "very", "just", "also", "then", "there",
    "their", "them", "they", "this", "that", "these", "those", "what", "when", "where",
    "which", "while", "your", "mind", "kind", "google", "alexa", "rhasspy", "nabu",
)


# Words that make an utterance a song request even when it names no genre, mood, tempo,
# key or length ("play something for grandma"). Without one of them, or of those, a voice
# command is not a song request (`not_understood`; `[voice] any_utterance` turns it off).
SONG_REQUEST_WORDS: frozenset[str] = frozenset({
    "song", "songs", "music", "musical", "tune", "tunes", "track", "tracks", "melody",
    "melodies", "lullaby", "lullabies", "ballad", "ballads", "anthem", "anthems", "jingle",
    "beat", "beats", "make", "create", "compose", "play", "sing", "generate",
    "instrumental", "lyrics", "chorus", "verse", "rap", "jam", "serenade", "hymn",
    "playlist", "groove", "remix", "karaoke", "soundtrack", "bop", "banger", "rhyme",
    "rhymes", "surprise",
})
