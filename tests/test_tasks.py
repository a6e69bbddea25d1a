"""The task owner: ids, duplicates refused, failures logged with their traceback, stop."""

from __future__ import annotations

import ast
import asyncio
import logging
from pathlib import Path

import pytest

from cassetted.tasks import BackgroundTasks, DuplicateTask


def test_a_second_task_under_a_running_id_is_refused_and_never_started() -> None:
    started: list[str] = []

    async def work(name: str) -> None:
        started.append(name)
        await asyncio.sleep(10)

    async def main() -> None:
        tasks = BackgroundTasks("modes")
        first = tasks.spawn(work("first"), "sleep-fade-bedroom")
        assert first.get_name() == "modes-sleep-fade-bedroom"
        second = work("second")
        with pytest.raises(DuplicateTask, match="modes-sleep-fade-bedroom"):
            tasks.spawn(second, "sleep-fade-bedroom")
        assert second.cr_frame is None  # closed unrun: no "never awaited" warning
        await asyncio.sleep(0)
        assert started == ["first"]
        assert tasks.running() == ["modes-sleep-fade-bedroom"]
        await tasks.cancel_all()
        assert first.cancelled() and tasks.running() == []

    asyncio.run(main())


def test_replace_cancels_the_running_task_first() -> None:
    async def main() -> None:
        tasks = BackgroundTasks("karaoke")
        old = tasks.spawn(asyncio.sleep(10), "lyrics-kitchen")
        new = tasks.spawn(asyncio.sleep(10), "lyrics-kitchen", replace=True)
        await asyncio.sleep(0)
        assert old.cancelled() and not new.done()
        assert tasks.get("lyrics-kitchen") is new
        await tasks.cancel_all()

    asyncio.run(main())


def test_an_id_is_free_again_once_its_task_ended() -> None:
    async def main() -> None:
        tasks = BackgroundTasks("jobs")
        await tasks.spawn(asyncio.sleep(0), "intake")
        await asyncio.sleep(0)  # the done callback
        assert tasks.get("intake") is None
        await tasks.spawn(asyncio.sleep(0), "intake")  # not refused

    asyncio.run(main())


def test_unique_names_do_not_collide() -> None:
    tasks = BackgroundTasks("mqtt")
    names = {tasks.unique("message") for _ in range(100)}
    assert len(names) == 100


def test_a_failure_is_logged_at_error_with_its_traceback_and_reported(
        caplog: pytest.LogCaptureFixture) -> None:
    failures: list[str] = []

    async def broken() -> None:
        raise RuntimeError("the disk is full")

    async def main() -> None:
        tasks = BackgroundTasks("daemon", on_failure=lambda task, error: failures.append(str(error)))
        task = tasks.spawn(broken(), "mqtt")
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR, logger="cassetted.tasks"):
        asyncio.run(main())
    [record] = [r for r in caplog.records if r.name == "cassetted.tasks"]
    assert record.levelno == logging.ERROR and "daemon-mqtt" in record.getMessage()
    assert record.exc_info is not None and "the disk is full" in str(record.exc_info[1])
    assert failures == ["the disk is full"]


def test_a_cancelled_task_is_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        tasks = BackgroundTasks("party")
        tasks.spawn(asyncio.sleep(10), "top-up")
        await asyncio.sleep(0)
        await tasks.cancel("top-up")
        assert tasks.running() == []

    with caplog.at_level(logging.ERROR, logger="cassetted.tasks"):
        asyncio.run(main())
    assert not [r for r in caplog.records if r.name == "cassetted.tasks"]


def test_drain_waits_for_pending_work_to_finish_by_itself() -> None:
    done: list[int] = []

    async def write(n: int) -> None:
        await asyncio.sleep(0.01 * n)
        done.append(n)

    async def main() -> None:
        tasks = BackgroundTasks("modes")
        for n in (3, 1, 2):
            tasks.spawn(write(n), tasks.unique("save"))
        await tasks.drain()

    asyncio.run(main())
    assert done == [1, 2, 3]


def test_no_module_but_the_owner_creates_tasks() -> None:
    """Every background task goes through a BackgroundTasks owner: a bare create_task (or
    ensure_future, or a TaskGroup) elsewhere would be a task nobody cancels on stop and
    whose failure nobody logs."""
    package = Path(__file__).resolve().parent.parent / "cassetted"
    # A future awaited and cancelled within one function never outlives its caller.
    scoped = {"cassetted/playback/zones/homeassistant.py _sleep_or_wake"}
    bare = []
    for path in sorted(package.rglob("*.py")):
        if path == package / "tasks.py":
            continue
        where = path.relative_to(package.parent).as_posix()
        functions = [f for f in ast.walk(ast.parse(path.read_text(), str(path)))
                     if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)]
        for function in functions:
            for node in ast.walk(function):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = (func.attr if isinstance(func, ast.Attribute)
                        else func.id if isinstance(func, ast.Name) else None)
                if name in {"create_task", "ensure_future", "TaskGroup"} \
                        and f"{where} {function.name}" not in scoped:
                    bare.append(f"{where}:{node.lineno} {name}")
    assert bare == []
