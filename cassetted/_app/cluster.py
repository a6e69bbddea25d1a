"""`cassetted worker` and `cassetted cluster status`: songs made on other machines.

`worker` is the process for the GPU box (or any machine): it needs `[cluster]` (NATS
address, credentials) and its own engine settings, nothing else of the household's. `cluster
status` lists the live workers, what they can do and the queue's backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cassetted.config import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    worker = subparsers.add_parser("worker", parents=[common],
                                   help="render songs from the cluster's queue (NATS)",
                                   description=__doc__.splitlines()[0])
    worker.add_argument("--name", help="this worker's name (default: the host name)")
    worker.set_defaults(handler=cmd_worker)

    cluster = subparsers.add_parser("cluster", parents=[common], help="the cluster's workers")
    actions = cluster.add_subparsers(dest="action", required=True)
    status = actions.add_parser("status", parents=[common],
                                help="live workers, their capabilities and the backlog")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_cluster_status)


def _cluster_settings(args: argparse.Namespace) -> Settings:
    from cassetted._app.cli import _settings

    settings = _settings(args)
    if not settings.cluster.enabled:
        print("cassetted: no [cluster] nats_url in the configuration", file=sys.stderr)
        raise SystemExit(2)
    return settings


def cmd_worker(args: argparse.Namespace) -> int:
    from cassetted._app.cli import _setup_logging
    from cassetted.cluster.local import serve
    from cassetted.cluster.worker import default_name
    from cassetted.contract import errors

    settings = _cluster_settings(args)
    _setup_logging(args.log_level or settings.log.level)
    try:
        return serve(settings, args.name or default_name())
    except errors.UnknownEngine as error:
        print(f"cassetted: [cluster] engines: {error.message}", file=sys.stderr)
        return 2


def cmd_cluster_status(args: argparse.Namespace) -> int:
    settings = _cluster_settings(args)
    try:
        report = asyncio.run(_status(settings))
    except Exception as error:  # noqa: BLE001 - one line for a person, not a traceback
        from cassetted.cluster.protocol import explain, where

        print(f"cassetted: cannot read the cluster at {where(settings.cluster)}: "
              f"{explain(error, settings.cluster)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    now = time.time()
    workers = report["workers"]
    print(f"{len(workers)} worker(s) on {report['nats']}")
    for w in workers:
        extras = []
        if w.get("variants"):
            extras.append("variant " + ", ".join(f"{k} {v}" for k, v in w["variants"].items()))
        if any(w.get("loras", {}).values()):
            extras.append("LoRAs " + ", ".join(n for names in w["loras"].values() for n in names))
        if w.get("vram_free_mb") is not None:
            extras.append(f"{w['vram_free_mb']:.0f} MB VRAM free")
        if w.get("max_duration_s"):
            extras.append(f"songs up to {w['max_duration_s']:.0f} s")
        print(f"  {w['name']:<24} {','.join(w['engines']):<16} "
              f"{'busy ' + w['busy'] if w.get('busy') else 'idle':<22} {w['done']:>4} done  "
              f"seen {now - w['ts']:.0f} s ago" + (f"  ({'; '.join(extras)})" if extras else ""))
    backlog = report["backlog"]
    waiting = ", ".join(f"{engine} {n}" for engine, n in backlog.items() if n) or "none"
    print(f"waiting in the queue: {waiting}")
    return 0


async def _status(settings: Settings) -> dict[str, Any]:
    from cassetted.cluster import protocol
    from cassetted.music.registry import ENGINE_PLUGINS

    names = protocol.Names(settings.cluster.prefix)
    nc = await protocol.connect(settings.cluster, "cassetted cluster status", once=True)
    try:
        js = nc.jetstream(domain=settings.cluster.domain)
        from nats.js.errors import NotFoundError

        try:
            bucket = await js.key_value(names.workers_bucket)
            workers = [a.model_dump(mode="json") for a in await protocol.adverts(bucket)]
        except NotFoundError:  # no daemon has made the layout yet
            workers = []
        backlog: dict[str, int] = {}
        for engine in ENGINE_PLUGINS.names():
            try:
                info = await js.consumer_info(names.jobs_stream, names.consumer(engine))
            except NotFoundError:
                continue
            backlog[engine] = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        return {"nats": protocol.where(settings.cluster),
                "workers": sorted(workers, key=lambda w: w["name"]), "backlog": backlog}
    finally:
        await nc.close()
