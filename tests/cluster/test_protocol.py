"""The cluster's settings and wire format, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from cassetted import config, redaction
from cassetted.cluster import protocol
from cassetted.cluster.settings import ClusterSettings
from cassetted.contract.schemas import SongSpec
from cassetted.jobs.pipeline import Produced, TaskOrder


def _spec() -> SongSpec:
    return SongSpec(prompt="wire", genre="jazz", mood="relaxing", bpm=90, key="D minor",
                    duration_s=30, seed=3, lyrics="[Verse]\nla la")


def test_produced_and_task_order_survive_the_wire() -> None:
    produced = Produced(spec=_spec(), lyrics_provider="builtin", engine="builtin",
                        relative_file="a.flac", format="flac", variant_files=("a-2.flac",),
                        seeds=(3, 4), notes=("shorter",), worker="box")
    import json

    back = protocol.produced_from_wire(json.loads(json.dumps(protocol.produced_to_wire(produced))))
    assert back == produced
    order = TaskOrder(kind="cover", source_path="/library/x.flac", source_bpm=120.0, variants=2)
    wire = protocol.order_to_wire(order)
    assert wire is not None and "source_path" not in wire  # a worker never gets a library path
    job = protocol.JobMessage(job_id="j", song_id="s", engine="builtin", spec=_spec(),
                              request={"duration_s": 30}, order=wire)  # type: ignore[arg-type]
    assert job.task_order(Path("/scratch/x.flac")) == TaskOrder(
        kind="cover", source_path="/scratch/x.flac", source_bpm=120.0, variants=2)


def test_where_names_servers_never_credentials() -> None:
    settings = ClusterSettings(nats_url="nats://daemon:hunter2-secret@nats.lan:4222, tls://hub")
    assert protocol.where(settings) == "nats://nats.lan:4222, tls://hub:4222"


def test_connect_options_hide_the_secrets_from_every_log() -> None:
    settings = ClusterSettings(nats_url="nats://a:4222", user="daemon",
                               password="pw-9d8c7b6a5f4e", token="tok-1a2b3c4d5e6f")
    options = protocol.connect_options(settings, "test")
    assert options["password"] == "pw-9d8c7b6a5f4e" and options["servers"] == ["nats://a:4222"]
    text = redaction.redact("refused: pw-9d8c7b6a5f4e and tok-1a2b3c4d5e6f")
    assert "pw-9d8c7b6a5f4e" not in text and "tok-1a2b3c4d5e6f" not in text


def test_a_wrong_cluster_key_stops_the_daemon_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[cluster]\nnats_url = "nats://x:4222"\nleas_s = 3\n')
    with pytest.raises(config.ConfigError, match=r"cluster\.leas_s: unknown key.*lease_s"):
        config.load(bad)
    bad.write_text('[cluster]\nengines = ["ace step"]\n')
    with pytest.raises(config.ConfigError, match="not an engine name"):
        config.load(bad)
    assert not config.load(None, state_dir=tmp_path).cluster.enabled  # the embedded default
