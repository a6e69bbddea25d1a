"""The acestep engine's real loading and generation code, on tiny random-weight models (CPU)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cassetted.contract.schemas import SongSpec  # noqa: E402
from cassetted.music.acestep import model as model_module  # noqa: E402
from cassetted.music.acestep.engine import (  # noqa: E402
    AceStepEngine,
    AceStepOutOfMemory,
    AceStepSettings,
    AceStepTask,
    AceStepUnavailable,
    CheckpointMissing,
    ScheduleInvalid,
    TaskInvalid,
)
from cassetted.music.base import Audio, Cancelled  # noqa: E402

RATE = 44100


def spec(**changes: object) -> SongSpec:
    base = {"prompt": "rain on the window", "genre": "jazz", "mood": "relaxing", "bpm": 92, "key": "A minor",
            "time_signature": "4/4", "duration_s": 10.0, "seed": 7, "language": "en",
            "lyrics": "[verse]\nrain falls soft\n[chorus]\nstay", "style": "brushed drums, piano"}
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
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=tiny_checkpoint, lm="1.7B"), 48000)
    yield engine
    engine.close()


def test_loads_offline_and_generates_exact_stereo(turbo: AceStepEngine) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert turbo.load_seconds is not None and turbo._loaded is not None
    assert turbo._loaded.is_turbo and turbo._loaded.can_cover and turbo._loaded.device.type == "cpu"
    for duration in (10.0, 12.34):
        song = turbo.generate(spec(duration_s=duration), Recorder())
        assert isinstance(song, Audio) and song.sample_rate == RATE
        assert song.samples.shape == (round(duration * RATE), 2)
        assert song.samples.dtype == np.float32
        assert np.isfinite(song.samples).all() and 0 < np.abs(song.samples).max() <= 1.0


def test_deterministic_for_a_seed(turbo: AceStepEngine) -> None:
    first = turbo.generate(spec(), Recorder())
    again = turbo.generate(spec(), Recorder())
    other = turbo.generate(spec(seed=8), Recorder())
    assert np.array_equal(first.samples, again.samples)
    assert not np.allclose(first.samples, other.samples)


def test_every_spec_field_reaches_the_model(turbo: AceStepEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = turbo._loaded.pipe
    seen: list[dict] = []
    original = pipe.encode_prompt

    def spy(**kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(pipe, "encode_prompt", spy)
    turbo.generate(spec(time_signature="6/8", key="F# major", language="de", bpm=140), Recorder())
    (kwargs,) = seen
    assert kwargs["bpm"] == 140 and kwargs["keyscale"] == "F# major" and kwargs["timesignature"] == "6"
    assert kwargs["vocal_language"] == "de" and kwargs["audio_duration"] == 10.0
    assert kwargs["lyrics"] == ["[verse]\nrain falls soft\n[chorus]\nstay"]
    assert kwargs["instruction"] == "Fill the audio semantic mask based on the given conditions:"
    caption = kwargs["prompt"][0].lower()
    assert "jazz" in caption and "relaxing" in caption and "brushed drums" in caption and "rain" in caption


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
    prompt = with_lm._request(spec(), AceStepTask(), with_lm._loaded)[0].lm_prompt
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
    config["layer_types"] = [*config["layer_types"], "sliding_attention"]
    config_file.write_text(json.dumps(config))
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=broken), RATE)
    with pytest.raises(AceStepUnavailable, match=r"does not match its config\.json"):
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
    from cassetted.contract.schemas import JobState
    from cassetted.jobs.pipeline import produce
    from cassetted.lyrics.base import LyricsResult

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

    from cassetted.music.acestep.engine import create

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


# ------------------------------------------------- the official checkpoint, as upstream names it

def _file_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_the_fixture_is_written_in_upstreams_naming(tiny_checkpoint: Path) -> None:
    """The facts the fixture stands on (tests/acestep/tiny.py cites upstream's classes)."""
    import json

    from tests.music.acestep.tiny import official_dit_keys

    folder = tiny_checkpoint / "acestep-v15-turbo"
    state = _file_tensors(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["AceStepConditionGenerationModel"] and config["is_turbo"] is True
    assert config["auto_map"]["AutoModel"] == "modeling_acestep_v15_turbo.AceStepConditionGenerationModel"
    assert {k: tuple(v.shape) for k, v in state.items()} == official_dit_keys(config)
    h, hd = config["hidden_size"], config["head_dim"]
    assert state["decoder.layers.0.self_attn.q_proj.weight"].shape == (config["num_attention_heads"] * hd, h)
    assert state["decoder.layers.1.cross_attn.k_norm.weight"].shape == (hd,)
    assert state["decoder.proj_in.1.weight"].shape == (h, config["in_channels"], config["patch_size"])
    assert state["decoder.proj_out.1.weight"].shape == (h, 64, config["patch_size"])  # ConvTranspose1d
    assert state["encoder.lyric_encoder.layers.0.self_attn.o_proj.weight"].shape == (h, h)
    assert state["tokenizer.quantizer.project_in.weight"].shape == (2, config["fsq_dim"])
    assert state["detokenizer.special_tokens"].shape == (1, config["pool_window_size"], h)
    assert state["null_condition_emb"].shape == (1, 1, h)
    assert all(v.dtype == torch.bfloat16 for v in state.values())
    assert not [k for k in state if any(part in k for part in (".to_q.", ".norm_q.", "to_out", "_conv."))]
    silence = torch.load(folder / "silence_latent.pt", weights_only=True)
    assert silence.shape == (1, 64, 15000)


def test_every_official_tensor_lands_in_the_model(turbo: AceStepEngine, tiny_checkpoint: Path) -> None:
    """Each tensor of model.safetensors is consumed, by the part upstream meant it for, and
    nothing of the model is left as it was built."""
    pipe = turbo._loaded.pipe
    state = _file_tensors(tiny_checkpoint / "acestep-v15-turbo")
    modules = {"decoder": pipe.transformer, "encoder": pipe.condition_encoder,
               "tokenizer": pipe.audio_tokenizer, "detokenizer": pipe.audio_token_detokenizer}
    # Upstream name -> diffusers 0.42.1 name, typed in from both libraries' classes.
    by_hand = {
        "decoder.layers.0.self_attn.q_proj.weight": ("decoder", "layers.0.self_attn.to_q.weight"),
        "decoder.layers.0.self_attn.o_proj.weight": ("decoder", "layers.0.self_attn.to_out.0.weight"),
        "decoder.layers.1.cross_attn.k_norm.weight": ("decoder", "layers.1.cross_attn.norm_k.weight"),
        "decoder.layers.1.cross_attn.v_proj.weight": ("decoder", "layers.1.cross_attn.to_v.weight"),
        "decoder.proj_in.1.weight": ("decoder", "proj_in_conv.weight"),
        "decoder.proj_out.1.bias": ("decoder", "proj_out_conv.bias"),
        "encoder.timbre_encoder.layers.0.self_attn.q_norm.weight":
            ("encoder", "timbre_encoder.layers.0.self_attn.norm_q.weight"),
        "tokenizer.attention_pooler.layers.0.self_attn.k_proj.weight":
            ("tokenizer", "attention_pooler.layers.0.self_attn.to_k.weight"),
        "detokenizer.layers.0.self_attn.o_proj.weight": ("detokenizer", "layers.0.self_attn.to_out.0.weight"),
        "null_condition_emb": ("encoder", "null_condition_emb"),
    }
    for official, (part, name) in by_hand.items():
        assert torch.equal(modules[part].state_dict()[name], state[official].float()), official
    loaded = sum(t.numel() for m in modules.values() for _, t in m.named_parameters())
    assert loaded == sum(t.numel() for t in state.values())
    assert not [n for m in modules.values()
                for n, t in [*m.named_parameters(), *m.named_buffers()] if t.is_meta]
    silence = torch.load(tiny_checkpoint / "acestep-v15-turbo" / "silence_latent.pt", weights_only=True)
    assert torch.equal(pipe.condition_encoder.silence_latent, silence.transpose(1, 2))
    assert pipe.vae.use_tiling


def _rewrite(folder: Path, change) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file, save_file

    name = next(n for n in ("model.safetensors", "diffusion_pytorch_model.safetensors")
                if (folder / n).is_file())
    state = load_file(str(folder / name))
    change(state)
    save_file(state, str(folder / name))


def test_a_tensor_missing_or_left_over_fails_the_load_naming_it(tiny_checkpoint: Path,
                                                                 tmp_path: Path) -> None:
    cases = [
        ("acestep-v15-turbo", lambda s: s.pop("decoder.layers.1.cross_attn.o_proj.weight"),
         "not in the file: decoder.layers.1.cross_attn.o_proj.weight"),
        ("acestep-v15-turbo", lambda s: s.update({"decoder.layers.0.self_attn.extra.weight": torch.zeros(2)}),
         "in the file but unused: decoder.layers.0.self_attn.extra.weight"),
        ("acestep-v15-turbo", lambda s: s.update({"lm_head.weight": torch.zeros(2)}), "lm_head.weight"),
        ("acestep-v15-turbo", lambda s: s.pop("tokenizer.quantizer.project_out.bias"),
         "tokenizer.quantizer.project_out.bias"),
        ("vae", lambda s: s.pop(sorted(k for k in s if k.startswith("decoder."))[0]), "the VAE"),
        ("Qwen3-Embedding-0.6B", lambda s: s.pop("norm.weight"), "the text encoder"),
    ]
    for number, (folder, change, expected) in enumerate(cases):
        broken = tmp_path / f"ckpt{number}"
        shutil.copytree(tiny_checkpoint, broken, ignore=shutil.ignore_patterns("acestep-5Hz-*"))
        _rewrite(broken / folder, change)
        engine = AceStepEngine(AceStepSettings(checkpoint_dir=broken), RATE)
        with pytest.raises(AceStepUnavailable) as caught:
            engine.warm_up()
        assert expected in caught.value.message, caught.value.message
        engine.close()


def test_a_diffusers_named_file_in_the_official_layout_is_refused(tiny_checkpoint: Path,
                                                                  tmp_path: Path) -> None:
    broken = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, broken, ignore=shutil.ignore_patterns("acestep-5Hz-*"))

    def rename(state):  # type: ignore[no-untyped-def]
        for key in [k for k in state if ".q_proj." in k]:
            state[key.replace(".q_proj.", ".to_q.")] = state.pop(key)

    _rewrite(broken / "acestep-v15-turbo", rename)
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=broken), RATE)
    with pytest.raises(AceStepUnavailable, match="Diffusers way"):
        engine.warm_up()
    engine.close()


