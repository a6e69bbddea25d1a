"""Real-time factor and peak memory of the built-in engine, one 3-minute song per genre.

Each genre renders in its own child process so that the peak RSS reported is that song's,
not the maximum over everything rendered before it. Run from the repository root:

    .venv/bin/python benchmarks/bench_engine.py [--duration 180] [--genre jazz ...]
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

from cassetted.music.styles import GENRE_BPM  # noqa: E402
from cassetted.schemas import GENRES, SongSpec  # noqa: E402


def _one(genre: str, duration: float) -> dict:
    from cassetted.music.builtin import BuiltinEngine

    lo, hi = GENRE_BPM[genre]
    spec = SongSpec(genre=genre, mood="uplifting", bpm=(lo + hi) // 2, key="A minor",
                    duration_s=duration, seed=42)
    engine = BuiltinEngine()
    t0 = time.perf_counter()
    audio = engine.generate(spec, lambda f, n: None)
    elapsed = time.perf_counter() - t0
    return {
        "genre": genre, "bpm": spec.bpm, "audio_s": audio.duration_s, "render_s": elapsed,
        "rtf": elapsed / audio.duration_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=180.0)
    ap.add_argument("--genre", action="append", choices=GENRES)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_one(args.child, args.duration)))
        return

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"{'genre':<11} {'bpm':>4} {'audio s':>8} {'render s':>9} {'RTF':>7} {'peak RSS MB':>12}")
    for genre in args.genre or GENRES:
        out = subprocess.run([sys.executable, __file__, "--child", genre, "--duration", str(args.duration)],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{r['genre']:<11} {r['bpm']:>4} {r['audio_s']:>8.1f} {r['render_s']:>9.2f} {r['rtf']:>7.3f} "
              f"{r['peak_rss_mb']:>12.0f}", flush=True)


if __name__ == "__main__":
    main()
