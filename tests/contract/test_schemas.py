"""The checked-in JSON Schemas must be exactly what schemas.py exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cassetted.contract.schemas import PAYLOADS, SongRequest, json_schemas

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_schemas_match_models(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "cassetted", "schemas", "--out", str(tmp_path)],
                   check=True, capture_output=True, cwd=ROOT)
    written = sorted(p.name for p in tmp_path.iterdir())
    checked_in = sorted(p.name for p in (ROOT / "mqtt_schemas").iterdir())
    assert written == checked_in, "run `cassetted schemas --out mqtt_schemas`"
    for name in written:
        assert (tmp_path / name).read_text() == (ROOT / "mqtt_schemas" / name).read_text(), (
            f"{name} drifted from schemas.py: run `cassetted schemas --out mqtt_schemas`")


def test_every_payload_has_a_schema() -> None:
    assert set(json_schemas()) == set(PAYLOADS)
    schema = json_schemas()["song_create"]
    assert schema["properties"]["duration_s"]["anyOf"][0]["minimum"] == 10
    assert schema["additionalProperties"] is False


def test_song_request_fields_follow_the_contract() -> None:
    contract = {"prompt", "genre", "mood", "bpm", "key", "time_signature", "duration_s",
                "language", "lyrics", "instrumental", "seed", "room", "party", "child_safe",
                "user", "request_id", "engine", "lyrics_provider"}
    assert contract <= set(SongRequest.model_fields)
    assert json.loads(SongRequest(prompt="x").model_dump_json())["prompt"] == "x"
