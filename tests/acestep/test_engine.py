"""The acestep engine's real loading and generation code, on tiny random-weight models (CPU)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cassetted.music import _acestep_model as model_module  # noqa: E402
from cassetted.music.acestep import (  # noqa: E402
    AceStepEngine,
    AceStepOutOfMemory,
    AceStepSettings,
    AceStepTask,
    AceStepUnavailable,
    CheckpointMissing,
    TaskInvalid,
)
from cassetted.music.base import Audio, Cancelled  # noqa: E402
from cassetted.schemas import SongSpec  # noqa: E402

RATE = 44100


def spec(**changes: object) -> SongSpec:
    base = dict(prompt="rain on the window", genre="jazz", mood="relaxing", bpm=92, key="A minor",
                time_signature="4/4", duration_s=10.0, seed=7, language="en",
                lyrics="[verse]\nrain falls soft\n[chorus]\nstay", style="brushed drums, piano")
    base.update(changes)
    return SongSpec(**base)  # type: ignore[arg-type]


class Recorder:
    def __init__(self, cancel_at: float | None = None) -> None:
        self.calls: list[tuple[float, str | None, int]] = []
        self.cancel_at = cancel_at

    def __call__(self, fraction: float, note: str | None = None) -> None:
        self.calls.append((fraction, note, threading.get_ident()))
        if self.cancel_at is not None and fraction >= self.cancel_at:
            raise Cancelled()

    @property
    def fractions(self) -> list[float]:
        return [f for f, _, _ in self.calls]


@pytest.fixture(scope="module")
def turbo(tiny_checkpoint: Path) -> AceStepEngine:
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=tiny_checkpoint), RATE)
    engine.warm_up()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def with_lm(tiny_checkpoint: Path) -> AceStepEngine:
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=tiny_checkpoint, lm="0.6B"), 48000)
    yield engine
    engine.close()


def test_loads_offline_and_generates_exact_stereo(turbo: AceStepEngine) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert turbo.load_seconds is not None and turbo._loaded is not None
    assert turbo._loaded.is_turbo and turbo._loaded.can_cover and turbo._loaded.device.type == "cpu"
    for duration in (10.0, 12.34):
        song = turbo.generate(spec(duration_s=duration), Recorder())
        assert isinstance(song, Audio) and song.sample_rate == RATE
        assert song.samples.shape == (int(round(duration * RATE)), 2)
        assert song.samples.dtype == np.float32
        assert np.isfinite(song.samples).all() and 0 < np.abs(song.samples).max() <= 1.0


def test_deterministic_for_a_seed(turbo: AceStepEngine) -> None:
    first = turbo.generate(spec(), Recorder())
    again = turbo.generate(spec(), Recorder())
    other = turbo.generate(spec(seed=8), Recorder())
    assert np.array_equal(first.samples, again.samples)
    assert not np.allclose(first.samples, other.samples)


def test_every_spec_field_reaches_the_model(turbo: AceStepEngine) -> None:
    pipe = turbo._loaded.pipe
    seen: list[dict] = []
    original = type(pipe).__call__

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs)
        return original(self, *args, **kwargs)

    type(pipe).__call__ = spy
    try:
        turbo.generate(spec(time_signature="6/8", key="F# major", language="de", bpm=140), Recorder())
    finally:
        type(pipe).__call__ = original
    (kwargs,) = seen
    assert kwargs["bpm"] == 140 and kwargs["keyscale"] == "F# major" and kwargs["timesignature"] == "6"
    assert kwargs["vocal_language"] == "de" and kwargs["audio_duration"] == 10.0
    assert kwargs["lyrics"] == ["[verse]\nrain falls soft\n[chorus]\nstay"]
    caption = kwargs["prompt"][0].lower()
    assert "jazz" in caption and "relaxing" in caption and "brushed drums" in caption and "rain" in caption
    assert kwargs["num_inference_steps"] == 8 and kwargs["shift"] == 3.0 and kwargs["guidance_scale"] == 1.0


def test_progress_is_monotonic_and_marshalled_to_the_caller(turbo: AceStepEngine) -> None:
    progress = Recorder()
    turbo.generate(spec(), progress)
    assert progress.fractions == sorted(progress.fractions)
    assert progress.fractions[-1] == 1.0
    steps = [note for _, note, _ in progress.calls if note and note.startswith("diffusion step")]
    assert steps[-1] == "diffusion step 8/8" and len(set(steps)) == 8
    caller = threading.get_ident()
    assert {thread for _, _, thread in progress.calls} == {caller}
    assert turbo._thread.thread_id not in (None, caller)


def test_cancellation_stops_between_steps_and_the_engine_goes_on(turbo: AceStepEngine) -> None:
    pipe = turbo._loaded.pipe
    steps_run: list[int] = []
    original = type(pipe.transformer).forward

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        steps_run.append(1)
        return original(self, *args, **kwargs)

    type(pipe.transformer).forward = counting
    try:
        with pytest.raises(Cancelled):
            turbo.generate(spec(), Recorder(cancel_at=0.3))
    finally:
        type(pipe.transformer).forward = original
    assert 1 <= len(steps_run) < 8
    assert turbo.generate(spec(), Recorder()).samples.shape == (10 * RATE, 2)


def test_instrumental(turbo: AceStepEngine) -> None:
    song = turbo.generate(spec(instrumental=True, lyrics=""), Recorder())
    assert song.samples.shape == (10 * RATE, 2)


def test_variants_take_zero_is_the_single_song(turbo: AceStepEngine) -> None:
    single = turbo.generate(spec(), Recorder())
    takes = turbo.generate_variants(spec(), Recorder(), AceStepTask(variants=3))
    assert len(takes) == 3
    assert np.allclose(takes[0].samples, single.samples, atol=1e-4)
    assert not np.allclose(takes[1].samples, takes[2].samples)
    with pytest.raises(TaskInvalid):
        turbo.generate(spec(), Recorder(), AceStepTask(variants=5))  # max_variants = 4


def test_cover_at_a_new_tempo_and_repaint(turbo: AceStepEngine) -> None:
    original = turbo.generate(spec(), Recorder())
    cover = turbo.generate(spec(bpm=120, instrumental=True), Recorder(),
                           AceStepTask(kind="cover", source=original, source_bpm=92,
                                       cover_strength=0.7, reference=original))
    again = turbo.generate(spec(bpm=120, instrumental=True), Recorder(),
                           AceStepTask(kind="cover", source=original, source_bpm=92,
                                       cover_strength=0.7, reference=original))
    assert cover.samples.shape == (10 * RATE, 2)
    assert np.array_equal(cover.samples, again.samples)
    repaint = turbo.generate(spec(), Recorder(),
                             AceStepTask(kind="repaint", source=original, repaint_start_s=3,
                                         repaint_end_s=6))
    assert repaint.samples.shape == (10 * RATE, 2)
    assert not np.allclose(repaint.samples, original.samples)
    with pytest.raises(TaskInvalid, match="source"):
        turbo.generate(spec(), Recorder(), AceStepTask(kind="repaint"))
    with pytest.raises(TaskInvalid, match="repaint"):
        turbo.generate(spec(), Recorder(), AceStepTask(kind="repaint", source=original,
                                                       repaint_start_s=8, repaint_end_s=4))


def test_the_lm_writes_codes_first(with_lm: AceStepEngine) -> None:
    progress = Recorder()
    first = with_lm.generate(spec(), progress)
    assert first.samples.shape == (10 * 48000, 2)
    notes = [note for _, note, _ in progress.calls]
    assert "writing audio codes" in notes and "diffusion step 8/8" in notes
    assert progress.fractions == sorted(progress.fractions)
    assert np.array_equal(with_lm.generate(spec(), Recorder()).samples, first.samples)
    prompt = with_lm._request(spec(), AceStepTask(), with_lm._loaded).lm_prompt
    assert "# Caption" in prompt and "bpm: 92" in prompt and "keyscale: A minor" in prompt
    assert "timesignature: 4" in prompt and prompt.endswith("</think><|im_end|>\n")


def test_base_variant_uses_guidance(tiny_checkpoint: Path) -> None:
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=tiny_checkpoint, dit="base", steps=3,
                                           guidance_scale=4.0), RATE)
    progress = Recorder()
    song = engine.generate(spec(), progress)
    assert not engine._loaded.is_turbo
    assert song.samples.shape == (10 * RATE, 2) and np.isfinite(song.samples).all()
    assert "diffusion step 3/3" in [note for _, note, _ in progress.calls]
    engine.close()


def test_int8_quantisation_on_the_cpu(tiny_checkpoint: Path) -> None:
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=tiny_checkpoint, quantization="int8"), RATE)
    assert engine.generate(spec(), Recorder()).samples.shape == (10 * RATE, 2)
    engine.close()


def test_diffusers_layout_loads_too(turbo: AceStepEngine, tmp_path: Path) -> None:
    turbo._loaded.pipe.save_pretrained(tmp_path / "pipeline")
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=tmp_path / "pipeline"), RATE)
    assert engine.layout.kind == "diffusers"
    song = engine.generate(spec(), Recorder())
    assert np.allclose(song.samples, turbo.generate(spec(), Recorder()).samples, atol=1e-4)
    engine.close()


def test_missing_files_are_named_with_how_to_fetch_them(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.rmtree(broken / "Qwen3-Embedding-0.6B")
    with pytest.raises(CheckpointMissing) as caught:
        AceStepEngine(AceStepSettings(checkpoint_dir=broken, lm="4B"), RATE)
    message = caught.value.message
    assert "VAE weights" in message and str(broken / "vae") in message
    assert "Qwen3-Embedding-0.6B/" in message and "hf download ACE-Step/Ace-Step1.5" in message
    assert "acestep-5Hz-lm-4B/" in message and "hf download ACE-Step/acestep-5Hz-lm-4B" in message
    with pytest.raises(CheckpointMissing, match="acestep-v15-sft/"):
        AceStepEngine(AceStepSettings(checkpoint_dir=tiny_checkpoint, dit="sft"), RATE)
    with pytest.raises(CheckpointMissing, match="does not exist"):
        AceStepEngine(AceStepSettings(checkpoint_dir=tmp_path / "nowhere"), RATE)
    with pytest.raises(CheckpointMissing, match="checkpoint_dir"):
        AceStepEngine(AceStepSettings(), RATE)


def test_a_config_that_does_not_match_the_weights(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import json

    broken = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, broken)
    config_file = broken / "acestep-v15-turbo" / "config.json"
    config = json.loads(config_file.read_text())
    config["num_hidden_layers"] = 3
    config_file.write_text(json.dumps(config))
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=broken), RATE)
    with pytest.raises(AceStepUnavailable, match="does not match its config.json"):
        engine.generate(spec(), Recorder())
    engine.close()


def test_no_gpu_is_a_clear_error(tiny_checkpoint: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=tiny_checkpoint, device="cuda"), RATE)
    with pytest.raises(AceStepUnavailable, match="no CUDA GPU"):
        engine.warm_up()
    engine.close()


def test_out_of_memory_retries_with_offload_then_reports(turbo: AceStepEngine,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real_generate = model_module.generate
    calls: list[str] = []

    def oom_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("generate")
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model_module, "generate", oom_once)
    monkeypatch.setattr(model_module, "enable_offload", lambda loaded: calls.append("offload") or True)
    song = turbo.generate(spec(), Recorder())
    assert calls == ["generate", "offload", "generate"] and song.samples.shape == (10 * RATE, 2)

    def always_oom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr(model_module, "generate", always_oom)
    with pytest.raises(AceStepOutOfMemory) as caught:
        turbo.generate(spec(), Recorder())
    assert "out of GPU memory" in caught.value.message and "even with CPU offload" in caught.value.message
    assert 'offload = "always"' in caught.value.message

    never = AceStepEngine(AceStepSettings(checkpoint_dir=turbo.settings.checkpoint_dir, offload="never"),
                          RATE)
    never._loaded = turbo._loaded
    calls.clear()
    with pytest.raises(AceStepOutOfMemory):
        never.generate(spec(), Recorder())
    assert "offload" not in calls
    never.close()


def test_behind_the_real_pipeline_progress_and_cancel(turbo: AceStepEngine) -> None:
    """pipeline.produce drives the engine as a worker child does: its progress lambda, its
    cancel Event (set while the model runs) stops the song between diffusion steps."""
    from cassetted.lyrics.base import LyricsResult
    from cassetted.pipeline import produce
    from cassetted.schemas import JobState

    def lyrics(_spec: SongSpec) -> LyricsResult:
        return LyricsResult(title="Rain", lyrics="[verse]\nrain", style="soft piano", provider="test")

    reports: list[tuple[JobState, float]] = []
    cancel = threading.Event()
    finished, (song,), provider = produce(spec(lyrics=""), lyrics, turbo,
                                       lambda state, f: reports.append((state, f)), cancel)
    assert provider == "test" and finished.style == "soft piano"
    assert song.samples.shape == (10 * RATE, 2)
    composing = [f for state, f in reports if state == JobState.composing]
    assert len(composing) >= 9 and composing == sorted(composing)

    def report(state: JobState, fraction: float) -> None:
        if state == JobState.composing and fraction > 0.3:
            cancel.set()

    cancel.clear()
    with pytest.raises(Cancelled):
        produce(spec(lyrics=""), lyrics, turbo, report, cancel)


def test_registry_factory(tiny_checkpoint: Path) -> None:
    from types import SimpleNamespace

    from cassetted.music.acestep import create

    daemon = SimpleNamespace(acestep=AceStepSettings(checkpoint_dir=tiny_checkpoint),
                             generation=SimpleNamespace(sample_rate=48000))
    engine = create(daemon)
    assert engine.name == "acestep" and engine.sample_rate == 48000 and engine._loaded is None
    engine.close()


def test_cancel_while_loading_returns_at_once_and_the_load_goes_on(tiny_checkpoint: Path) -> None:
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=tiny_checkpoint), RATE)
    progress = Recorder(cancel_at=0.0)
    with pytest.raises(Cancelled):
        engine.generate(spec(), progress)
    assert progress.calls[0][1] == "loading the ACE-Step models"
    engine._thread.call(lambda: None)  # queued behind the load
    assert engine._loaded is not None
    assert engine.generate(spec(), Recorder()).samples.shape == (10 * RATE, 2)
    engine.close()
