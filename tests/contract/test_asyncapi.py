"""docs/asyncapi.yaml must be exactly what cassetted.contract.asyncapi generates from schemas.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cassetted.contract import asyncapi
from cassetted.contract.schemas import PAYLOADS

ROOT = Path(__file__).parent.parent.parent
CHECKED_IN = ROOT / "docs" / "asyncapi.yaml"


def test_checked_in_document_matches_the_generator(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.yaml"
    subprocess.run([sys.executable, "-m", "cassetted.contract.asyncapi", "--out", str(out)],
                   check=True, capture_output=True, cwd=ROOT)
    assert out.read_text() == CHECKED_IN.read_text(), (
        "docs/asyncapi.yaml drifted: run `python -m cassetted.contract.asyncapi --out docs/asyncapi.yaml`")


def test_yaml_parses_back_to_the_document() -> None:
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load(CHECKED_IN.read_text()) == asyncapi.document()


def test_every_payload_and_topic_of_the_contract_is_described() -> None:
    doc = asyncapi.document()
    used = {item[op]["message"]["$ref"].rsplit("/", 1)[1]
            for item in doc["channels"].values() for op in ("publish", "subscribe") if op in item}
    used |= {item["publish"]["x-reply"]["message"]["$ref"].rsplit("/", 1)[1]
             for item in doc["channels"].values() if "x-reply" in item.get("publish", {})}
    assert set(PAYLOADS) - {"song_spec"} <= used  # song_spec is internal (engines only)
    for topic in ("cassetted/song/create", "cassetted/voice", "cassetted/job/{job_id}/cancel",
                  "cassetted/room/{room}/set", "cassetted/party/set",
                  "cassetted/song/{song_id}/vote", "cassetted/library/query",
                  "cassetted/status", "cassetted/job/{job_id}", "cassetted/queue",
                  "cassetted/room/{room}/state", "cassetted/song/latest", "cassetted/event"):
        assert topic in doc["channels"], topic
    retained = {t for t, item in doc["channels"].items()
                if item.get("subscribe", {}).get("bindings", {}).get("mqtt", {}).get("retain")}
    assert {"cassetted/status", "cassetted/queue", "cassetted/room/{room}/state",
            "cassetted/song/latest"} <= retained
    assert "cassetted/job/{job_id}" not in retained and "cassetted/event" not in retained
    # Every $ref points at something that exists.
    text = CHECKED_IN.read_text()
    for ref in {line.split('"#/')[1].rstrip('"') for line in text.splitlines() if '"#/' in line}:
        node = doc
        for part in ref.split("/"):
            node = node[part]


def test_yaml_emitter_quotes_what_yaml_would_misread() -> None:
    yaml = pytest.importorskip("yaml")
    tricky = {"a": ["yes", "no", "on", "1.5", "", "x: y", "# c", "null", "-1", "ok text"],
              "b": {"nested": [{"k": True, "v": None}], "empty": {}, "list": []},
              "c": 3, "d": 2.5, "e": "ünïcode \"quoted\""}
    assert yaml.safe_load(asyncapi.to_yaml(tricky)) == tricky
