"""The daemon as scheduler and `cassetted worker` processes, over a real nats-server.

Every test runs the real daemon (`python -m cassetted run`), real workers (`python -m
cassetted worker`, each with its own state folder: they share nothing with the daemon but
the NATS server) and the real broker, and counts songs in the daemon's database.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.cluster.conftest import WorkerProcess, cluster_toml
from tests.fixtures.services import NatsServer, wait_for
from tests.probe import MqttProbe

SONG = {"prompt": "a song from the basement", "duration_s": 10, "instrumental": False}


def _songs(daemon_state: Path) -> list[tuple[str, str | None, str]]:
    with sqlite3.connect(daemon_state / "cassetted.db") as db:
        return db.execute("SELECT id, worker, file FROM song ORDER BY created_at").fetchall()


def _library_audio(daemon_state: Path) -> list[Path]:
    return sorted(p for p in (daemon_state / "library").glob("*.flac"))


async def _bucket_objects(url: str, bucket: str) -> list[str]:
    import nats

    nc = await nats.connect(url)
    try:
        store = await (nc.jetstream()).object_store(bucket)
        try:
            return [info.name for info in await store.list(ignore_deletes=True)]
        except Exception:  # noqa: BLE001 - nats-py raises NotFoundError for an empty bucket
            return []
    finally:
        await nc.close()


def _rendering(worker: WorkerProcess) -> str | None:
    """The job id the worker's log says it started last, if any."""
    lines = [line for line in worker.log().splitlines() if f"worker {worker.name}: job " in line
             and "(" in line]
    return lines[-1].split(": job ")[1].split(" ")[0] if lines else None


def test_a_song_is_made_by_a_worker_on_another_machine(
        daemon_factory: Callable[..., Any], probe: MqttProbe, nats_server: NatsServer,
        worker_factory: Callable[..., WorkerProcess]) -> None:
    daemon = daemon_factory(cluster_toml(nats_server.url, local_workers=0)).start()
    worker = worker_factory("gpu-box", cluster_toml(nats_server.url)).start()
    probe.wait_online()
    reply = probe.command("song/create", {**SONG, "seed": 7, "duration_s": 30})
    assert reply["ok"], reply
    done = probe.wait_job(reply["job_id"], ("done", "failed"), timeout=120)
    assert done["state"] == "done", (done, daemon.log()[-3000:], worker.log()[-3000:])
    assert done["worker"] == "gpu-box"
    latest = probe.wait(lambda m: m.topic == f"{probe.base}/song/latest").json()
    assert latest["worker"] == "gpu-box" and Path(latest["file"]).is_file()
    assert latest["lyrics"] and Path(latest["file"]).with_suffix(".lrc").is_file()
    assert [(s[0], s[1]) for s in _songs(daemon.state_dir)] == [(latest["id"], "gpu-box")]
    # Stored, so the files bucket keeps nothing; the daemon's .incoming/ is empty too.
    assert asyncio.run(_bucket_objects(nats_server.url, "cassetted-files")) == []
    assert list((daemon.state_dir / "library" / ".incoming").iterdir()) == []


