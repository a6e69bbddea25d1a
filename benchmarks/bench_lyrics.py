"""Lyrics figures: builtin latency (cold and warm, p50/p99 by song length), the chain's
overhead over a loopback OpenAI-compatible endpoint, and peak RSS. Prints; never asserts.

    .venv/bin/python benchmarks/bench_lyrics.py [--n 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _spec(**kw):
    from cassetted.contract.schemas import SongSpec

    base = dict(prompt="a song about my cat", genre="pop", mood="uplifting", bpm=110,
                key="C major", duration_s=120, seed=1)
    base.update(kw)
    return SongSpec(**base)


def bench_builtin(n: int) -> None:
    t0 = time.perf_counter()
    from cassetted.lyrics.builtin import BuiltinLyrics

    writer = BuiltinLyrics()
    writer.write(_spec())
    cold_ms = (time.perf_counter() - t0) * 1e3
    print(f"builtin cold start (import + CMUdict load + first song): {cold_ms:.0f} ms")
    from cassetted.contract.schemas import GENRES, MOODS

    for duration in (30, 120, 240, 600):
        times = []
        for i in range(n):
            spec = _spec(duration_s=duration, seed=i, genre=GENRES[i % len(GENRES)],
                         mood=MOODS[i % len(MOODS)])
            start = time.perf_counter()
            writer.write(spec)
            times.append((time.perf_counter() - start) * 1e3)
        print(f"builtin {duration:>3} s song: p50 {statistics.median(times):6.2f} ms  "
              f"p99 {_pct(times, 0.99):6.2f} ms  (n={n})")


def bench_openai_roundtrip(n: int) -> None:
    from cassetted.lyrics.chain import build_chain
    from cassetted.lyrics.settings import LyricsSettings

    body = json.dumps({"choices": [{"message": {"role": "assistant", "content": json.dumps({
        "title": "My Cat", "style": "acoustic pop",
        "lyrics": "[Verse]\nMy cat is sleeping in the sun\nShe dreams of mice and having fun\n"
                  "[Chorus]\nOh my cat, my furry friend\nYou stay with me until the end"})}}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    settings = LyricsSettings(chain=["openai"], openai={"base_url": f"http://127.0.0.1:{httpd.server_address[1]}/v1"})
    chain = build_chain(settings)
    times = []
    for i in range(n):
        start = time.perf_counter()
        chain.write(_spec(seed=i, duration_s=60))
        times.append((time.perf_counter() - start) * 1e3)
    httpd.shutdown()
    print(f"openai provider over loopback (HTTP + validation): p50 {statistics.median(times):.2f} ms  "
          f"p99 {_pct(times, 0.99):.2f} ms  (n={n})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    bench_builtin(args.n)
    bench_openai_roundtrip(args.n)
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
