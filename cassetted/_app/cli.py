"""`cassetted run | generate | request | schemas | parse | keys | doctor | worker | cluster`.

Every subcommand loads the configuration the same way (`--config`, then the usual places)
and exits with status 2 and one line on stderr when it is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cassetted import __version__, config
from cassetted.contract.schemas import GENRES, MOODS, SongRequest

EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG: needs a person (systemd: RestartPreventExitStatus=78)


def _settings(args: argparse.Namespace) -> config.Settings:
    try:
        return config.load(args.config)
    except config.ConfigError as error:
        print(f"cassetted: {error}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _setup_logging(level: str) -> None:
    # No timestamps: journald adds its own, and a terminal does not need them.
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _request_from_args(args: argparse.Namespace, **extra: Any) -> SongRequest:
    lyrics = None
    if getattr(args, "lyrics_file", None):
        lyrics = Path(args.lyrics_file).read_text(encoding="utf-8")
    values = dict(prompt=args.prompt, genre=args.genre, mood=args.mood, bpm=args.bpm, key=args.key,
                  duration_s=args.duration, seed=args.seed, lyrics=lyrics,
                  instrumental=args.instrumental, **extra)
    try:
        return SongRequest(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        print(f"cassetted: {field}: {first['msg']}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(args.log_level or settings.log.level)
    from cassetted import redaction
    from cassetted._app import daemon
    from cassetted.store.database import StoreError

    redaction.install(redaction.configured_secrets(settings))

    try:
        return daemon.run(settings, rebuild_library=args.rebuild_library)
    except (StoreError, config.ConfigError) as error:  # one line, not a traceback in a loop
        print(f"cassetted: {error}", file=sys.stderr)
        return EXIT_CONFIG


# --------------------------------------------------------------------------- generate


def cmd_generate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(args.log_level or "WARNING")
    from cassetted._app.offline import generate_file

    request = _request_from_args(args)
    out = Path(args.output)
    result = generate_file(settings, request, out, progress=_progress_bar)
    print(file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


def _progress_bar(fraction: float, label: str) -> None:
    if not sys.stderr.isatty():
        return
    width = 30
    filled = int(width * fraction)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction:5.1%} {label:<16}")
    sys.stderr.flush()


# --------------------------------------------------------------------------- request


def cmd_request(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(args.log_level or "WARNING")
    from cassetted._app.remote import follow_request

    request = _request_from_args(args, room=args.room, request_id=args.request_id or uuid.uuid4().hex)
    outcome = asyncio.run(follow_request(settings.mqtt, request, timeout_s=args.timeout,
                                         progress=_progress_bar))
    print(file=sys.stderr)
    if outcome.get("state") == "done" or outcome.get("state") == "ready":
        print(outcome.get("file", ""))
        return 0
    error = outcome.get("error") or {}
    print(f"cassetted: {outcome.get('state', 'failed')}: {error.get('code', '')} "
          f"{error.get('message', '')}".rstrip(), file=sys.stderr)
    return 1


# --------------------------------------------------------------------------- schemas


def cmd_schemas(args: argparse.Namespace) -> int:
    from cassetted.contract.schemas import json_schemas

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(json_schemas())} schemas to {out}")
    return 0


# --------------------------------------------------------------------------- parser


def _song_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help='what the song is about, e.g. "a relaxing jazz song"')
    parser.add_argument("--genre", choices=GENRES)
    parser.add_argument("--mood", choices=MOODS)
    parser.add_argument("--bpm", type=int)
    parser.add_argument("--key", help='"A minor", "F# major"')
    parser.add_argument("--duration", type=float, help="seconds (10-600)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--lyrics-file", help="use these lyrics instead of writing new ones")
    parser.add_argument("--instrumental", action="store_true", default=None)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="TOML configuration file")
    common.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    parser = argparse.ArgumentParser(prog="cassetted", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cassetted {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="run the daemon")
    run.add_argument("--rebuild-library", action="store_true",
                     help="index the library's files from their tags into the database "
                          "(after it was lost); needed to start with an empty database "
                          "next to a library of songs")
    run.set_defaults(handler=cmd_run)

    gen = sub.add_parser("generate", parents=[common], help="make one song file, no broker needed")
    _song_options(gen)
    gen.add_argument("-o", "--output", required=True, help="file to write (.flac .ogg .mp3 .wav)")
    gen.set_defaults(handler=cmd_generate)

    req = sub.add_parser("request", parents=[common], help="ask the running daemon for a song")
    _song_options(req)
    req.add_argument("--room")
    req.add_argument("--request-id")
    req.add_argument("--timeout", type=float, default=900.0, help="seconds to wait (default 900)")
    req.set_defaults(handler=cmd_request)

    schemas = sub.add_parser("schemas", help="write one JSON Schema per MQTT payload")
    schemas.add_argument("--out", default="mqtt_schemas")
    schemas.set_defaults(handler=cmd_schemas)

    for register in _plugins():
        register(sub, common)
    return parser


def _plugins() -> list[Callable[[Any, argparse.ArgumentParser], None]]:
    """Subcommands that live beside the feature they drive."""
    from cassetted._app import cluster as cluster_cli
    from cassetted._app import doctor as doctor_cli
    from cassetted._app import keys as keys_cli
    from cassetted._app import parse as parse_cli
    from cassetted._app import tokens as token_cli

    return [parse_cli.register, keys_cli.register, token_cli.register, doctor_cli.register,
            cluster_cli.register]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)
