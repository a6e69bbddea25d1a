"""Songs made by `cassetted worker` processes over NATS JetStream: throughput, scheduling
overhead and redelivery after a worker dies.

Runs a private nats-server (JetStream, temporary store), the daemon's ClusterScheduler in
this process (as the job runner drives it: produce, then committed) and real `cassetted
worker` subprocesses with the built-in engine. Figures:

- songs per minute for a burst of 10 s songs with 1, 2 and 4 workers (the machine's cores
  bound this: a worker renders on one core);
- scheduling overhead per job: from dispatch (publish) to the worker's first progress
  message, with idle workers (no queueing), p50 / p95;
- redelivery: a worker is killed with SIGKILL while it renders; the time until another
  worker starts the job (the lease, `lease_s`, plus the next pull).

    python benchmarks/bench_cluster.py [--songs 16] [--workers 1 2 4] [--lease 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cassetted import config
from cassetted.cluster.scheduler import ClusterScheduler
from cassetted.contract.schemas import JobState, SongRequest
from cassetted.jobs import spec as spec_module
from cassetted.store.database import new_id
from tests.fixtures.services import NatsServer, kill_with_children


def _settings(url: str, state: Path, lease_s: float) -> config.Settings:
    return config.load(None, state_dir=state, cluster={
        "nats_url": url, "local_workers": 0, "heartbeat_s": 0.5, "lease_s": lease_s,
        "max_in_flight": 64})


def _worker(url: str, workdir: Path, name: str, lease_s: float) -> subprocess.Popen[bytes]:
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "cassetted.toml"
    conf.write_text(f'[cluster]\nnats_url = "{url}"\nheartbeat_s = 0.5\nlease_s = {lease_s}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASSETTED_")}
    env["CASSETTED_STATE_DIR"] = str(folder / "state")
    log = (folder / "worker.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "cassetted", "worker", "--config", str(conf),
                             "--name", name], env=env, stdout=log, stderr=subprocess.STDOUT)


class Bench:
    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self.scheduler = ClusterScheduler(settings, self._state)
        self.first_progress: dict[str, float] = {}
        self.workers_of: dict[str, list[str]] = {}

    async def _state(self, job_id: str) -> str | None:
        return "queued"  # every job of the benchmark is wanted

    async def song(self, duration_s: float = 10.0, seed: int = 0) -> tuple[str, float, float]:
        """One job through the cluster: (job id, dispatched at, finished at)."""
        request = SongRequest(prompt="benchmark", duration_s=duration_s, seed=seed)
        spec = spec_module.resolve(request, self.settings.generation, None,
                                   spec_module._no_reading)
        job_id = new_id()

        def report(state: JobState, fraction: float) -> None:
            self.first_progress.setdefault(job_id, time.perf_counter())

        started = time.perf_counter()
        produced = await self.scheduler.produce(job_id, new_id(), spec, request, None, report)
        await self.scheduler.committed(job_id)
        self.workers_of.setdefault(produced.worker or "?", []).append(job_id)
        return job_id, started, time.perf_counter()


async def _wait_workers(bench: Bench, n: int) -> None:
    async with asyncio.timeout(60):
        while len(await bench.scheduler.workers(fresh=True)) < n:  # noqa: ASYNC110 - adverts come from a bucket, no event
            await asyncio.sleep(0.2)


async def _redelivery(bench: Bench, procs: list[subprocess.Popen[bytes]], lease_s: float) -> None:
    """Kill the worker rendering a long song; time until another one has started it."""
    job_id = new_id()
    request = SongRequest(prompt="benchmark", duration_s=600, seed=5)
    spec = spec_module.resolve(request, bench.settings.generation, None, spec_module._no_reading)
    job = asyncio.ensure_future(bench.scheduler.produce(job_id, new_id(), spec, request, None,
                                                        lambda state, fraction: None))
    async with asyncio.timeout(60):
        while (first := bench.scheduler.rendering(job_id)) is None:  # noqa: ASYNC110 - a benchmark's probe of state
            await asyncio.sleep(0.02)
    killed = time.perf_counter()
    kill_with_children(procs[int(first.removeprefix("w"))])
    async with asyncio.timeout(lease_s * 4 + 30):
        while bench.scheduler.rendering(job_id) in (first, None):  # noqa: ASYNC110 - a benchmark's probe of state
            await asyncio.sleep(0.02)
    print(f"  redelivery after SIGKILL of the rendering worker: "
          f"{time.perf_counter() - killed:.2f} s (lease_s = {lease_s:g})")
    bench.scheduler.cancel(job_id)
    with contextlib.suppress(Exception):
        await job


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; {args.nats_version}")
    for count in args.workers:
        (workdir / f"nats-{count}").mkdir()
        server = NatsServer(workdir / f"nats-{count}").start()
        bench = Bench(_settings(server.url, workdir / f"daemon-{count}", args.lease))
        await bench.scheduler.start()
        await bench.scheduler.wait_ready()
        procs = [_worker(server.url, workdir / f"w-{count}", f"w{i}", args.lease)
                 for i in range(count)]
        try:
            await _wait_workers(bench, count)
            await bench.song(seed=999)  # warm every worker's render child once
            await asyncio.gather(*(bench.song(seed=1000 + i) for i in range(count)))
            # Scheduling overhead: one job at a time, every worker idle.
            overhead = []
            for i in range(args.probes):
                job_id, started, _ = await bench.song(seed=2000 + i)
                overhead.append((bench.first_progress[job_id] - started) * 1000)
            # Throughput: a burst.
            t0 = time.perf_counter()
            await asyncio.gather(*(bench.song(seed=i) for i in range(args.songs)))
            minutes = (time.perf_counter() - t0) / 60
            q = statistics.quantiles(overhead, n=20)
            print(f"{count} worker(s): {args.songs / minutes:6.1f} songs/min ({args.songs} x 10 s)"
                  f"; dispatch -> worker start p50 {statistics.median(overhead):.1f} ms, "
                  f"p95 {q[18]:.1f} ms")
            if count >= 2 and args.redeliver:
                await _redelivery(bench, procs, args.lease)
                args.redeliver = False
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                proc.wait(30)
            await bench.scheduler.stop()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--probes", type=int, default=20, help="jobs timed for the overhead")
    parser.add_argument("--lease", type=float, default=5.0, help="lease_s for the run")
    parser.add_argument("--no-redeliver", dest="redeliver", action="store_false")
    args = parser.parse_args()
    args.nats_version = subprocess.run(["nats-server", "--version"], capture_output=True,
                                       text=True, check=False).stdout.strip()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