def test_a_burst_survives_a_worker_killed_midway_and_another_joining(
        daemon_factory: Callable[..., Any], probe: MqttProbe, nats_server: NatsServer,
        worker_factory: Callable[..., WorkerProcess]) -> None:
    """The issue's proof: local_workers = 0, two workers share a burst, one is killed -9
    while it renders, a third joins; every request ends as exactly one song, made by the
    workers, and the killed worker's job is made by another."""
    daemon = daemon_factory(cluster_toml(nats_server.url, local_workers=0)).start()
    worker_toml = cluster_toml(nats_server.url)
    first, second = (worker_factory(name, worker_toml).start() for name in ("box-a", "box-b"))
    probe.wait_online()
    jobs = []
    for i in range(8):
        reply = probe.command("song/create", {**SONG, "duration_s": 30, "seed": i,
                                              "request_id": f"burst-{i}"})
        assert reply["ok"], reply
        jobs.append(reply["job_id"])
    victim_job = wait_for(lambda: _rendering(first), timeout=60)
    first.kill()
    third = worker_factory("box-c", worker_toml).start()
    finals = {job: probe.wait_job(job, ("done", "failed", "cancelled"), timeout=180)
              for job in jobs}
    failed = {job: final for job, final in finals.items() if final["state"] != "done"}
    assert not failed, (failed, daemon.log()[-4000:])
    assert finals[victim_job]["worker"] in ("box-b", "box-c")
    songs = _songs(daemon.state_dir)
    assert len(songs) == 8 and len({s[0] for s in songs}) == 8
    assert {s[1] for s in songs} <= {"box-a", "box-b", "box-c"}
    assert len({finals[job]["song_id"] for job in jobs}) == 8
    assert len(_library_audio(daemon.state_dir)) == 8  # no file without its row
    # A request sent again maps to its one job.
    again = probe.command("song/create", {**SONG, "duration_s": 30, "seed": 0,
                                          "request_id": "burst-0"})
    assert again["job_id"] == jobs[0]
    assert "box-c" in {s[1] for s in songs} or third.log()  # it joined (it may have been idle)
    assert asyncio.run(_bucket_objects(nats_server.url, "cassetted-files")) == []
    second.stop()


def test_the_daemon_killed_and_restarted_mid_run_loses_and_doubles_nothing(
        daemon_factory: Callable[..., Any], probe: MqttProbe, nats_server: NatsServer,
        worker_factory: Callable[..., WorkerProcess]) -> None:
    daemon = daemon_factory(cluster_toml(nats_server.url, local_workers=0)).start()
    worker_toml = cluster_toml(nats_server.url)
    workers = [worker_factory(name, worker_toml).start() for name in ("box-a", "box-b")]
    probe.wait_online()
    jobs = [probe.command("song/create", {**SONG, "duration_s": 30, "seed": i,
                                          "request_id": f"restart-{i}"})["job_id"]
            for i in range(6)]
    wait_for(lambda: any(_rendering(w) for w in workers), timeout=60)
    daemon.kill()
    # The workers go on while the daemon is away: their results wait in the stream.
    wait_for(lambda: sum("done" in line for w in workers
                         for line in w.log().splitlines() if ": job " in line) >= 2,
             timeout=60)
    daemon.start()
    finals = {job: probe.wait_job(job, ("done", "failed", "cancelled"), timeout=180)
              for job in jobs}
    assert all(final["state"] == "done" for final in finals.values()), (finals, daemon.log()[-4000:])
    songs = _songs(daemon.state_dir)
    assert len(songs) == 6, songs
    assert len(_library_audio(daemon.state_dir)) == 6
    assert {s[1] for s in songs} <= {"box-a", "box-b"}
    assert asyncio.run(_bucket_objects(nats_server.url, "cassetted-files")) == []


def test_a_job_for_an_engine_no_worker_has_fails_with_no_worker(
        daemon_factory: Callable[..., Any], probe: MqttProbe, nats_server: NatsServer,
        worker_factory: Callable[..., WorkerProcess]) -> None:
    daemon_factory(cluster_toml(nats_server.url, local_workers=0, no_worker_s=2.0)).start()
    worker = worker_factory("cpu-only", cluster_toml(nats_server.url,
                                                     engines=["builtin"])).start()
    probe.wait_online()
    gpu = probe.command("song/create", {**SONG, "engine": "acestep"})
    assert gpu["ok"], gpu
    final = probe.wait_job(gpu["job_id"], ("done", "failed"), timeout=60)
    assert final["state"] == "failed" and final["error"]["code"] == "no_worker", final
    assert "acestep" in final["error"]["message"]
    # The builtin worker never saw it, and still makes what it can.
    assert "acestep" not in worker.log()
    cpu = probe.command("song/create", SONG)
    assert probe.wait_job(cpu["job_id"], ("done", "failed"), timeout=60)["worker"] == "cpu-only"


