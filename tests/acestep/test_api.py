"""The acestep_api engine against loopback servers speaking ACE-Step's REST protocol."""

from __future__ import annotations

import json
import logging
import threading
import time

import numpy as np
import pytest
from pydantic import ValidationError

from cassetted.credentials import Secret
from cassetted.music.acestep_api import AceStepApiEngine, AceStepApiSettings, RemoteError
from cassetted.music.base import Audio, Cancelled
from cassetted.music._acestep_task import AceStepTask, TaskInvalid
from cassetted.schemas import SongSpec
from tests.acestep.fake_api import Behaviour, FakeAceStepServer, dead_url

RATE = 44100
KEY = "s3cret-key-123"


def spec(**changes: object) -> SongSpec:
    base = dict(prompt="a song about the sea", genre="rock", mood="energetic", bpm=128,
                key="E minor", time_signature="3/4", duration_s=10.0, language="en", seed=11,
                lyrics="[verse]\nwaves roll in\n[chorus]\nhold on", style="distorted guitars")
    base.update(changes)
    return SongSpec(**base)  # type: ignore[arg-type]


def settings(*urls: str, **changes: object) -> AceStepApiSettings:
    base: dict[str, object] = dict(urls=list(urls), poll_interval_s=0.01, retry_backoff_s=0.01,
                                   request_timeout_s=2.0, task_timeout_s=20.0, lost_after_s=0.2)
    base.update(changes)
    return AceStepApiSettings(**base)  # type: ignore[arg-type]


def engine(*urls: str, key: str | None = KEY, **changes: object) -> AceStepApiEngine:
    return AceStepApiEngine(settings(*urls, **changes), RATE,
                            api_key=(lambda: Secret(key)) if key else None)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str | None]] = []

    def __call__(self, fraction: float, note: str | None = None) -> None:
        self.calls.append((fraction, note))

    @property
    def fractions(self) -> list[float]:
        return [f for f, _ in self.calls]


@pytest.fixture
def server():
    with FakeAceStepServer(Behaviour(key=KEY)) as srv:
        yield srv


def test_text2music_maps_the_spec_and_returns_exact_stereo(server: FakeAceStepServer) -> None:
    progress = Recorder()
    song = engine(server.url).generate(spec(), progress)
    assert song.sample_rate == RATE
    assert song.samples.shape == (int(round(10.0 * RATE)), 2)
    assert song.samples.dtype == np.float32
    assert np.abs(song.samples).max() > 0.1
    (task,) = server.tasks.values()
    sent = task.params
    assert "rock" in sent["prompt"].lower() and "energetic" in sent["prompt"].lower()
    assert "distorted guitars" in sent["prompt"] and "the sea" in sent["prompt"]
    assert sent["lyrics"].startswith("[verse]")
    assert (sent["bpm"], sent["key_scale"], sent["time_signature"]) == (128, "E minor", "3")
    assert (sent["seed"], sent["use_random_seed"], sent["batch_size"]) == (11, False, 1)
    assert sent["audio_duration"] == 10.0 and sent["vocal_language"] == "en"
    assert sent["task_type"] == "text2music" and sent["audio_format"] == "flac"
    assert progress.fractions == sorted(progress.fractions) and progress.fractions[-1] == 1.0
    # the key goes in the Authorization header of every call but /health
    for method, path, headers in server.requests:
        if path != "/health":
            assert headers.get("Authorization") == f"Bearer {KEY}", path


def test_same_seed_same_song_other_seed_other_song(server: FakeAceStepServer) -> None:
    remote = engine(server.url)
    first = remote.generate(spec(), Recorder())
    again = remote.generate(spec(), Recorder())
    other = remote.generate(spec(seed=12), Recorder())
    assert np.array_equal(first.samples, again.samples)
    assert not np.array_equal(first.samples, other.samples)


def test_instrumental_sends_the_marker_and_unknown_language(server: FakeAceStepServer) -> None:
    engine(server.url).generate(spec(instrumental=True), Recorder())
    (task,) = server.tasks.values()
    assert task.params["lyrics"] == "[Instrumental]"
    assert task.params["vocal_language"] == "unknown"


def test_queue_position_is_shown_as_progress() -> None:
    behaviour = Behaviour(queue_ahead=3, queue_polls=4, report_queue_position=True, run_polls=3)
    with FakeAceStepServer(behaviour) as srv:
        progress = Recorder()
        engine(srv.url, key=None).generate(spec(), progress)
    notes = [note or "" for _, note in progress.calls]
    assert any("position 4" in n for n in notes)
    assert any("position 1" in n or "position 2" in n for n in notes)
    queued = [f for f, n in progress.calls if n and "queued" in n]
    assert queued and max(queued) <= 0.05
    assert progress.fractions == sorted(progress.fractions)
    assert progress.fractions[-1] == 1.0


