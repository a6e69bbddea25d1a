"""Time spent outside the ACE-Step model per song, relative to the model's own time.

Each song runs through the real production path of a worker child: `Pipeline.run` (lyrics ->
the `acestep` engine -> loudness -> FLAC encode + tags -> file in the library). "Model" is
the time the engine's model thread spends (LM codes + diffusion + VAE decode); everything
else is the daemon's share, split into lyrics, engine-side shaping (request building,
progress marshalling, resampling to the library rate) and loudness/encode/store.
The goal in issue 8 is a daemon share under 2 % of model time on a GPU.

Without --checkpoint it builds the tests' tiny random-weight checkpoint, so it runs on any
CPU — but a tiny model takes milliseconds, which makes the *ratio* meaningless there; the
absolute overhead figures are what carry over. With real weights on a GPU:

    .venv/bin/python benchmarks/bench_acestep.py --checkpoint /srv/ace-step-1.5 --duration 120
    .venv/bin/python benchmarks/bench_acestep.py            # tiny model, CPU
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cassetted.schemas import SongSpec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, help="ACE-Step 1.5 folder (default: a tiny one)")
    ap.add_argument("--dit", default="turbo")
    ap.add_argument("--lm", default="none")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--songs", type=int, default=5)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--sample-rate", type=int, default=44100)
    ap.add_argument("--format", default="flac", choices=["flac", "ogg", "mp3", "wav"])
    args = ap.parse_args()

    import torch

    from cassetted.lyrics.builtin import BuiltinLyrics
    from cassetted.music.acestep import AceStepEngine, AceStepSettings
    from cassetted.pipeline import Pipeline

    work = Path(tempfile.mkdtemp(prefix="bench-acestep-"))
    checkpoint = args.checkpoint
    if checkpoint is None:
        from tests.acestep.tiny import write_checkpoint

        checkpoint = write_checkpoint(work / "tiny", lm="0.6B" if args.lm != "none" else None)
        lm = "0.6B" if args.lm != "none" else "none"
        label = "tiny random-weight model"
    else:
        lm = args.lm
        label = f"{checkpoint} ({args.dit}, lm {lm})"

    engine = AceStepEngine(AceStepSettings(checkpoint_dir=checkpoint, dit=args.dit, lm=lm,
                                           device=args.device), args.sample_rate)
    t0 = time.perf_counter()
    engine.warm_up()
    load_s = time.perf_counter() - t0
    loaded = engine._loaded
    assert loaded is not None
    gpu = torch.cuda.get_device_name(loaded.device) if loaded.device.type == "cuda" else "-"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"torch {torch.__version__}, device {loaded.device} {gpu}")
    print(f"model: {label}; loaded in {load_s:.2f} s; {args.duration:g} s songs -> {args.format}")

    writer = BuiltinLyrics()
    pipeline = Pipeline(work / "library", args.format)
    rows = []
    for number in range(args.songs + 1):  # the first song warms caches and is not counted
        spec = SongSpec(prompt="a song about the city at night", genre="electronic", mood="energetic",
                        bpm=124, key="F minor", duration_s=args.duration, seed=1000 + number)
        timings: dict[str, float] = {}

        def timed_lyrics(s: SongSpec):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return writer.write(s)
            finally:
                timings["lyrics"] = time.perf_counter() - started

        engine_wall: dict[str, float] = {}
        original_generate = engine.generate

        def timed_generate(s, progress, task=None):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return original_generate(s, progress, task)
            finally:
                engine_wall["generate"] = time.perf_counter() - started

        engine.generate = timed_generate  # type: ignore[method-assign]
        started = time.perf_counter()
        pipeline.run(f"bench{number}", spec, timed_lyrics, engine, lambda state, f: None,
                     threading.Event())
        total = time.perf_counter() - started
        engine.generate = original_generate  # type: ignore[method-assign]
        model = engine.last_model_seconds
        shaping = engine_wall["generate"] - model
        store = total - engine_wall["generate"] - timings["lyrics"]
        if number:
            rows.append({"total": total, "model": model, "lyrics": timings["lyrics"],
                         "shaping": shaping, "store": store, "outside": total - model})

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"\n{'per song (median of ' + str(len(rows)) + ')':<34}{'seconds':>10}{'% of model':>12}")
    for key, name in (("model", "model (LM + DiT + VAE decode)"), ("lyrics", "lyrics (builtin writer)"),
                      ("shaping", "engine shaping + marshalling"),
                      ("store", "loudness + encode + tag + file"), ("outside", "outside the model")):
        print(f"{name:<34}{med(key):>10.3f}{100 * med(key) / med('model'):>11.1f}%")
    print(f"{'real-time factor (model)':<34}{med('model') / args.duration:>10.4f}")

    # The tiny VAE runs at 8 kHz; a real checkpoint's output is 48 kHz. What shaping costs then:
    import numpy as np

    from cassetted.music._acestep_audio import to_engine

    real = np.random.default_rng(0).standard_normal((int(args.duration * 48000), 2)).astype(np.float32)
    to_engine(real, 48000, args.sample_rate, args.duration)  # warm (SciPy import)
    started = time.perf_counter()
    to_engine(real, 48000, args.sample_rate, args.duration)
    print(f"48 kHz model output -> {args.sample_rate} Hz, exact length: "
          f"{time.perf_counter() - started:.3f} s per song")
    print("\nQueueing and MQTT publishing are the daemon's, not the engine's: see bench_spine.py.")
    engine.close()


if __name__ == "__main__":
    main()
