"""The acestep_api engine against loopback servers speaking ACE-Step's REST protocol."""

from __future__ import annotations

import json
import logging
import threading
import time

import numpy as np
import pytest
from pydantic import ValidationError

from cassetted.contract.schemas import SongSpec
from cassetted.music.acestep.api import AceStepApiEngine, AceStepApiSettings, RemoteError
from cassetted.music.acestep.task import AceStepTask, TaskInvalid
from cassetted.music.base import Audio, Cancelled
from cassetted.store.credentials import Secret
from tests.fixtures.services import dead_url
from tests.music.acestep.fake_api import Behaviour, FakeAceStepServer, take_seeds

RATE = 44100
KEY = "s3cret-key-123"


def spec(**changes: object) -> SongSpec:
    base = {"prompt": "a song about the sea", "genre": "rock", "mood": "energetic", "bpm": 128,
            "key": "E minor", "time_signature": "3/4", "duration_s": 10.0, "language": "en", "seed": 11,
            "lyrics": "[verse]\nwaves roll in\n[chorus]\nhold on", "style": "distorted guitars"}
    base.update(changes)
    return SongSpec(**base)  # type: ignore[arg-type]


def settings(*urls: str, **changes: object) -> AceStepApiSettings:
    base: dict[str, object] = {"urls": list(urls), "poll_interval_s": 0.01, "retry_backoff_s": 0.01,
                               "request_timeout_s": 2.0, "task_timeout_s": 20.0, "lost_after_s": 0.2}
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
    assert song.samples.shape == (round(10.0 * RATE), 2)
    assert song.samples.dtype == np.float32
    assert np.abs(song.samples).max() > 0.1
    (task,) = server.tasks.values()
    sent = task.params
    assert "rock" in sent["prompt"].lower() and "energetic" in sent["prompt"].lower()
    assert "distorted guitars" in sent["prompt"] and "the sea" in sent["prompt"]
    assert sent["lyrics"].startswith("[verse]")
    assert (sent["bpm"], sent["key_scale"], sent["time_signature"]) == (128, "E minor", "3")
    assert (sent["seed"], sent["use_random_seed"], sent["batch_size"]) == ("11", False, 1)
    assert song.seed == 11 and song.notes == ()
    assert sent["audio_duration"] == 10.0 and sent["vocal_language"] == "en"
    assert sent["task_type"] == "text2music" and sent["audio_format"] == "flac"
    assert progress.fractions == sorted(progress.fractions) and progress.fractions[-1] == 1.0
    # progress_text is the server's last log line ("| INFO | [tiled_decode] ..."): never shown
    assert any("rendering on" in (n or "") for _, n in progress.calls)
    assert not any("|" in (n or "") or "tiled_decode" in (n or "") for _, n in progress.calls)
    # the key goes in the Authorization header of every call but /health
    for _method, path, headers in server.requests:
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
    # The real server gives the position only at submission; the engine moves it on by
    # /v1/stats's avg_job_seconds.
    behaviour = Behaviour(queue_ahead=3, queue_polls=30, avg_job_seconds=0.05, run_polls=3)
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


def test_a_failed_task_says_status_task_and_server_never_a_log_line() -> None:
    # The real answer for a failed task has no `error` and progress_text is whatever the
    # server logged last ("Saved audio to ..."): neither may pass for the reason.
    with FakeAceStepServer(Behaviour(fail_reason="boom in the decoder")) as srv:
        with pytest.raises(RemoteError) as caught:
            engine(srv.url, key=None).generate(spec(), Recorder())
        message = caught.value.message
        (task,) = srv.tasks.values()
        assert task.task_id in message and srv.url.split("//")[1] in message
        assert "status 2" in message and "gave no reason" in message
        assert "Saved audio" not in message and "AudioSaver" not in message
        assert "boom" not in message  # it was only in the server's log


