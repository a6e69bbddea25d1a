"""Render time, real-time factor and peak memory of the built-in engine plus the loudness
stage, as the pipeline runs them (engine.generate, then audio.normalize_loudness).

Each song renders in its own child process so that the peak RSS reported is that song's,
not the maximum over everything rendered before it. Wall time is what issue #3's goal is
about; CPU time is printed too because it stays meaningful on a shared, busy machine.
Run from the repository root:

    .venv/bin/python benchmarks/bench_engine.py [--duration 30 --duration 180 ...] [--genre jazz ...]

Each song is rendered twice, as the default path makes it (`sung`: with lyrics, so the
voice sings them - the words themselves when piper-tts and a Piper voice are installed,
else the wordless voice) and `instrumental`, side by side: the voice is most of a sung
song's engine time, so a figure without it flatters the default. `--path sung` or
`--path instrumental` renders one of them. With --repeat 1 the sung time includes loading
the voice and reading every word once (a daemon pays that once per voice and word); with
more repeats the fastest, warm run is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cassetted.contract.schemas import GENRES, SongSpec
from cassetted.music.styles import GENRE_BPM

_LYRICS = """[Verse]
Morning light comes through the window
Every voice above the crowd
Coffee steaming on the table
Sunshine spilling all around
[Chorus]
Sing it loud and sing it proud
We keep on moving through the night
Hold on tight and never let go
Everything will be alright
[Verse]
Rivers running to the ocean
Yellow leaves upon the ground
Every heart is in the motion
Listen to the sound
[Bridge]
Slow it down and breathe it in
Let the music start again"""


def _one(genre: str, duration: float, repeat: int, vocals: bool = False) -> dict:
    from cassetted.audio import normalize_loudness
    from cassetted.music.builtin.engine import BuiltinEngine

    lo, hi = GENRE_BPM[genre]
    spec = SongSpec(genre=genre, mood="uplifting", bpm=(lo + hi) // 2, key="A minor",
                    duration_s=duration, seed=42, lyrics=_LYRICS if vocals else "")
    engine = BuiltinEngine()
    best: dict | None = None
    for _ in range(repeat):                     # the fastest of `repeat` runs: least disturbed
        w0, c0 = time.perf_counter(), time.process_time()
        audio = engine.generate(spec, lambda f, n: None)
        w1 = time.perf_counter()
        normalize_loudness(audio)
        w2, c2 = time.perf_counter(), time.process_time()
        run = {"engine_s": w1 - w0, "loudness_s": w2 - w1, "render_s": w2 - w0, "cpu_s": c2 - c0}
        if best is None or run["render_s"] < best["render_s"]:
            best = run
        del audio
    assert best is not None
    return {
        "genre": genre, "bpm": spec.bpm, "audio_s": duration, **best,
        "rtf": best["render_s"] / duration,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, action="append",
                    help="song length in seconds (repeatable; default 30, 180 and 600)")
    ap.add_argument("--genre", action="append", choices=GENRES)
    ap.add_argument("--repeat", type=int, default=1, help="runs per song; the fastest is reported")
    ap.add_argument("--path", choices=("both", "sung", "instrumental"), default="both",
                    help="sung (the default path: lyrics and voice), instrumental, or both")
    ap.add_argument("--vocals", action="store_true", help=argparse.SUPPRESS)  # the child's
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    durations = args.duration or [30.0, 180.0, 600.0]
    if args.child:
        print(json.dumps(_one(args.child, durations[0], args.repeat, args.vocals)))
        return

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}")
    print(f"{'genre':<11} {'path':<13} {'bpm':>4} {'audio s':>8} {'engine s':>9} "
          f"{'loudness s':>11} {'render s':>9} {'RTF':>7} {'CPU s':>7} {'peak RSS MB':>12}")
    paths = {"both": (True, False), "sung": (True,), "instrumental": (False,)}[args.path]
    for duration in durations:
        for genre in args.genre or GENRES:
            for sung in paths:
                child = [sys.executable, __file__, "--child", genre, "--duration", str(duration),
                         "--repeat", str(args.repeat), *["--vocals"] * sung]
                out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                path = "sung" if sung else "instrumental"
                print(f"{r['genre']:<11} {path:<13} {r['bpm']:>4} {r['audio_s']:>8.1f} "
                      f"{r['engine_s']:>9.2f} {r['loudness_s']:>11.2f} {r['render_s']:>9.2f} "
                      f"{r['rtf']:>7.4f} {r['cpu_s']:>7.2f} {r['peak_rss_mb']:>12.0f}", flush=True)


if __name__ == "__main__":
    main()