def test_a_dead_url_fails_over_and_is_remembered(server: FakeAceStepServer) -> None:
    dead = dead_url()
    remote = engine(dead, server.url)
    remote.generate(spec(), Recorder())
    assert remote.last_url == server.url
    assert remote._health[dead].healthy is False
    started = time.monotonic()
    remote.generate(spec(), Recorder())  # the dead one is tried last now, not first
    assert time.monotonic() - started < 5
    assert server.count("/release_task") == 2


def test_server_errors_are_retried_then_failed_over() -> None:
    with FakeAceStepServer(Behaviour(release_failures=2)) as flaky, \
            FakeAceStepServer(Behaviour(release_failures=100)) as broken, \
            FakeAceStepServer() as healthy:
        song = engine(flaky.url, key=None, retries=2).generate(spec(), Recorder())
        assert song.samples.shape[0] == 10 * RATE
        assert flaky.count("/release_task") == 3  # two 500s, then accepted

        remote = engine(broken.url, healthy.url, key=None, retries=1)
        remote.generate(spec(), Recorder())
        assert remote.last_url == healthy.url
        assert broken.count("/release_task") == 2


def test_poll_failures_are_retried() -> None:
    with FakeAceStepServer(Behaviour(query_failures=2)) as srv:
        engine(srv.url, key=None, retries=2).generate(spec(), Recorder())
        assert len(srv.tasks) == 1


def test_a_slow_server_times_out_and_the_next_one_answers() -> None:
    with FakeAceStepServer(Behaviour(delay_s=1.0)) as slow, FakeAceStepServer() as fast:
        remote = engine(slow.url, fast.url, key=None, request_timeout_s=0.3, retries=0)
        started = time.monotonic()
        remote.generate(spec(), Recorder())
        assert remote.last_url == fast.url
        assert time.monotonic() - started < 6


def test_every_url_down_is_one_clear_error() -> None:
    remote = engine(dead_url(), dead_url(), key=None, retries=0)
    with pytest.raises(RemoteError) as caught:
        remote.generate(spec(), Recorder())
    message = caught.value.message
    assert "cannot connect" in message and message.count("127.0.0.1") >= 2


def test_a_wrong_key_is_reported_without_the_key(server: FakeAceStepServer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RemoteError) as caught:
        engine(server.url, key="wrong-key-456").generate(spec(), Recorder())
    assert "401" in caught.value.message and "keys set acestep_api" in caught.value.message
    assert "wrong-key-456" not in caught.value.message
    assert all("wrong-key-456" not in record.getMessage() for record in caplog.records)
    with pytest.raises(RemoteError):
        engine(server.url, key=None).generate(spec(), Recorder())  # no key at all


def test_a_failed_task_reports_the_server_reason() -> None:
    with FakeAceStepServer(Behaviour(fail_task="CUDA out of memory")) as srv:
        with pytest.raises(RemoteError, match="CUDA out of memory"):
            engine(srv.url, key=None).generate(spec(), Recorder())


def test_a_task_the_server_forgot_is_submitted_elsewhere() -> None:
    with FakeAceStepServer(Behaviour(forget_tasks=True)) as restarted, FakeAceStepServer() as other:
        remote = engine(restarted.url, other.url, key=None)
        remote.generate(spec(), Recorder())
        assert restarted.count("/release_task") == 1 and other.count("/release_task") == 1
        assert remote.last_url == other.url


def test_task_timeout() -> None:
    with FakeAceStepServer(Behaviour(queue_polls=10_000)) as srv:
        remote = engine(srv.url, key=None, task_timeout_s=0.3)
        with pytest.raises(RemoteError, match="task_timeout_s"):
            remote.generate(spec(), Recorder())


def test_cancellation_stops_polling() -> None:
    with FakeAceStepServer(Behaviour(queue_ahead=2, queue_polls=10_000)) as srv:
        polls_at_cancel = []

        def progress(fraction: float, note: str | None = None) -> None:
            if srv.count("/query_result") >= 3:
                polls_at_cancel.append(srv.count("/query_result"))
                raise Cancelled()

        with pytest.raises(Cancelled):
            engine(srv.url, key=None).generate(spec(), progress)
        time.sleep(0.1)
        assert srv.count("/query_result") == polls_at_cancel[0]


