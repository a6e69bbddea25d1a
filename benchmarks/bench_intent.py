"""How long the rule-based intent parser takes per utterance (p50/p99/max).

Run: `.venv/bin/python benchmarks/bench_intent.py [N]`. Utterances are generated from
templates (seeded, so every run parses the same ones) with a household's rooms, plus a
few hostile inputs at the 1000-character cap. Prints figures; asserts nothing.
"""

from __future__ import annotations

import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cassetted.config import RoomSettings
from cassetted.voice.intent import parse

ROOMS = {
    "living_room": RoomSettings(name="Living Room", aliases=["lounge"]),
    "kids_room": RoomSettings(name="Kids Room"),
    "kitchen": RoomSettings(name="Kitchen"),
    "office": RoomSettings(name="Office", aliases=["study"]),
    "master_bedroom": RoomSettings(name="Master Bedroom", aliases=["bedroom"]),
}
WAKE = ["", "Hey Google, ", "Alexa, ", "OK Rhasspy ", "please "]
VERB = ["create", "make", "write me", "compose", "play", "generate", "I'd like"]
MOOD = ["", "relaxing ", "chill ", "happy ", "upbeat ", "sad ", "energetic ", "dark ", "mellow "]
GENRE = ["", "jazz ", "EDM ", "hip hop ", "rock'n'roll ", "piano sonata ", "country ", "ambient "]
NOUN = ["song", "track", "tune", "lullaby", "jingle"]
EXTRA = ["", " for the living room", " in the kids' room", " in the lounge", " for the garage",
         " at 92 bpm", " two minutes long", " in F sharp minor", " with no vocals", " in French",
         " about my cat", " everywhere", " for the kids", " a minute and a half",
         " about the rain in the kitchen at ninety bpm"]
HOSTILE = ["one " * 250 + "bpm", "in the key of " * 70, "🎷" * 1000, "about " * 166, "x" * 5000]


def utterances(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        extras = "".join(rng.sample(EXTRA, rng.randint(0, 3)))
        out.append(f"{rng.choice(WAKE)}{rng.choice(VERB)} a {rng.choice(MOOD)}{rng.choice(GENRE)}"
                   f"{rng.choice(NOUN)}{extras}")
    return out


def timed(texts: list[str]) -> list[float]:
    times = []
    for text in texts:
        start = time.perf_counter()
        parse(text, ROOMS)
        times.append(time.perf_counter() - start)
    return sorted(times)


def report(label: str, times: list[float]) -> None:
    def q(p: float) -> float:
        return times[min(len(times) - 1, int(p * len(times)))] * 1e6

    print(f"{label:<28} n={len(times):<6} p50={q(0.5):7.1f} µs  p99={q(0.99):7.1f} µs  "
          f"max={times[-1] * 1e6:8.1f} µs  mean={statistics.fmean(times) * 1e6:7.1f} µs")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    texts = utterances(n)
    start = time.perf_counter()
    parse(texts[0], ROOMS)  # first call compiles the room matcher for this room set
    print(f"first parse (room matcher compiled): {(time.perf_counter() - start) * 1e6:.0f} µs")
    timed(texts[:200])  # warm up
    report("typical utterances", timed(texts))
    report("hostile, at 1000-char cap", timed(HOSTILE * 20))
    print(f"python {platform.python_version()} on {platform.machine()} "
          f"({platform.processor() or platform.platform()})")


if __name__ == "__main__":
    main()
