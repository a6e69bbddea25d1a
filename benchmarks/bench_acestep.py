"""The in-process ACE-Step engine per song length and batch: model time, the daemon's time
outside the model, peak memory, real-time factor.

Each song runs through the real production path of a worker child: `Pipeline.run` (lyrics ->
the `acestep` engine -> loudness -> FLAC encode + tags -> file in the library). "Model" is
the time the engine's model thread spends (LM codes + diffusion + VAE decode); "outside" is
everything else the daemon adds to a song (request building, progress marshalling,
resampling to the library rate, loudness, encoding, tagging, writing the file). Peak memory
is the GPU's peak allocation on CUDA, the process's peak resident set on the CPU. The
real-time factor is wall time over the seconds of music produced (all takes).

Without --checkpoint it builds the tests' tiny random-weight checkpoint in the official
layout and naming (tests/acestep/tiny.py), so it runs anywhere; a tiny model takes
milliseconds, so its figures measure the daemon's overhead, not ACE-Step's speed. With the
real weights on a GPU:

    .venv/bin/python benchmarks/bench_acestep.py --device cuda --checkpoint /srv/ace-step-1.5
    .venv/bin/python benchmarks/bench_acestep.py --device cuda      # tiny model: overhead
    .venv/bin/python benchmarks/bench_acestep.py --device cpu --quick
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

from cassetted.contract.schemas import SongSpec


class RssPeak:
    """The process's peak resident set while a block runs (sampled from /proc every 5 ms;
    ru_maxrss is a high-water mark of the whole process, useless per run)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(0.005)

    def __enter__(self) -> RssPeak:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--checkpoint", type=Path, help="ACE-Step 1.5 folder (default: a tiny one)")
    ap.add_argument("--dit", default="turbo")
    ap.add_argument("--lm", default="none")
    ap.add_argument("--lengths", default="30,120,240", help="song lengths in seconds")
    ap.add_argument("--batches", default="1,4", help="takes per request")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell (median); one more warms up")
    ap.add_argument("--quick", action="store_true", help="30 s and 120 s, batch 1 and 4, one run each")
    ap.add_argument("--sample-rate", type=int, default=48000)
    ap.add_argument("--format", default="flac", choices=["flac", "ogg", "mp3", "wav"])
    args = ap.parse_args()
    lengths = [float(x) for x in args.lengths.split(",")]
    batches = [int(x) for x in args.batches.split(",")]
    repeat = args.repeat
    if args.quick:
        lengths, repeat = [x for x in lengths if x <= 120] or lengths[:1], 1

    import torch

    from cassetted.jobs.pipeline import Pipeline, TaskOrder
    from cassetted.lyrics.builtin import BuiltinLyrics
    from cassetted.music.acestep.engine import AceStepEngine, AceStepSettings

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device cuda, but torch {torch.__version__} sees no CUDA GPU (try --device cpu)")
    work = Path(tempfile.mkdtemp(prefix="bench-acestep-"))
    checkpoint, lm = args.checkpoint, args.lm
    if checkpoint is None:
        from tests.music.acestep.tiny import write_checkpoint

        checkpoint = write_checkpoint(work / "tiny", lm="1.7B" if lm != "none" else None,
                                      variants=(args.dit,))
        lm = "1.7B" if lm != "none" else "none"
        label = "tiny random-weight model, official layout (overhead, not ACE-Step's speed)"
    else:
        label = f"{checkpoint} ({args.dit}, lm {lm})"

    engine = AceStepEngine(AceStepSettings(checkpoint_dir=checkpoint, dit=args.dit, lm=lm,
                                           device=args.device, max_variants=max(batches)),
                           args.sample_rate)
    started = time.perf_counter()
    engine.warm_up()
    load_s = time.perf_counter() - started
    loaded = engine._loaded
    assert loaded is not None
    cuda = loaded.device.type == "cuda"
    gpu = torch.cuda.get_device_name(loaded.device) if cuda else "-"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"torch {torch.__version__}, device {loaded.device} {gpu}, dtype {str(loaded.dtype)[6:]}")
    print(f"model: {label}; loaded in {load_s:.2f} s; -> {args.format} at {args.sample_rate} Hz")
    print(f"\n{'length':>7} {'batch':>5} {'model s':>9} {'outside s':>10} {'outside %':>10} "
          f"{'peak ' + ('VRAM' if cuda else 'RSS'):>11} {'RTF':>8}")

    writer = BuiltinLyrics()
    pipeline = Pipeline(work / "library", args.format)
    number = 0
    for length in lengths:
        for batch in batches:
            rows = []
            for run in range(repeat + 1):  # the first run warms caches and is not counted
                number += 1
                spec = SongSpec(prompt="a song about the city at night", genre="electronic",
                                mood="energetic", bpm=124, key="F minor", duration_s=length,
                                seed=1000 + number)
                order = TaskOrder(variants=batch) if batch > 1 else None
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats(loaded.device)
                with RssPeak() as rss:
                    began = time.perf_counter()
                    pipeline.run(f"bench{number}", spec, writer.write, engine, lambda state, f: None,
                                 threading.Event(), order)
                    total = time.perf_counter() - began
                peak = torch.cuda.max_memory_allocated(loaded.device) if cuda else rss.peak
                if run:
                    rows.append((engine.last_model_seconds, total - engine.last_model_seconds, peak,
                                 total / (length * batch)))
            model_s, outside_s = (statistics.median(r[i] for r in rows) for i in (0, 1))
            peak = max(r[2] for r in rows)
            rtf = statistics.median(r[3] for r in rows)
            print(f"{length:>6g}s {batch:>5} {model_s:>9.3f} {outside_s:>10.3f} "
                  f"{100 * outside_s / max(model_s, 1e-9):>9.1f}% {peak / 2**30:>9.2f} GiB {rtf:>8.4f}")
    print("\nQueueing and MQTT publishing are the daemon's, not the engine's: see bench_spine.py.")
    engine.close()


if __name__ == "__main__":
    main()
