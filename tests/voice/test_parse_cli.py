"""`cassetted parse`: the JSON shape, through a small argparse harness like cli.py's."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cassetted._app import parse as parse_cli
from cassetted.voice.intent import FIELDS

CONFIG = """
[rooms.living_room]
name = "Living Room"
aliases = ["lounge"]

[rooms.kids_room]
name = "Kids Room"
"""


def _main(argv: list[str]) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH")
    parser = argparse.ArgumentParser(prog="cassetted")
    sub = parser.add_subparsers(dest="command", required=True)
    parse_cli.register(sub, common)
    args = parser.parse_args(argv)
    return args.handler(args)


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(__import__("os").environ):
        if name.startswith("CASSETTED_"):
            monkeypatch.delenv(name)
    path = tmp_path / "cassetted.toml"
    path.write_text(CONFIG)
    return path


def test_prints_every_field_and_warnings(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _main(["parse", "--config", str(config_file),
                  "Hey Google, create a relaxing jazz song for the living room"])
    assert code == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert list(data) == [*FIELDS, "warnings"]
    assert data == {"genre": "jazz", "mood": "relaxing", "room": "living_room", "bpm": None,
                    "duration_s": None, "key": None, "instrumental": None, "language": None,
                    "party": None, "child_safe": None, "prompt": None, "warnings": []}
    assert out.startswith("{\n  \"genre\"")  # indent 2


def test_unknown_room_warning_and_words_unquoted(config_file: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["parse", "--config", str(config_file), "rock", "for", "the", "garage"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["genre"] == "rock" and data["room"] is None
    assert data["warnings"] == ["no room called 'garage'"]


def test_explain_and_default_room(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["parse", "--config", str(config_file), "--room", "kids_room", "--explain",
                  "a lullaby at 80 bpm"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["room"] == "kids_room" and data["bpm"] == 80 and data["child_safe"] is True
    assert data["evidence"]["bpm"] == "at 80 bpm"


def test_bad_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[rooms.Living]\nname = 1\n")
    assert _main(["parse", "--config", str(bad), "jazz"]) == 2
    assert "cassetted:" in capsys.readouterr().err