def test_known_failures_are_explained() -> None:
    # Without a diskcache the job store answers, and that answer does carry `error`.
    with FakeAceStepServer(Behaviour(local_cache=False, fail_reason=(
            "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total)"))) as srv, \
            pytest.raises(RemoteError, match="ran out of memory"):
        engine(srv.url, key=None).generate(spec(), Recorder())
    with FakeAceStepServer(Behaviour(models_initialized=False)) as srv:  # `--no-init`
        with pytest.raises(RemoteError) as caught:
            engine(srv.url, key=None).generate(spec(), Recorder())
        assert "model is not loaded" in caught.value.message


def test_thinking_without_a_loaded_lm_renders_without_it() -> None:
    # March servers say so in /health: the engine does not even try.
    with FakeAceStepServer(Behaviour(personality="mar", llm_initialized=False)) as srv:
        song = engine(srv.url, key=None, thinking=True).generate(spec(), Recorder())
        (task,) = srv.tasks.values()
        assert task.params["thinking"] is False
        assert any("without thinking" in note for note in song.notes)
    # February servers do not: the task fails (status 2, no reason) and is sent once more
    # without thinking.
    with FakeAceStepServer(Behaviour(personality="feb", llm_initialized=False)) as srv:
        song = engine(srv.url, key=None, thinking=True).generate(spec(), Recorder())
        assert [t.params["thinking"] for t in srv.submitted] == [True, False]
        assert any("without thinking" in note for note in song.notes)


def test_a_task_the_server_forgot_is_submitted_elsewhere() -> None:
    # Restarted while the task was still queued: it was never cached, so the server answers
    # "[]" with status 0, as for any id it never saw.
    with FakeAceStepServer(Behaviour(queue_polls=1000)) as restarted, FakeAceStepServer() as other:
        remote = engine(restarted.url, other.url, key=None)

        def progress(fraction: float, note: str | None = None) -> None:
            if restarted.tasks and restarted.count("/query_result") >= 2:
                restarted.restart()

        remote.generate(spec(), progress)
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


def test_the_stand_in_seeds_as_upstream_does() -> None:
    # mar: one seed seeds take 0 only; a list seeds every take; -1 is random.
    one = take_seeds({"use_random_seed": False, "seed": 7}, 3, "mar")
    assert one[0] == 7 and one[1:] != [8, 9]
    assert take_seeds({"use_random_seed": False, "seed": "7,8,9"}, 3, "mar") == [7, 8, 9]
    assert take_seeds({"use_random_seed": False, "seed": "7"}, 1, "mar") == [7]
    assert take_seeds({"seed": "7,8,9"}, 3, "mar") != [7, 8, 9]  # use_random_seed defaults true
    # feb: whatever is sent, every take is random.
    assert take_seeds({"use_random_seed": False, "seed": "7,8,9"}, 3, "feb") != [7, 8, 9]


def test_each_take_is_seeded_and_its_stored_seed_reproduces_it() -> None:
    with FakeAceStepServer(Behaviour(personality="mar")) as srv:
        remote = engine(srv.url, key=None)
        takes = remote.generate_variants(spec(), Recorder(), AceStepTask(variants=3))
        assert srv.submitted[0].params["seed"] == "11,12,13"
        assert [t.seed for t in takes] == [11, 12, 13] == srv.submitted[0].seeds
        for take in takes:  # "keep that one": the take alone, from its stored seed
            again = remote.generate(spec(seed=take.seed), Recorder())
            assert np.array_equal(again.samples, take.samples)


def test_a_server_that_ignores_seeds_has_its_own_recorded() -> None:
    with FakeAceStepServer(Behaviour(personality="feb")) as srv:
        takes = engine(srv.url, key=None).generate_variants(spec(), Recorder(),
                                                            AceStepTask(variants=2))
        (task,) = srv.submitted
        assert [t.seed for t in takes] == task.seeds  # what it used, not 11 and 12
        assert any("did not use the requested seeds" in n for n in takes[0].notes)