# ------------------------------------------------------------- schedules per variant

def _timesteps(engine: AceStepEngine, monkeypatch: pytest.MonkeyPatch, task: AceStepTask = AceStepTask(),  # noqa: B008 - frozen: one shared default is safe
               **changes: object) -> list[float]:
    seen: list[float] = []
    pipe = engine._ensure_loaded().pipe
    forward = pipe.transformer.forward

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(float(kwargs["timestep"][0]))
        return forward(*args, **kwargs)

    monkeypatch.setattr(pipe.transformer, "forward", spy)
    engine.generate(spec(**changes), Recorder(), task)
    monkeypatch.undo()
    return seen


def test_turbo_runs_upstreams_fixed_eight_step_table(turbo: AceStepEngine,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # SHIFT_TIMESTEPS, modeling_acestep_v15_turbo.py:1855-1859 at 783bb36 (typed in again here)
    table3 = [1.0, 0.9545454545454546, 0.9, 0.8333333333333334, 0.75, 0.6428571428571429, 0.5, 0.3]
    table1 = [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]
    assert _timesteps(turbo, monkeypatch) == pytest.approx(table3)
    assert _timesteps(turbo, monkeypatch, AceStepTask(shift=1.0)) == pytest.approx(table1)
    for task, field in ((AceStepTask(steps=4), "steps"), (AceStepTask(steps=20), "steps"),
                        (AceStepTask(shift=2.5), "shift"), (AceStepTask(shift=5.0), "shift")):
        with pytest.raises(ScheduleInvalid) as caught:
            turbo.generate(spec(), Recorder(), task)
        assert caught.value.code == "invalid_payload" and caught.value.field == field
        assert "acestep-v15-turbo" in caught.value.message


def test_turbo_shift1_means_shift_one(tiny_checkpoint: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, root, ignore=shutil.ignore_patterns("acestep-5Hz-*", "acestep-v15-base"))
    (root / "acestep-v15-turbo").rename(root / "acestep-v15-turbo-shift1")
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=root, dit="turbo-shift1"), RATE)
    assert _timesteps(engine, monkeypatch) == pytest.approx(
        [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])
    with pytest.raises(ScheduleInvalid, match="shift 1"):
        engine.generate(spec(), Recorder(), AceStepTask(shift=3.0))
    engine.close()
    configured = AceStepEngine(AceStepSettings(checkpoint_dir=root, dit="turbo-shift1", shift=3.0), RATE)
    with pytest.raises(ScheduleInvalid, match=r"\[acestep\] setting"):
        configured.generate(spec(), Recorder())
    configured.close()


