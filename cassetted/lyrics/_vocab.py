"""The built-in writer's vocabulary: rhyme words, genre and mood words, line templates.

Kept as data, all of it child-safe, so the writer's code stays small. End words are nouns
that read well after "the"; they are grouped into rhyme families at runtime with CMUdict,
so a family only holds words that really rhyme.
"""

from __future__ import annotations

END_WORDS: tuple[str, ...] = ("night", "light", "kite", "sight", "flight", "sky", "day", "way", "bay", "play", "rain", "lane", "train", "sun", "run", "fun", "moon", "tune", "afternoon", "balloon", "lagoon", "street", "beat", "heat", "seat", "door", "floor", "shore", "store", "sea", "tree", "dream", "stream", "team", "fire", "wire", "choir", "time", "chime", "climb", "rhyme", "ground", "sound", "playground", "heart", "start", "art", "snow", "glow", "show", "line", "sign", "pine", "shine", "spring", "string", "swing", "ring", "wing", "band", "hand", "sand", "land", "air", "chair", "stair", "square", "fair", "hall", "wall", "ball", "call", "hill", "track", "back", "book", "brook", "nook", "home", "foam", "star", "car", "guitar", "breeze", "trees", "cloud", "crowd", "bell", "shell", "well", "town", "crown", "stone", "phone", "lake", "cake", "wave", "cave", "bridge", "ridge", "hat", "mat")

STOP_WORDS: frozenset[str] = frozenset(["a", "an", "the", "and", "or", "but", "of", "for", "to", "in", "on", "at", "by", "with", "from", "into", "onto", "about", "over", "under", "as", "is", "are", "was", "were", "be", "been", "being", "am", "i", "me", "my", "mine", "you", "your", "yours", "we", "us", "our", "he", "him", "his", "she", "her", "it", "its", "they", "them", "their", "this", "that", "these", "those", "some", "any", "all", "very", "really", "just", "so", "too", "please", "can", "could", "would", "should", "will", "shall", "may", "might", "must", "do", "does", "did", "make", "makes", "made", "write", "writes", "sing", "sings", "play", "plays", "create", "give", "want", "wants", "like", "likes", "love", "song", "songs", "tune", "tunes", "track", "tracks", "music", "lyrics", "lyric", "tune", "jingle", "piece", "ballad", "something", "anything", "thing", "things", "one", "little", "bit", "kind", "sort", "type", "style", "feel", "feeling", "mood", "genre", "beat", "beats", "bpm", "key", "major", "minor", "tempo", "room", "rooms", "living", "kitchen", "bedroom", "bathroom", "hallway", "garden", "office", "speaker", "speakers", "everywhere", "house", "home", "now", "today", "tonight", "short", "long", "minute", "minutes", "second", "seconds", "quick", "hey", "hi", "okay", "ok", "let", "lets", "let's", "let’s", "yes", "no", "not", "ignore", "previous", "above", "instructions", "instruction", "print", "output", "say", "tell", "system", "prompt", "reply", "respond", "answer", "assistant"])

ADJECTIVES: dict[str, tuple[str, ...]] = {
    "uplifting": ("bright", "golden", "shining", "happy", "hopeful", "sunny"),
    "relaxing": ("gentle", "quiet", "easy", "lazy", "soft", "slow"),
    "energetic": ("electric", "wild", "loud", "restless", "racing", "burning"),
    "melancholic": ("grey", "lonely", "fading", "distant", "silent", "empty"),
}
VERBS: dict[str, tuple[str, ...]] = {
    "uplifting": ("rise", "shine", "sing", "fly"),
    "relaxing": ("drift", "rest", "sway", "float"),
    "energetic": ("dance", "run", "jump", "shout"),
    "melancholic": ("wait", "wander", "dream", "sigh"),
}
IMAGES: dict[str, tuple[str, ...]] = {
    "rock": ("guitar", "amplifier", "drummer", "engine"),
    "pop": ("radio", "melody", "mirror", "spotlight"),
    "jazz": ("saxophone", "piano", "trumpet", "bassline"),
    "electronic": ("synthesizer", "bassline", "neon sign", "laser"),
    "classical": ("violin", "orchestra", "cello", "harp"),
    "hip-hop": ("turntable", "microphone", "rhythm", "record"),
    "country": ("banjo", "fiddle", "pickup truck", "campfire"),
    "ambient": ("ocean", "horizon", "morning mist", "river"),
}
DEFAULT_TOPICS: dict[str, tuple[str, ...]] = {
    "uplifting": ("tomorrow", "the morning", "my friends"),
    "relaxing": ("the evening", "the summer", "the weekend"),
    "energetic": ("the city", "the weekend", "the crowd"),
    "melancholic": ("the winter", "yesterday", "the old days"),
}
# Per-genre syllables per line (inclusive).
SYLLABLE_RANGE: dict[str, tuple[int, int]] = {
    "rock": (6, 11), "pop": (6, 11), "jazz": (6, 11), "electronic": (5, 10),
    "classical": (6, 11), "hip-hop": (7, 13), "country": (6, 11), "ambient": (5, 10),
}

