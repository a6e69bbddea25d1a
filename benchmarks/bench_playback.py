"""Playback benchmark: song ready -> MPD reports it playing, over 50 songs (goal p50 < 150 ms).

Run on demand (never part of the tests):  .venv/bin/python benchmarks/bench_playback.py
Starts a private MPD (null output) on a free loopback port and drives the real
PlaybackController with a real SQLite store. Each song is new to MPD, so every sample
includes the whole delivery: hard link into MPD's music directory, `update`, waiting for
MPD's update event, `addid`, `playid`. Three figures per song:

- returned:  `song_ready()` returned True (store write + delivery + play);
- mpd:       an independent MPD client, idling on `player`, sees the song playing;
- published: the controller published the room's state as playing that song.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mpd.asyncio import MPDClient

from cassetted.config import MpdSettings, RoomSettings, Settings
from cassetted.contract.schemas import RoomState
from cassetted.events import EventBus
from cassetted.library.access import song_info
from cassetted.playback.controller import PlaybackController
from cassetted.store.database import Song, Store
from tests.fixtures.services import HOST, MpdServer
from tests.playback.helpers import write_flac

ROOM = "living_room"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _make_song(index: int, library: Path) -> Song:
    song_id = f"bench{index:04d}"
    write_flac(library / f"{song_id}.flac", seconds=3.0)
    return Song.create(id=song_id, title=f"Bench {index}", genre="pop", mood="uplifting",
                       bpm=120, key="C major", time_signature="4/4", duration_s=3.0,
                       language="en", seed=index, room=ROOM, engine="builtin",
                       lyrics_provider="builtin", file=f"{song_id}.flac", format="flac")


async def bench(songs: int, workdir: Path) -> dict[str, list[float]]:
    server = MpdServer(workdir / "mpd").start()
    settings = Settings(state_dir=workdir / "state", rooms={ROOM: RoomSettings(
        name="Living Room", output="mpd",
        mpd=MpdSettings(host=HOST, port=server.port, music_dir=server.music_dir))})
    store = Store(None, settings.state_dir)
    await store.open()
    rows = [await store.call(_make_song, i, settings.library_dir) for i in range(songs)]
    infos = [song_info(row, settings) for row in rows]

    published: dict[str, float] = {}
    progress = asyncio.Event()  # set whenever `published` or `seen` gains a song

    def publish_state(room: str, state: RoomState) -> None:
        if state.state == "playing" and state.song is not None:
            published.setdefault(state.song.id, time.perf_counter())
            progress.set()

    controller = PlaybackController(settings, store, EventBus(), publish_state, lambda event: None)
    await controller.start()
    await controller.zones[ROOM].wait_connected()  # type: ignore[attr-defined]

    observer = MPDClient()
    observer.IMMEDIATE_COMMAND_TIMEOUT = 0.001
    await observer.connect(HOST, server.port)
    seen: dict[str, float] = {}

    async def watch() -> None:
        async for _changes in observer.idle(["player"]):
            status, current = await asyncio.gather(observer.status(), observer.currentsong())
            if status.get("state") == "play" and "file" in current:
                song_id = Path(current["file"]).stem
                if song_id not in seen:
                    seen[song_id] = time.perf_counter()
                    progress.set()

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    figures: dict[str, list[float]] = {"returned": [], "mpd": [], "published": []}
    try:
        for info in infos:
            started = time.perf_counter()
            if not await controller.song_ready(info):
                raise SystemExit(f"song {info.id} did not start")
            returned = time.perf_counter()
            async with asyncio.timeout(5):
                while info.id not in seen or info.id not in published:
                    progress.clear()
                    await progress.wait()
            figures["returned"].append((returned - started) * 1000)
            figures["mpd"].append((seen[info.id] - started) * 1000)
            figures["published"].append((published[info.id] - started) * 1000)
            await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
        observer.disconnect()
        await controller.stop()
        await store.close()
        server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--songs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cassetted-bench-playback-") as tmp:
        figures = asyncio.run(bench(args.songs, Path(tmp)))
    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}".rstrip())
    print(f"song ready -> playing, {args.songs} songs new to MPD (ms):")
    for name, values in figures.items():
        print(f"  {name:<10} p50 {percentile(values, 0.5):7.1f}  p99 {percentile(values, 0.99):7.1f}"
              f"  max {max(values):7.1f}  mean {statistics.mean(values):7.1f}")
    goal = percentile(figures["mpd"], 0.5) < 150
    print(f"goal p50 < 150 ms (mpd): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    main()