def test_a_clamped_batch_is_completed_with_the_missing_seeds() -> None:
    with FakeAceStepServer(Behaviour(max_batch=2)) as srv:
        takes = engine(srv.url, key=None).generate_variants(spec(), Recorder(),
                                                            AceStepTask(variants=3))
        assert [t.params["seed"] for t in srv.submitted] == ["11,12,13", "13"]
        assert [t.seed for t in takes] == [11, 12, 13]
        assert len({t.samples.tobytes() for t in takes}) == 3
        assert not any("caps the batch" in n for n in takes[0].notes)  # complete after all


def test_a_clamped_duration_is_reported_and_never_padded() -> None:
    with FakeAceStepServer(Behaviour(max_duration_s=6.0)) as srv:
        song = engine(srv.url, key=None).generate(spec(duration_s=10.0), Recorder())
        assert song.samples.shape == (6 * RATE, 2)  # what was rendered, no silence after it
        assert np.abs(song.samples[-RATE // 10:]).max() > 0.05
        assert any("rendered 6.0 s of the 10 s" in n for n in song.notes)


def test_a_restart_mid_song_is_a_stall_and_the_task_is_sent_again() -> None:
    # The real server, restarted, answers "running" at the frozen progress for an hour.
    with FakeAceStepServer(Behaviour(run_polls=6, crash_after_polls=2)) as srv:
        remote = engine(srv.url, key=None, stall_after_s=0.3, task_timeout_s=60)
        started = time.monotonic()
        song = remote.generate(spec(), Recorder())
        assert time.monotonic() - started < 10
        assert len(srv.submitted) == 2  # the same server, once more
        assert song.samples.shape == (10 * RATE, 2)


def test_a_stall_goes_to_another_server_first() -> None:
    with FakeAceStepServer(Behaviour(run_polls=6, crash_after_polls=2)) as crashing, \
            FakeAceStepServer() as other:
        remote = engine(crashing.url, other.url, key=None, stall_after_s=0.3)
        remote.generate(spec(), Recorder())
        assert len(crashing.submitted) == 1 and len(other.submitted) == 1


def test_stalling_again_fails_explicitly_long_before_the_timeout() -> None:
    with FakeAceStepServer(Behaviour(run_polls=6, crash_after_polls=2, crashes=5)) as srv:
        remote = engine(srv.url, key=None, stall_after_s=0.3, task_timeout_s=600)
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            remote.generate(spec(), Recorder())
        assert time.monotonic() - started < 10
        assert "made no progress" in caught.value.message
        assert "task_timeout_s" not in caught.value.message
        assert len(srv.submitted) == 2


def test_a_full_queue_on_the_only_server_is_waited_out() -> None:
    with FakeAceStepServer(Behaviour(busy_s=0.5)) as srv:
        progress = Recorder()
        engine(srv.url, key=None, busy_backoff_s=0.1).generate(spec(), progress)
        assert srv.count("/release_task") >= 2 and len(srv.submitted) == 1
        assert any("busy" in (n or "") for _, n in progress.calls)
    with FakeAceStepServer(Behaviour(busy_s=100)) as srv, \
            pytest.raises(RemoteError, match="queue stayed full"):
        engine(srv.url, key=None, busy_backoff_s=0.1, busy_wait_s=0.5).generate(spec(), Recorder())


def test_the_model_must_be_one_the_server_has_loaded() -> None:
    with FakeAceStepServer(Behaviour(models=["acestep-v15-turbo"])) as srv:
        with pytest.raises(RemoteError) as caught:
            engine(srv.url, key=None, model="acestep-v15-base").generate(spec(), Recorder())
        assert "'acestep-v15-base' is not loaded" in caught.value.message
        assert "acestep-v15-turbo" in caught.value.message and not srv.submitted
        # the id as /v1/models writes it works, and is sent the way /release_task takes it
        engine(srv.url, key=None, model="acestep/acestep-v15-turbo").generate(spec(), Recorder())
        assert srv.submitted[0].params["model"] == "acestep-v15-turbo"


def test_health_is_not_enough_without_loaded_models() -> None:
    with FakeAceStepServer(Behaviour(personality="mar", models_initialized=False)) as mar, \
            FakeAceStepServer(Behaviour(personality="feb", models_initialized=False)) as feb, \
            FakeAceStepServer() as ready:
        remote = engine(mar.url, feb.url, ready.url, key=None)
        assert remote.health(mar.url) is False and "not loaded" in remote._health[mar.url].reason
        assert remote.health(feb.url) is False and "/v1/models" in remote._health[feb.url].reason
        assert remote.health(ready.url) is True
        remote.generate(spec(), Recorder())
        assert remote.last_url == ready.url and not mar.submitted and not feb.submitted


def test_uploads_to_a_february_server_go_through_its_openrouter_route() -> None:
    # feb's /release_task answers every multipart request with a 500; its OpenRouter route
    # takes the audio as base64 input_audio parts, one take per request.
    rate = 22050
    t = np.arange(12 * rate) / rate
    source = Audio(np.stack([np.sin(2 * np.pi * 220 * t)] * 2, axis=1).astype(np.float32), rate)
    repaint = AceStepTask(kind="repaint", source=source, repaint_start_s=2, repaint_end_s=4,
                          variants=2)
    with FakeAceStepServer(Behaviour(personality="feb")) as feb:
        takes = engine(feb.url, key=None).generate_variants(spec(), Recorder(), repaint)
        assert feb.count("/release_task") == 0 and feb.count("/v1/chat/completions") == 2
        first, _second = feb.submitted
        assert first.params["task_type"] == "repaint" and first.files["src_audio"][:4] == b"fLaC"
        # The route does not say which seeds it used (feb ignores them anyway): the requested
        # ones are recorded, and the song says so.
        assert [t.seed for t in takes] == [11, 12]
        assert any("did not report the seeds" in n for n in takes[0].notes)
        assert all(t.samples.shape == (10 * RATE, 2) for t in takes)
        assert any("OpenRouter route" in n for n in takes[0].notes)
        # a health verdict that is not known yet: the 500 itself sends it there
        remote = engine(feb.url, key=None, retries=0)
        remote._mark(feb.url, True, "", {"status": "ok", "service": "ACE-Step API"})
        remote._health[feb.url].facts.clear()
        remote.generate(spec(), Recorder(), AceStepTask(kind="repaint", source=source))
        engine(feb.url, key=None).generate(spec(), Recorder())  # JSON text2music as before
        assert feb.count("/release_task") == 2  # the multipart 500, then the JSON song


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
    assert sent.files["src_audio"][:4] == b"fLaC" and sent.files["reference_audio"][:4] == b"fLaC"
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
    server.behaviour.llm_initialized = True
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
        body = json.dumps(next(iter(one.tasks.values())).params)
        assert "E minor" in body


def test_registry_factory_reads_the_key_store_each_song(server: FakeAceStepServer) -> None:
    from types import SimpleNamespace

    from cassetted.music.acestep.api import create

    keys = {"acestep_api": Secret(KEY)}
    store = SimpleNamespace(get=lambda provider, user=None: keys.get(provider))
    daemon = SimpleNamespace(acestep_api=settings(server.url), generation=SimpleNamespace(sample_rate=48000))
    remote = create(daemon, store)
    assert remote.generate(spec(), Recorder()).samples.shape == (10 * 48000, 2)
    keys["acestep_api"] = Secret("rotated")
    with pytest.raises(RemoteError, match="401"):
        remote.generate(spec(), Recorder())


def test_simple_mode_lets_the_servers_lm_write_the_song() -> None:
    with FakeAceStepServer(Behaviour(llm_initialized=True)) as srv:
        remote = engine(srv.url, key=None, simple_mode=True)
        wish = spec(prompt="a sleepy song about rain", lyrics="", duration_s=30.0)
        assert remote.writes_lyrics(wish) is True
        assert remote.writes_lyrics(spec()) is False  # lyrics given: ours are sent
        assert remote.writes_lyrics(wish, "cover") is False
        song = remote.generate(wish, Recorder())
        (task,) = srv.submitted
        assert task.params["sample_query"] == "a sleepy song about rain"
        assert "bpm" not in task.params and task.params["lyrics"] == ""
        written = song.rendered
        assert written is not None and written.lyrics == task.lyrics and "[chorus]" in written.lyrics
        assert written.style == task.caption and written.key == "A minor"
        assert written.time_signature == "3/4" and written.bpm == task.metas["bpm"]
        assert written.duration_s == task.duration_s != 30.0  # the LM chose the length
        assert song.samples.shape[0] == round(task.duration_s * RATE)
        assert song.notes == ()  # the LM's length is not a clamp


def test_simple_mode_without_an_lm_hands_the_lyrics_back() -> None:
    from cassetted.music.base import NeedsLyrics

    wish = spec(prompt="a sleepy song about rain", lyrics="")
    with FakeAceStepServer(Behaviour(personality="feb", llm_initialized=False)) as feb:
        with pytest.raises(NeedsLyrics, match="from its description"):  # feb: the task fails first
            engine(feb.url, key=None, simple_mode=True).generate(wish, Recorder())
        assert len(feb.submitted) == 1
    with FakeAceStepServer(Behaviour(personality="mar", llm_initialized=False)) as mar:
        remote = engine(mar.url, key=None, simple_mode=True)
        with pytest.raises(NeedsLyrics):  # mar says so in /health: nothing is submitted
            remote.generate(wish, Recorder())
        assert not mar.submitted
        assert remote.writes_lyrics(wish) is False  # and next time the chain writes at once


def test_a_long_silent_decode_is_not_taken_for_a_restart() -> None:
    # Upstream's progress jumps (0.52 while the DiT runs, 0.8 while the VAE decodes): minutes
    # without a change are normal, and /v1/stats shows the job running, so it is waited for.
    with FakeAceStepServer(Behaviour(run_polls=2, decode_polls=60)) as srv:
        progress = Recorder()
        song = engine(srv.url, key=None, stall_after_s=0.2).generate(spec(), progress)
        assert len(srv.submitted) == 1 and song.samples.shape == (10 * RATE, 2)
        assert any("still working" in (n or "") for _, n in progress.calls)


def test_a_household_lora_is_applied_where_the_server_supports_it() -> None:
    loras = {"ourband": {"path": "/srv/loras/ourband", "scale": 0.7}}
    with FakeAceStepServer(Behaviour(key=KEY, lora_files=["/srv/loras/ourband"])) as srv:
        plain = engine(srv.url).generate(spec(), Recorder())
        remote = engine(srv.url, loras=loras, lora="ourband")
        styled = remote.generate(spec(), Recorder())
        assert srv.submitted[-1].lora == ("ourband", 0.7)
        assert not np.array_equal(plain.samples, styled.samples)
        assert srv.count("/v1/lora/load") == 1
        remote.generate(spec(), Recorder())  # already loaded and active: nothing to change
        assert srv.count("/v1/lora/load") == 1 and srv.submitted[-1].lora == ("ourband", 0.7)
        for _method, path, headers in srv.requests:
            if path.startswith("/v1/lora/"):
                assert headers.get("Authorization") == f"Bearer {KEY}"


def test_a_lora_is_refused_clearly_where_it_cannot_be_applied() -> None:
    loras = {"ourband": {"path": "/srv/loras/ourband"}}
    with FakeAceStepServer(Behaviour(personality="feb")) as feb:
        with pytest.raises(RemoteError, match="no LoRA API") as caught:
            engine(feb.url, key=None, loras=loras, lora="ourband").generate(spec(), Recorder())
        assert not feb.submitted and "783bb36" in caught.value.message
    with FakeAceStepServer(Behaviour(personality="mar")) as mar:  # the file is not there
        with pytest.raises(RemoteError) as caught:
            engine(mar.url, key=None, loras=loras, lora="ourband").generate(spec(), Recorder())
        assert "could not apply LoRA 'ourband'" in caught.value.message
        assert "LoRA path not found: /srv/loras/ourband" in caught.value.message
        assert "\u274c" not in caught.value.message and not mar.submitted
    with pytest.raises(ValidationError, match="not one of"):
        settings("http://x:1", loras=loras, lora="other")