# Templates: {np} topic noun phrase ({NP} capitalised), {adj}, {verb}, {image}, {end} = rhyme
# word (always last). Written to avoid subject-verb agreement with the topic.
VERSE_TOPIC: tuple[str, ...] = (
    "{NP} and I beneath the {end}",
    "I found {np} out by the {end}",
    "we walk with {np} along the {end}",
    "{adj} thoughts of {np} and the {end}",
    "I remember {np} and the {end}",
    "every day with {np} beside the {end}",
    "I'm holding on to {np} and the {end}",
    "I wrote a line for {np} upon the {end}",
    "I see {np} near the {end}",
    "{adj} days with {np} around the {end}",
    "a {adj} song for {np} and the {end}",
    "I think of {np} across the {end}",
)
VERSE_PLAIN: tuple[str, ...] = (
    "I hear the {image} near the {end}",
    "a {adj} morning at the {end}",
    "the {image} is playing by the {end}",
    "we {verb} together under the {end}",
    "{adj} and free across the {end}",
    "the {adj} hours are passing by the {end}",
    "my heart is beating with the {end}",
    "we leave our footprints on the {end}",
    "a {adj} evening by the {end}",
    "the {image} is calling from the {end}",
    "so let us {verb} beyond the {end}",
    "I left a {adj} note upon the {end}",
    "the world is turning round the {end}",
    "we follow the {image} to the {end}",
)
CHORUS_TOPIC: tuple[str, ...] = (
    "oh {np}, you are my {end}",
    "sing it for {np} and the {end}",
    "we {verb} with {np} beneath the {end}",
    "{NP} forever, {adj} like the {end}",
    "hold on to {np} and the {end}",
    "{NP}, {np}, {adj} as the {end}",
)
# Chorus lines that end on the topic itself (used when a rhyme for it is in END_WORDS).
CHORUS_ENDS_ON_TOPIC: tuple[str, ...] = (
    "this is a song about {np}",
    "oh, we are singing for {np}",
    "{adj} and {adj2}, here's to {np}",
)
CHORUS_PLAIN: tuple[str, ...] = (
    "we {verb} and {verb2} until the {end}",
    "{adj} hearts are shining like the {end}",
    "come on and {verb} into the {end}",
    "we'll {verb} together to the {end}",
    "la la la, {adj} as the {end}",
    "turn it up and {verb} with the {end}",
)
BRIDGE: tuple[str, ...] = (
    "and when the {image} fades into the {end}",
    "maybe tomorrow we will find the {end}",
    "slow it down and listen to the {end}",
    "no matter what, we'll reach the {end}",
    "and if the {adj} {image} meets the {end}",
    "close your eyes and see the {end}",
    "and all the {adj} words become the {end}",
    "one more time we {verb} to the {end}",
)
OUTRO: tuple[str, ...] = (
    "so goodnight to {np} and the {end}",
    "we'll meet again beside the {end}",
    "and {np} is humming with the {end}",
    "the {image} is resting by the {end}",
    "we say goodbye and greet the {end}",
)
INTRO: tuple[str, ...] = (
    "here comes the {image} and the {end}",
    "listen to the {adj} {end}",
    "can you hear the {image} in the {end}",
    "a {adj} song begins beneath the {end}",
)
