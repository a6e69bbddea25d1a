"""Both ACE-Step engines through the real daemon: a tiny local checkpoint, a loopback API pool."""

from __future__ import annotations

from pathlib import Path

import soundfile

from tests.acestep.fake_api import FakeAceStepServer, dead_url
from tests.probe import MqttProbe


def test_local_acestep_engine_makes_the_song(daemon_factory, probe: MqttProbe,
                                             tiny_checkpoint: Path, tmp_path: Path) -> None:
    from tests.acestep.tiny import write_lora

    lora = write_lora(tmp_path / "our-band")
    daemon_factory(f'\n[acestep]\ncheckpoint_dir = "{tiny_checkpoint}"\nlm = "none"\n'
                   f'device = "cpu"\n[acestep.loras.our_band]\npath = "{lora}"\nscale = 0.8\n',
                   CASSETTED_GENERATION__SAMPLE_RATE="48000").start()
    probe.wait_online()
    reply = probe.command("song/create", {"prompt": "tiny model", "engine": "acestep",
                                          "duration_s": 10, "seed": 5})
    final = probe.wait_job(reply["job_id"], timeout=180)
    assert final["state"] == "done", final
    data, rate = soundfile.read(final["file"])
    assert rate == 48000 and data.shape == (10 * 48000, 2)
    latest = probe.wait(lambda m: m.topic == f"{probe.base}/song/latest").json()
    assert latest["engine"] == "acestep"

    takes = probe.command("song/create", {"engine": "acestep", "duration_s": 10, "variants": 2})
    ready = probe.wait_job(takes["job_id"], ("ready",), timeout=180)
    assert len(ready["variants"]) == 1
    assert probe.wait_job(takes["job_id"], timeout=60)["state"] == "done"

    # A cover and a repaint of that song, with the source audio handed to the model.
    for task in ({"task": "cover", "bpm": 140, "cover_strength": 0.5},
                 {"task": "repaint", "repaint_start_s": 2, "repaint_end_s": 5}):
        reply = probe.command("song/create", {"engine": "acestep",
                                              "source_song_id": final["song_id"], **task})
        done = probe.wait_job(reply["job_id"], timeout=180)
        assert done["state"] == "done", done
        assert soundfile.read(done["file"])[0].shape == (10 * 48000, 2)

    # A LoRA style by name; an unknown name, or one for an engine without LoRAs, says so.
    styled = probe.command("song/create", {"engine": "acestep", "duration_s": 10, "lora": "our_band"})
    assert probe.wait_job(styled["job_id"], timeout=180)["state"] == "done"
    for payload, code in (({"engine": "acestep", "lora": "nope"}, "invalid_payload"),
                          ({"engine": "builtin", "lora": "our_band"}, "unsupported")):
        reply = probe.command("song/create", {"duration_s": 10, **payload})
        failed = probe.wait_job(reply["job_id"], timeout=60)
        assert failed["state"] == "failed" and failed["error"]["code"] == code, failed
    assert "our_band" in failed["error"]["message"] or "LoRA" in failed["error"]["message"]

    # Turbo runs upstream's fixed 8 steps: asking for 2 is a clear error, not a silent change.
    reply = probe.command("song/create", {"engine": "acestep", "duration_s": 10, "steps": 2})
    failed = probe.wait_job(reply["job_id"], timeout=60)
    assert failed["state"] == "failed" and failed["error"]["code"] == "invalid_payload"
    assert "exactly 8 diffusion steps" in failed["error"]["message"]  # the field, named


def test_missing_checkpoint_fails_the_job_clearly(daemon_factory, probe: MqttProbe,
                                                  tmp_path: Path) -> None:
    daemon_factory(f'\n[acestep]\ncheckpoint_dir = "{tmp_path / "nothing"}"\n').start()
    probe.wait_online()
    reply = probe.command("song/create", {"engine": "acestep", "duration_s": 10})
    final = probe.wait_job(reply["job_id"], timeout=60)
    assert final["state"] == "failed" and final["error"]["code"] == "generation_failed"
    assert "does not exist" in final["error"]["message"]
    assert "docs/acestep.md" in final["error"]["message"]
    after = probe.command("song/create", {"duration_s": 10})  # the builtin engine still works
    assert probe.wait_job(after["job_id"])["state"] == "done"


def test_remote_pool_fails_over_to_a_live_server(daemon_factory, probe: MqttProbe) -> None:
    with FakeAceStepServer() as server:
        daemon_factory(f'\n[acestep_api]\nurls = ["{dead_url()}", "{server.url}"]\n'
                       'poll_interval_s = 0.1\nretries = 0\n').start()
        probe.wait_online()
        reply = probe.command("song/create", {"engine": "acestep_api", "duration_s": 10})
        final = probe.wait_job(reply["job_id"], timeout=90)
        assert final["state"] == "done", final
        assert any(path.startswith("/release_task") for _, path, _ in server.requests)