def test_variants_come_back_as_separate_takes(server: FakeAceStepServer) -> None:
    takes = engine(server.url).generate_variants(spec(), Recorder(), AceStepTask(variants=3))
    assert len(takes) == 3
    assert all(t.samples.shape == (10 * RATE, 2) for t in takes)
    assert not np.array_equal(takes[0].samples, takes[1].samples)
    (task,) = server.tasks.values()
    assert task.params["batch_size"] == 3
    with pytest.raises(TaskInvalid):
        engine(server.url).generate(spec(), Recorder(), AceStepTask(variants=8))


def test_cover_uploads_the_source_at_the_new_tempo(server: FakeAceStepServer) -> None:
    rate = 22050
    t = np.arange(int(12 * rate)) / rate
    source = Audio(np.stack([np.sin(2 * np.pi * 220 * t)] * 2, axis=1).astype(np.float32), rate)
    task = AceStepTask(kind="cover", source=source, source_bpm=100, cover_strength=0.6,
                       reference=source)
    song = engine(server.url).generate(spec(instrumental=True), Recorder(), task)
    assert song.samples.shape == (10 * RATE, 2)
    (sent,) = server.tasks.values()
    assert sent.params["task_type"] == "cover"
    assert float(sent.params["audio_cover_strength"]) == 0.6
    assert sent.params["thinking"] == "false"
    assert sent.files["src_audio"][:4] == b"RIFF" and "reference_audio" in sent.files
    import io

    import soundfile

    uploaded, uploaded_rate = soundfile.read(io.BytesIO(sent.files["src_audio"]))
    assert uploaded_rate == rate and uploaded.shape == (10 * rate, 2)  # fitted to duration_s


def test_repaint_sends_the_window(server: FakeAceStepServer) -> None:
    source = Audio(np.zeros((10 * RATE, 2), np.float32), RATE)
    engine(server.url).generate(spec(), Recorder(), AceStepTask(kind="repaint", source=source,
                                                                repaint_start_s=2.5, repaint_end_s=6))
    (sent,) = server.tasks.values()
    assert sent.params["task_type"] == "repaint"
    assert (float(sent.params["repainting_start"]), float(sent.params["repainting_end"])) == (2.5, 6.0)


def test_server_settings_are_sent(server: FakeAceStepServer) -> None:
    remote = engine(server.url, model="acestep-v15-turbo", thinking=True, steps=12, shift=2.0)
    remote.generate(spec(), Recorder(), AceStepTask(steps=6))
    (sent,) = server.tasks.values()
    assert sent.params["model"] == "acestep-v15-turbo" and sent.params["thinking"] is True
    assert sent.params["inference_steps"] == 6 and sent.params["shift"] == 2.0
    assert sent.params["use_cot_caption"] is False


def test_health_check(server: FakeAceStepServer) -> None:
    remote = engine(server.url, dead_url())
    assert remote.health(server.url) is True
    assert remote.health(remote.settings.urls[1]) is False
    server.behaviour.health_ok = False
    assert remote.health(server.url) is False


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError):
        AceStepApiSettings(urls=["gpu-box:8001"])
    with pytest.raises(ValidationError):
        AceStepApiSettings(urls=[])
    with pytest.raises(ValidationError):
        AceStepApiSettings(url="http://x")  # type: ignore[call-arg]
    assert AceStepApiSettings(urls=["http://a:8001/"]).urls == ["http://a:8001"]


def test_concurrent_songs_share_the_pool() -> None:
    with FakeAceStepServer() as one, FakeAceStepServer() as two:
        remote = engine(one.url, two.url, key=None)
        results: list[Audio] = []
        threads = [threading.Thread(target=lambda: results.append(remote.generate(spec(), Recorder())))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(results) == 4
        assert one.count("/release_task") == 2 and two.count("/release_task") == 2
        body = json.dumps(list(one.tasks.values())[0].params)
        assert "E minor" in body


def test_registry_factory_reads_the_key_store_each_song(server: FakeAceStepServer) -> None:
    from types import SimpleNamespace

    from cassetted.music.acestep_api import create

    keys = {"acestep_api": Secret(KEY)}
    store = SimpleNamespace(get=lambda provider, user=None: keys.get(provider))
    daemon = SimpleNamespace(acestep_api=settings(server.url), generation=SimpleNamespace(sample_rate=48000))
    remote = create(daemon, store)
    assert remote.generate(spec(), Recorder()).samples.shape == (10 * 48000, 2)
    keys["acestep_api"] = Secret("rotated")
    with pytest.raises(RemoteError, match="401"):
        remote.generate(spec(), Recorder())
