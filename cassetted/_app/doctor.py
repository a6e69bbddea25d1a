"""`cassetted doctor`: check what "nothing accepted is lost" rests on, before it matters.

Each check prints one line, `ok`, `warn` or `FAIL`, and says what to do; the exit status is
1 when any check failed. Nothing is changed: the database is read, never created or
migrated, and the broker sees a short-lived client of its own (never the daemon's id).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cassetted import config

_LOW_SPACE_BYTES = 500 * 1024 * 1024
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEFAULT_MOSQUITTO_CONF = Path("/etc/mosquitto/mosquitto.conf")


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warn | FAIL
    check: str
    message: str

    def line(self) -> str:
        return f"{self.level:<4} {self.check}: {self.message}"


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "doctor", parents=[common], help="check the broker, database and library disk",
        description=__doc__.splitlines()[0])
    parser.add_argument("--mosquitto-conf", metavar="PATH", type=Path,
                        help="the broker's mosquitto.conf (default: "
                             f"{DEFAULT_MOSQUITTO_CONF} when the broker is on this host)")
    parser.add_argument("--no-broker", action="store_true", help="skip the broker checks")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cassetted._app.cli import _settings  # one-line configuration errors, exit 2

    settings = _settings(args)
    findings = [*check_library(settings), *check_database(settings)]
    if not args.no_broker:
        findings += check_persistence(settings, args.mosquitto_conf)
        findings += asyncio.run(check_session(settings))
    for finding in findings:
        print(finding.line())
    return 1 if any(f.level == "FAIL" for f in findings) else 0


# ------------------------------------------------------------------------ the checks


def check_library(settings: config.Settings) -> list[Finding]:
    library = settings.library_dir
    where = library if library.exists() else library.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    if not os.access(where, os.W_OK):
        return [Finding("FAIL", "library", f"{library} is not writable for this user")]
    free = shutil.disk_usage(where).free
    if free < _LOW_SPACE_BYTES:
        return [Finding("warn", "library", f"only {free // (1024 * 1024)} MiB free on the "
                        f"library disk ({library}); a long song needs tens of MiB")]
    return [Finding("ok", "library", f"{library} writable, {free // (1024 ** 3)} GiB free")]


def check_database(settings: config.Settings) -> list[Finding]:
    from cassetted.library import index as library_index
    from cassetted.store.database import REBUILD_HINT, describe, is_empty

    url = settings.storage.database_url
    url_text = url.get_secret_value() if url else None
    where = describe(url_text, settings.state_dir)
    try:
        empty = is_empty(url_text, settings.state_dir)
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return [Finding("FAIL", "database", f"cannot open {where}: {type(error).__name__}")]
    if empty:
        files = library_index.audio_files(settings.library_dir)
        if files:
            return [Finding("FAIL", "database", f"{where} is empty but the library holds "
                            f"{len(files)} song file(s): restore the database, or {REBUILD_HINT}")]
        return [Finding("ok", "database", f"{where} is new: created on the first start")]
    if url_text:
        return [Finding("ok", "database", f"{where} reachable, schema present")]
    try:
        with contextlib.closing(sqlite3.connect(
                f"file:{settings.state_dir / 'cassetted.db'}?mode=ro", uri=True)) as conn:
            result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.DatabaseError as error:
        result = str(error)
    if result != "ok":
        return [Finding("FAIL", "database", f"{where} is corrupt ({result}): restore it from a "
                        f"backup, or move it aside and {REBUILD_HINT}")]
    return [Finding("ok", "database", f"{where} passes SQLite's quick_check")]


def mosquitto_persistence(conf: Path) -> tuple[bool, list[Path]]:
    """Whether a mosquitto.conf (and the files its include_dir adds) turns persistence on.
    Mosquitto's default is off; the last setting read wins."""
    on, read, todo = False, [], [conf]
    while todo:
        path = todo.pop(0)
        read.append(path)
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            words = raw.split("#", 1)[0].split()
            if len(words) >= 2 and words[0] == "persistence":
                on = words[1].lower() == "true"
            elif len(words) >= 2 and words[0] == "include_dir":
                folder = Path(words[1])
                todo.extend(sorted(folder.glob("*.conf")) if folder.is_dir() else [])
    return on, read


def check_persistence(settings: config.Settings, conf: Path | None) -> list[Finding]:
    if conf is None and settings.mqtt.host in _LOCAL_HOSTS and DEFAULT_MOSQUITTO_CONF.is_file():
        conf = DEFAULT_MOSQUITTO_CONF
    if conf is None:
        return [Finding("warn", "broker persistence", "cannot read the broker's configuration "
                        "from here: make sure it says `persistence true` (Mosquitto), or "
                        "commands queued for cassetted are lost when the broker restarts")]
    try:
        on, read = mosquitto_persistence(conf)
    except OSError as error:
        return [Finding("warn", "broker persistence", f"cannot read {conf}: {error.strerror}")]
    if not on:
        return [Finding("FAIL", "broker persistence", f"off in {conf}: add `persistence true` "
                        "(and a persistence_location); without it, requests queued for "
                        "cassetted while it restarts are lost when the broker restarts")]
    return [Finding("ok", "broker persistence", f"on ({', '.join(map(str, read))})")]


async def check_session(settings: config.Settings) -> list[Finding]:
    """Does the broker keep a session, and the QoS 1 messages for it, while its client is
    away? The way the daemon's commands survive its restarts."""
    import aiomqtt

    from cassetted.mqtt.client import make_client, watch_session

    mqtt = settings.mqtt
    identifier = f"cassetted-doctor-{uuid.uuid4().hex[:8]}"
    topic = f"{mqtt.base_topic}/doctor/{uuid.uuid4().hex[:8]}"
    try:
        async with make_client(mqtt, identifier=identifier, persistent=True) as away:
            await away.subscribe(topic, qos=1)
        async with make_client(mqtt) as sender:
            await sender.publish(topic, b"while you were away", qos=1)
        back = make_client(mqtt, identifier=identifier, persistent=True)
        resumed = watch_session(back)
        async with back:
            present = resumed()
            try:
                message = await asyncio.wait_for(anext(aiter(back.messages)), 3)
                got = message.payload == b"while you were away"
            except TimeoutError:
                got = False
        async with make_client(mqtt, identifier=identifier):  # clean start: drop the session
            pass
    except aiomqtt.MqttError as error:
        return [Finding("FAIL", "broker", f"{mqtt.host}:{mqtt.port}: {error}")]
    if present and got:
        return [Finding("ok", "broker session", f"{mqtt.host}:{mqtt.port} keeps cassetted's "
                        "session and its QoS 1 commands while it is away")]
    return [Finding("FAIL", "broker session", f"{mqtt.host}:{mqtt.port} did not keep a "
                    "persistent session (session-present "
                    f"{'yes' if present else 'no'}, queued message "
                    f"{'delivered' if got else 'lost'}): commands sent while cassetted "
                    "restarts are lost")]