def test_cancel_reaches_the_rendering_worker_within_a_second(
        daemon_factory: Callable[..., Any], probe: MqttProbe, nats_server: NatsServer,
        worker_factory: Callable[..., WorkerProcess]) -> None:
    import time

    daemon_factory(cluster_toml(nats_server.url, local_workers=0)).start()
    worker = worker_factory("box-a", cluster_toml(nats_server.url)).start()
    probe.wait_online()
    long = probe.command("song/create", {**SONG, "duration_s": 600})
    probe.wait_job(long["job_id"], ("composing",), timeout=60)
    started = time.monotonic()
    assert probe.command(f"job/{long['job_id']}/cancel", {})["ok"]
    final = probe.wait_job(long["job_id"], ("cancelled", "done", "failed"), timeout=30)
    took = time.monotonic() - started
    assert final["state"] == "cancelled", final
    assert took < 3.0, took  # a second on the worker, plus the event's way back
    assert f"job {long['job_id']} cancelled" in worker.log()
    # The worker is free again: the next song is made at once.
    after = probe.command("song/create", SONG)
    assert probe.wait_job(after["job_id"], ("done", "failed"), timeout=60)["state"] == "done"


def test_cluster_status_lists_the_workers_and_the_backlog(
        daemon_factory: Callable[..., Any], probe: MqttProbe, nats_server: NatsServer,
        worker_factory: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    daemon_factory(cluster_toml(nats_server.url, local_workers=0)).start()
    worker_factory("box-a", cluster_toml(nats_server.url, engines=["builtin"],
                                         max_duration_s=300.0)).start()
    probe.wait_online()
    config = tmp_path / "status.toml"
    config.write_text(cluster_toml(nats_server.url))

    def status() -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "cassetted", "cluster", "status", "--json",
                              "--config", str(config)], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        return json.loads(out)

    report = wait_for(lambda: (r := status())["workers"] and r, timeout=30)
    (box,) = report["workers"]
    assert box["name"] == "box-a" and box["engines"] == ["builtin"]
    assert box["max_duration_s"] == 300.0 and box["busy"] is None
    assert report["backlog"].get("builtin", 0) == 0
    text = subprocess.run([sys.executable, "-m", "cassetted", "cluster", "status", "--config",
                           str(config)], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "1 worker(s)" in text and "box-a" in text and "songs up to 300 s" in text


async def _take_and_never_ack(url: str, deliveries: int) -> list[int]:
    """A buggy worker: takes the builtin engine's jobs and never acknowledges them."""
    import nats

    nc = await nats.connect(url)
    seen: list[int] = []
    try:
        for _ in range(100):  # the daemon creates the consumer once it reached NATS
            try:
                sub = await nc.jetstream().pull_subscribe_bind(durable="engine-builtin",
                                                                stream="cassetted-jobs")
                break
            except Exception:  # noqa: BLE001 - not there yet
                await asyncio.sleep(0.1)
        # It keeps asking for more, as a live worker does: the server hands a job out (or
        # gives up on it, with the advisory) only to a worker asking.
        for _ in range(deliveries + 1):
            try:
                seen.extend(m.metadata.num_delivered for m in await sub.fetch(1, timeout=5))
            except TimeoutError:
                break
    finally:
        await nc.close()
    return seen


def test_a_job_no_worker_finishes_fails_with_worker_lost_after_max_deliver(
        daemon_factory: Callable[..., Any], probe: MqttProbe, nats_server: NatsServer) -> None:
    """A worker that takes jobs and dies (or hangs) before its ack, every time: after
    max_deliver deliveries the server says so, and the job fails plainly, not forever."""
    daemon_factory(cluster_toml(nats_server.url, local_workers=0, max_deliver=2,
                                lease_s=1.0)).start()
    probe.wait_online()
    reply = probe.command("song/create", SONG)
    assert asyncio.run(_take_and_never_ack(nats_server.url, 2)) == [1, 2]
    final = probe.wait_job(reply["job_id"], ("done", "failed"), timeout=60)
    assert final["state"] == "failed" and final["error"]["code"] == "worker_lost", final
    assert "2 times" in final["error"]["message"]



async def _publish_finished_job(url: str, settings_toml: Path) -> None:
    """A job message for a job the done bucket says was finished (a worker that finished
    it died before its ack): the layout as the daemon makes it, then the message."""
    import nats

    from cassetted import config
    from cassetted.cluster import protocol
    from cassetted.contract.schemas import SongRequest, SongSpec

    settings = config.load(settings_toml)
    names = protocol.Names(settings.cluster.prefix)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await protocol.ensure_layout(js, names, settings.cluster, ["builtin"])
        await (await js.key_value(names.done_bucket)).put("made-before_s1", b"box-z")
        spec = SongSpec(prompt="x", genre="pop", mood="uplifting", bpm=100, key="C major",
                        duration_s=10, seed=1)
        job = protocol.JobMessage(job_id="made-before", song_id="s1", engine="builtin",
                                  spec=spec, request=SongRequest(duration_s=10))
        await js.publish(names.jobs("builtin"), job.model_dump_json().encode())
    finally:
        await nc.close()


async def _stream_counts(url: str) -> tuple[int, int]:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        jobs = (await js.stream_info("cassetted-jobs")).state.messages
        results = (await js.stream_info("cassetted-results")).state.messages
        return jobs, results
    finally:
        await nc.close()


def test_a_redelivered_job_already_finished_is_acked_not_made_again(
        nats_server: NatsServer, worker_factory: Callable[..., WorkerProcess],
        tmp_path: Path) -> None:
    config = tmp_path / "layout.toml"
    config.write_text(cluster_toml(nats_server.url))
    asyncio.run(_publish_finished_job(nats_server.url, config))
    assert asyncio.run(_stream_counts(nats_server.url)) == (1, 0)
    worker = worker_factory("box-a", cluster_toml(nats_server.url)).start()
    wait_for(lambda: "job made-before was finished before" in worker.log(), timeout=60)
    wait_for(lambda: asyncio.run(_stream_counts(nats_server.url)) == (0, 0), timeout=10)
    assert "lyrics written" not in worker.log()  # nothing rendered


async def _late_result(url: str, job_id: str, song_id: str) -> str:
    """What a worker that finished a job a second time would send: a result and its file."""
    import io

    import nats

    from cassetted.cluster import protocol

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        files = await js.object_store("cassetted-files")
        name = f"{job_id}/late/late.flac"
        await files.put(name, io.BytesIO(b"not really audio"))
        result = protocol.ResultMessage(
            job_id=job_id, song_id=song_id, worker="box-late", status="done",
            produced={}, files=[protocol.FileRef(name="late.flac", object=name, size=16,
                                                 sha256="0" * 64)])
        await js.publish(f"cassetted.results.{job_id}", result.model_dump_json().encode())
        return name
    finally:
        await nc.close()


def test_a_second_result_for_a_finished_job_is_dropped_with_its_file(
        daemon_factory: Callable[..., Any], probe: MqttProbe, nats_server: NatsServer,
        worker_factory: Callable[..., WorkerProcess]) -> None:
    daemon = daemon_factory(cluster_toml(nats_server.url, local_workers=0)).start()
    worker_factory("box-a", cluster_toml(nats_server.url)).start()
    probe.wait_online()
    reply = probe.command("song/create", SONG)
    done = probe.wait_job(reply["job_id"], ("done", "failed"), timeout=60)
    assert done["state"] == "done"
    late = asyncio.run(_late_result(nats_server.url, reply["job_id"], done["song_id"]))
    wait_for(lambda: "late result from box-late dropped" in daemon.log(), timeout=30)
    wait_for(lambda: late not in asyncio.run(_bucket_objects(nats_server.url, "cassetted-files")),
             timeout=10)
    assert len(_songs(daemon.state_dir)) == 1
    assert asyncio.run(_stream_counts(nats_server.url))[1] == 0  # acknowledged, gone


def test_the_daemons_own_local_workers_render_and_die_with_it(
        daemon_factory: Callable[..., Any], probe: MqttProbe, nats_server: NatsServer) -> None:
    """`local_workers` (default 1): worker processes of the daemon's machine, on the same
    queue; killed with the daemon, so a restart does not double them."""
    import socket

    daemon = daemon_factory(cluster_toml(nats_server.url)).start()
    probe.wait_online()
    reply = probe.command("song/create", SONG)
    final = probe.wait_job(reply["job_id"], ("done", "failed"), timeout=120)
    host = socket.gethostname().split(".")[0]
    assert final["state"] == "done" and final["worker"] == f"{host}-local-0", (
        final, daemon.log()[-3000:])
    assert daemon.proc is not None
    pid = daemon.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children
    daemon.kill()

    def alive(child: str) -> bool:
        try:
            return "cassetted" in Path(f"/proc/{child}/cmdline").read_text(errors="replace")
        except OSError:  # gone
            return False

    def gone() -> bool:
        return not any(alive(child) for child in children)

    wait_for(gone, timeout=15)


def test_a_nats_restart_mid_burst_costs_no_song(
        daemon_factory: Callable[..., Any], probe: MqttProbe, nats_server: NatsServer,
        worker_factory: Callable[..., WorkerProcess]) -> None:
    """The NATS server restarts (its store kept, as a real one's is) while jobs are queued
    and rendering: the daemon and the worker reconnect, and every job ends as one song."""
    import time

    daemon = daemon_factory(cluster_toml(nats_server.url, local_workers=0)).start()
    worker = worker_factory("box-a", cluster_toml(nats_server.url)).start()
    probe.wait_online()
    jobs = [probe.command("song/create", {**SONG, "duration_s": 30, "seed": i})["job_id"]
            for i in range(4)]
    wait_for(lambda: _rendering(worker), timeout=60)
    nats_server.stop()
    time.sleep(3)
    nats_server.start()
    finals = [probe.wait_job(job, ("done", "failed", "cancelled"), timeout=240) for job in jobs]
    assert all(final["state"] == "done" for final in finals), (finals, daemon.log()[-4000:])
    assert len(_songs(daemon.state_dir)) == 4
    assert len(_library_audio(daemon.state_dir)) == 4


def test_a_render_finished_during_a_nats_outage_is_handed_back_not_made_again(
        daemon_factory: Callable[..., Any], probe: MqttProbe, nats_server: NatsServer,
        worker_factory: Callable[..., WorkerProcess]) -> None:
    """NATS goes away while the worker renders and stays away past the end of the render:
    the worker keeps the finished files and retries handing them back until the server is
    back, instead of dropping them for the job to be redelivered and rendered again."""
    daemon = daemon_factory(cluster_toml(nats_server.url, local_workers=0,
                                         lease_s=30.0)).start()
    worker = worker_factory("box-a", cluster_toml(nats_server.url, lease_s=30.0)).start()
    probe.wait_online()
    job = probe.command("song/create", {**SONG, "duration_s": 30})["job_id"]
    wait_for(lambda: _rendering(worker) == job, timeout=60)
    nats_server.stop()
    wait_for(lambda: "storing its result failed" in worker.log(), timeout=120)
    nats_server.start()
    final = probe.wait_job(job, ("done", "failed", "cancelled"), timeout=120)
    assert final["state"] == "done" and final["worker"] == "box-a", (final, worker.log()[-3000:])
    started = [line for line in worker.log().splitlines() if f": job {job} (" in line]
    assert len(started) == 1, started  # rendered once, delivered once
    assert len(_songs(daemon.state_dir)) == 1 and len(_library_audio(daemon.state_dir)) == 1