def test_base_defaults_to_upstreams_fifty_steps_at_shift_one(tiny_checkpoint: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=tiny_checkpoint, dit="base"), RATE)
    steps = _timesteps(engine, monkeypatch, duration_s=10.0)
    assert len(steps) == 50 and steps[:3] == pytest.approx([1.0, 0.98, 0.96])  # linear: shift 1
    shifted = _timesteps(engine, monkeypatch, AceStepTask(steps=4, shift=3.0), duration_s=10.0)
    assert shifted == pytest.approx([1.0, 3 * 0.75 / (1 + 2 * 0.75), 3 * 0.5 / 2, 3 * 0.25 / 1.5])
    for task, field in ((AceStepTask(steps=201), "steps"), (AceStepTask(shift=7.0), "shift")):
        with pytest.raises((ScheduleInvalid, TaskInvalid)) as caught:
            engine.generate(spec(duration_s=10.0), Recorder(), task)
        assert caught.value.field == field
    engine.close()


# ------------------------------------------------------------- cover and repaint as upstream

def test_cover_strength_switches_to_text2music_on_silence_part_way(turbo: AceStepEngine,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    original = turbo.generate(spec(), Recorder())
    pipe = turbo._loaded.pipe
    contexts: list[torch.Tensor] = []
    forward = pipe.transformer.forward

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        contexts.append(kwargs["context_latents"].clone())
        return forward(*args, **kwargs)

    monkeypatch.setattr(pipe.transformer, "forward", spy)
    turbo.generate(spec(), Recorder(), AceStepTask(kind="cover", source=original, cover_strength=0.5))
    assert len(contexts) == 8  # one DiT pass a step: a switch, not a blend of two at each step
    silence = pipe.condition_encoder.silence_latent[0, :contexts[0].shape[1]]
    source_part = [c[0, :, :64] for c in contexts]
    assert all(torch.equal(source_part[0], s) for s in source_part[:4])      # int(8 * 0.5) = 4
    assert not torch.equal(source_part[0], silence)
    assert all(torch.equal(s, silence) for s in source_part[4:])
    contexts.clear()
    turbo.generate(spec(), Recorder(), AceStepTask(kind="cover", source=original, cover_strength=1.0))
    assert len(contexts) == 8 and not any(torch.equal(c[0, :, :64], silence) for c in contexts)


def test_repaint_keeps_the_source_outside_the_window(turbo: AceStepEngine) -> None:
    original = turbo.generate(spec(), Recorder())
    repaint = turbo.generate(spec(), Recorder(),
                             AceStepTask(kind="repaint", source=original, repaint_start_s=3, repaint_end_s=6))
    before, after = int(3 * RATE) - int(0.01 * RATE), int(6 * RATE) + int(0.01 * RATE)
    assert np.array_equal(repaint.samples[:before], original.samples[:before])
    assert np.array_equal(repaint.samples[after:], original.samples[after:])
    inside = slice(int(3.1 * RATE), int(5.9 * RATE))
    assert np.abs(repaint.samples[inside] - original.samples[inside]).mean() > 1e-3
    to_end = turbo.generate(spec(), Recorder(),
                            AceStepTask(kind="repaint", source=original, repaint_start_s=8))
    assert np.array_equal(to_end.samples[:before], original.samples[:before])


# ------------------------------------------------------------- memory and bad takes

def test_long_songs_decode_in_tiles(turbo: AceStepEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    vae = turbo._loaded.pipe.vae
    calls: list[int] = []
    decoder_forward = vae.decoder.forward

    def counting(z):  # type: ignore[no-untyped-def]
        calls.append(z.shape[-1])
        return decoder_forward(z)

    monkeypatch.setattr(vae.decoder, "forward", counting)
    song = turbo.generate(spec(duration_s=60.0), Recorder())  # 1500 latent frames
    assert song.samples.shape == (60 * RATE, 2)
    assert len(calls) >= 3 and max(calls) <= vae.tile_latent_min_length + 2 * vae.tile_latent_overlap


def test_a_silent_or_nan_take_never_leaves_the_engine(turbo: AceStepEngine,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from cassetted.contract import errors

    vae = turbo._loaded.pipe.vae
    decode = vae.decode
    for broken, cause in ((lambda x: x * 0.0, "silent"), (lambda x: x * float("nan"), "NaN")):
        monkeypatch.setattr(vae, "decode", lambda z, broken=broken: type(decode(z))(
            sample=broken(decode(z).sample)))
        with pytest.raises(errors.GenerationFailed) as caught:
            turbo.generate(spec(), Recorder())
        assert cause in caught.value.message and "seed 7" in caught.value.message
        assert "again with new seeds" in caught.value.message
        assert caught.value.code == "generation_failed"
    monkeypatch.undo()
    assert turbo.generate(spec(), Recorder()).samples.shape == (10 * RATE, 2)


def test_a_bad_take_is_rendered_again_with_a_seed_that_reproduces_it(
        turbo: AceStepEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """One bad decode: the takes render again past every take's own seed, the song records
    the seed it was really made with (a single song at that seed is the same audio), and
    the job's warnings say what happened."""
    vae = turbo._loaded.pipe.vae
    decode = vae.decode
    calls = []

    def first_silent(z):  # type: ignore[no-untyped-def]
        calls.append(1)
        out = decode(z)
        return type(out)(sample=out.sample * 0.0) if len(calls) == 1 else out

    monkeypatch.setattr(vae, "decode", first_silent)
    song = turbo.generate(spec(), Recorder())
    monkeypatch.undo()
    retried = 7 + turbo.settings.max_variants
    assert song.seed == retried
    assert any("silent" in note and f"seed {retried}" in note for note in song.notes)
    again = turbo.generate(spec(seed=retried), Recorder())
    assert np.array_equal(song.samples, again.samples)
    assert again.seed == retried and not again.notes


def test_an_lm_that_fails_is_skipped_with_a_warning(with_lm: AceStepEngine, tiny_checkpoint: Path,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_lm.warm_up()
    plain = AceStepEngine(AceStepSettings(checkpoint_dir=tiny_checkpoint), 48000)

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(with_lm._loaded.lm, "generate", broken)
    progress = Recorder()
    song = with_lm.generate(spec(), progress)
    assert np.array_equal(song.samples, plain.generate(spec(), Recorder()).samples)
    assert with_lm.last_warnings and "the 5 Hz LM failed" in with_lm.last_warnings[0]
    assert any(note and note.startswith("warning: the 5 Hz LM failed") for _, note, _ in progress.calls)
    assert any("the 5 Hz LM failed" in note for note in song.notes)  # -> the job event's warnings
    plain.close()

    # An LM whose weights cannot be read: the engine loads without it and says so per song.
    broken_root = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, broken_root)
    (broken_root / "acestep-5Hz-lm-1.7B" / "model.safetensors").write_bytes(b"not a safetensors file")
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=broken_root, lm="1.7B"), 48000)
    song = engine.generate(spec(), Recorder())
    assert song.samples.shape == (10 * 48000, 2)
    assert "could not be loaded" in engine.last_warnings[0]
    engine.close()


def test_out_of_memory_with_takes_retries_one_take_at_a_time(turbo: AceStepEngine,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    expected = turbo.generate_variants(spec(), Recorder(), AceStepTask(variants=2))
    real_generate = model_module.generate
    batches: list[tuple[int, int]] = []

    def oom_for_batches(loaded, request, settings, report):  # type: ignore[no-untyped-def]
        batches.append((request.variants, request.first_take))
        if request.variants > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
        return real_generate(loaded, request, settings, report)

    monkeypatch.setattr(model_module, "generate", oom_for_batches)
    monkeypatch.setattr(model_module, "enable_offload", lambda loaded: True)
    takes = turbo.generate_variants(spec(), Recorder(), AceStepTask(variants=2))
    assert batches == [(2, 0), (1, 0), (1, 1)]
    assert all(np.allclose(a.samples, b.samples, atol=1e-4) for a, b in zip(takes, expected, strict=True))


@pytest.mark.parametrize("variant", ["turbo", "base"])
def test_text2music_matches_diffusers_own_pipeline(tiny_checkpoint: Path, variant: str) -> None:
    """Our loop (needed for upstream's cover/repaint) is diffusers' AceStepPipeline for plain
    text2music, which the upstream check found bit-exact with upstream's model code."""
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=tiny_checkpoint, dit=variant,
                                           guidance_scale=4.0, steps=4 if variant == "base" else None,
                                           shift=3.0), RATE)
    loaded = engine._ensure_loaded()
    request, _ = engine._request(spec(), AceStepTask(variants=2), loaded)
    ours = model_module.generate(loaded, request, engine.settings, lambda f, n=None: None).takes
    theirs = loaded.pipe(
        prompt=[request.caption] * 2, lyrics=[request.lyrics] * 2, vocal_language=request.language,
        audio_duration=request.duration_s, guidance_scale=request.guidance_scale,
        timesteps=list(request.timesteps), bpm=request.bpm, keyscale=request.keyscale,
        timesignature=request.timesignature, output_type="np",
        generator=[torch.Generator("cpu").manual_seed(request.seed + i) for i in range(2)]).audios
    for mine, reference in zip(ours, theirs, strict=True):
        assert np.allclose(mine, reference.T, atol=1e-5)
    engine.close()


# ------------------------------------------------------------- LoRA styles

def test_a_lora_style_as_upstream_trains_it(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from cassetted.contract import errors
    from tests.music.acestep.tiny import write_lora

    lora = write_lora(tmp_path / "our-band", rank=4, alpha=8)
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=tiny_checkpoint, loras={
        "our_band": {"path": lora}, "faint": {"path": lora, "scale": 0.0},
        "half": {"path": lora / "adapter_model.safetensors", "scale": 0.5}}), RATE)
    assert engine.loras == {"our_band", "faint", "half"}
    plain = engine.generate(spec(), Recorder())
    styled = engine.generate(spec(), Recorder(), AceStepTask(lora="our_band"))
    # The tiny VAE hears little of the DiT, but a song renders bit-identically each time: any
    # difference far above float noise is the adapter.
    assert np.abs(plain.samples - styled.samples).mean() > 1e-5
    to_q = engine._loaded.pipe.transformer.layers[0].self_attn.to_q
    assert to_q.scaling["style_our_band"] == pytest.approx(8 / 4)  # lora_alpha / r from adapter_config.json
    assert np.array_equal(engine.generate(spec(), Recorder()).samples, plain.samples)  # plain again
    faint = engine.generate(spec(), Recorder(), AceStepTask(lora="faint"))
    assert np.allclose(faint.samples, plain.samples, atol=1e-6)
    engine.generate(spec(), Recorder(), AceStepTask(lora="half"))  # a bare file: alpha = r
    assert to_q.scaling["style_half"] == pytest.approx(0.5)
    with pytest.raises(errors.InvalidPayload) as caught:
        engine.generate(spec(), Recorder(), AceStepTask(lora="nope"))
    assert caught.value.field == "lora" and "faint, half, our_band" in caught.value.message
    engine.close()


def test_a_lora_for_another_model_is_refused_naming_its_keys(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"base_model.model.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 32)},
              str(tmp_path / "other.safetensors"))
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=tiny_checkpoint, loras={
        "other": {"path": tmp_path / "other.safetensors"}, "gone": {"path": tmp_path / "gone"}}), RATE)
    with pytest.raises(AceStepUnavailable, match=r"transformer_blocks\.0\.attn\.to_q") as caught:
        engine.generate(spec(), Recorder(), AceStepTask(lora="other"))
    assert caught.value.field == "lora"
    with pytest.raises(AceStepUnavailable, match="does not exist"):
        engine.generate(spec(), Recorder(), AceStepTask(lora="gone"))
    assert engine.generate(spec(), Recorder()).samples.shape == (10 * RATE, 2)
    engine.close()
