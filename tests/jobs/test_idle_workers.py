"""Render processes exist only while there is work: started for the first song, retired
after `[generation] worker_idle_s`, started again for the next one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.services import wait_for
from tests.probe import MqttProbe


def _children(pid: int) -> list[int]:
    """The render processes of the daemon `pid` (multiprocessing's resource tracker, also a
    child once anything was spawned, is not one)."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    renders = []
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if b"spawn_main" in cmdline:
            renders.append(child)
    return renders


def _pss_mib(pid: int) -> float:
    """Proportional set size of one process (what it costs the machine), from the kernel."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no Pss line")


def test_an_idle_daemon_holds_no_render_process(daemon_factory: Callable[..., Any],
                                                probe: MqttProbe) -> None:
    daemon = daemon_factory("\n[generation]\nworker_idle_s = 2\n").start()
    probe.wait_online()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    assert _children(pid) == []  # nothing rendered yet: nothing started

    first = probe.command("song/create", {"prompt": "wake up", "duration_s": 10})
    assert probe.wait_job(first["job_id"], ("done", "failed"))["state"] == "done"
    [child] = _children(pid)
    wait_for(lambda: _children(pid) == [], timeout=20)  # retired after 2 s without a song
    assert "idle for 2 s: its process retired" in daemon.log()
    idle_pss = _pss_mib(pid)

    again = probe.command("song/create", {"prompt": "and again", "duration_s": 10})
    assert probe.wait_job(again["job_id"], ("done", "failed"))["state"] == "done"
    assert _children(pid) and _children(pid) != [child]  # a new process for the new song
    assert idle_pss < 100, idle_pss  # the daemon alone, no engine loaded (issue 17: 100 MiB)
