"""SongSpec -> ACE-Step conditioning, audio shaping and task validation (no torch needed)."""

from __future__ import annotations

import numpy as np
import pytest

from cassetted.contract.schemas import SongSpec
from cassetted.music.acestep import prompt as prompting
from cassetted.music.acestep import shaping
from cassetted.music.acestep.task import AceStepTask, TaskInvalid
from cassetted.music.base import Audio


def spec(**changes: object) -> SongSpec:
    base = {"prompt": "  a   birthday song for Mia ", "genre": "hip-hop", "mood": "uplifting", "bpm": 95,
            "key": "Bb major", "time_signature": "6/8", "duration_s": 30, "seed": 1, "language": "fr",
            "lyrics": "[verse]\nJoyeux anniversaire", "style": "808 bass, claps."}
    base.update(changes)
    return SongSpec(**base)  # type: ignore[arg-type]


def test_caption_leads_with_resolved_choices_then_the_wish() -> None:
    text = prompting.caption(spec())
    assert text.startswith("Uplifting, bright and hopeful hip-hop song")
    assert "808 bass, claps" in text and text.endswith("a birthday song for Mia.")
    assert "  " not in text
    assert "instrumental" in prompting.caption(spec(instrumental=True))


def test_metadata_mapping() -> None:
    assert [prompting.time_signature(spec(time_signature=ts)) for ts in ("2/4", "3/4", "4/4", "6/8")] \
        == ["2", "3", "4", "6"]
    assert prompting.keyscale(spec()) == "Bb major"
    assert prompting.vocal_language(spec()) == "fr"
    assert prompting.vocal_language(spec(language="xx")) == "unknown"
    assert prompting.vocal_language(spec(instrumental=True)) == "unknown"
    assert prompting.lyrics(spec(instrumental=True)) == "[Instrumental]"
    assert prompting.lyrics(spec(lyrics="")) == "[Instrumental]"
    assert prompting.lyrics(spec()).startswith("[verse]")
    assert prompting.audio_codes_needed(30) == 150


def test_lm_chain_of_thought_is_sorted_yaml() -> None:
    think = prompting.lm_thinking(spec(prompt='say "hi": now'))
    lines = think.splitlines()
    assert lines[0] == "<think>" and lines[-1] == "</think>"
    keys = [line.split(":")[0] for line in lines[1:-1]]
    assert keys == sorted(keys) == ["bpm", "caption", "duration", "keyscale", "language", "timesignature"]
    assert "bpm: 95" in think and "timesignature: 6" in think and "duration: 30" in think
    assert 'caption: "' in think  # quoted: it holds a colon and quotes
    messages = prompting.lm_messages(spec())
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[1]["content"].startswith("# Caption\n") and "# Lyric\n[verse]" in messages[1]["content"]
    assert prompting.chatml(messages).count("<|im_start|>") == 3


def test_to_engine_gives_exact_frames_and_rate() -> None:
    rate_in, rate_out = 48000, 44100
    mono = np.sin(np.arange(int(10.5 * rate_in)) * 2 * np.pi * 440 / rate_in).astype(np.float32)
    out = shaping.to_engine(mono[:, None], rate_in, rate_out, 10.0)
    assert out.shape == (441000, 2) and out.dtype == np.float32
    assert abs(out[-1]).max() < 1e-3  # faded, not cut
    short = shaping.to_engine(np.ones((1000, 2), np.float32) * 2, rate_in, rate_in, 1.0)
    assert short.shape == (48000, 2) and short.max() == 1.0 and short[-1].max() == 0.0


def test_time_stretch_changes_tempo_not_pitch() -> None:
    rate = 16000
    t = np.arange(4 * rate) / rate
    tone = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32)
    faster = shaping.time_stretch(tone, 1.25)  # 100 -> 125 bpm
    assert abs(faster.shape[0] - 4 * rate / 1.25) < rate * 0.02
    spectrum = np.abs(np.fft.rfft(faster[:, 0] * np.hanning(faster.shape[0])))
    peak_hz = np.argmax(spectrum) * rate / faster.shape[0]
    assert abs(peak_hz - 440) < 5


def test_task_validation() -> None:
    audio = Audio(np.zeros((100, 2), np.float32), 100)
    AceStepTask().validate(30)
    AceStepTask(kind="cover", source=audio, cover_strength=0.5).validate(30)
    AceStepTask(kind="repaint", source=audio, repaint_start_s=5).validate(30)  # to the end
    bad = [
        AceStepTask(kind="cover"),
        AceStepTask(source=audio),
        AceStepTask(variants=0),
        AceStepTask(kind="cover", source=audio, cover_strength=1.5),
        AceStepTask(kind="repaint", source=audio, repaint_start_s=10, repaint_end_s=40),
        AceStepTask(kind="remix"),  # type: ignore[arg-type]
        AceStepTask(steps=0),
    ]
    for task in bad:
        with pytest.raises(TaskInvalid):
            task.validate(30)
    with pytest.raises(TaskInvalid) as caught:
        AceStepTask(kind="repaint").validate(30)
    assert caught.value.field == "source_song_id"


def test_settings_forbid_unknown_keys_and_bad_values() -> None:
    from pydantic import ValidationError

    from cassetted.music.acestep.engine import AceStepSettings

    assert AceStepSettings().dit == "turbo" and AceStepSettings().lm == "none"
    for bad in ({"dvice": "cpu"}, {"device": "gpu"}, {"dtype": "int4"}, {"offload": "maybe"},
                {"steps": 0}, {"dit": "../../etc"}):
        with pytest.raises(ValidationError):
            AceStepSettings(**bad)  # type: ignore[arg-type]


def test_importing_the_engines_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, cassetted.music.acestep.engine, cassetted.music.acestep.api; "
            "print('torch' in sys.modules, 'diffusers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def _placeholder_checkpoint(root, lm: bool = False):  # type: ignore[no-untyped-def]
    """The official layout with empty files: enough for the layout check, not for loading."""
    files = ["acestep-v15-turbo/config.json", "acestep-v15-turbo/model.safetensors",
             "acestep-v15-turbo/silence_latent.pt", "vae/config.json",
             "vae/diffusion_pytorch_model.safetensors", "Qwen3-Embedding-0.6B/config.json",
             "Qwen3-Embedding-0.6B/model.safetensors", "Qwen3-Embedding-0.6B/tokenizer.json"]
    if lm:
        files += ["acestep-5Hz-lm-1.7B/config.json", "acestep-5Hz-lm-1.7B/model.safetensors",
                  "acestep-5Hz-lm-1.7B/tokenizer.json"]
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    return root


def test_layout_check_names_what_is_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cassetted.music.acestep.layout import CheckpointMissing, resolve

    root = _placeholder_checkpoint(tmp_path / "ckpt", lm=True)
    layout = resolve(root, "turbo", "1.7B")
    assert layout.kind == "original" and layout.lm_dir == root / "acestep-5Hz-lm-1.7B"
    (root / "acestep-v15-turbo" / "silence_latent.pt").unlink()
    with pytest.raises(CheckpointMissing) as caught:
        resolve(root, "turbo", "0.6B")
    message = caught.value.message
    assert "acestep-v15-turbo/silence_latent.pt" in message
    assert "hf download ACE-Step/Ace-Step1.5 --local-dir <checkpoint_dir>" in message
    assert "acestep-5Hz-lm-0.6B/" in message and "ACE-Step/acestep-5Hz-lm-0.6B" in message
    assert caught.value.code == "generation_failed"


def test_without_torch_the_engine_says_what_to_install(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys

    import cassetted.music.acestep
    from cassetted.music.acestep.engine import AceStepEngine, AceStepSettings, AceStepUnavailable

    monkeypatch.delitem(sys.modules, "cassetted.music.acestep.model", raising=False)
    monkeypatch.delattr(cassetted.music.acestep, "model", raising=False)
    monkeypatch.setitem(sys.modules, "torch", None)
    engine = AceStepEngine(AceStepSettings(checkpoint_dir=_placeholder_checkpoint(tmp_path)), 44100)
    with pytest.raises(AceStepUnavailable, match=r"torch is missing\): pip install 'cassetted\[acestep\]'"):
        engine.generate(spec(), lambda f, n=None: None)
    engine.close()


def test_repaint_splice_keeps_the_source_outside_with_short_ramps() -> None:
    weight = shaping.window_weights(10, 4, 6, 2)
    assert weight.tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3, 1, 1, 2 / 3, 1 / 3, 0, 0])
    rate = 1000
    source = np.full((3 * rate, 2), 0.25, np.float32)
    generated = np.full((3 * rate, 2), -0.5, np.float32)
    out = shaping.splice(generated, source, 1.0, 2.0, rate)
    assert np.array_equal(out[:990], source[:990]) and np.array_equal(out[2010:], source[2010:])
    assert np.array_equal(out[1000:2000], generated[1000:2000])
    assert np.all(np.diff(out[990:1000, 0]) < 0)  # a ramp, not a click
    assert shaping.window_weights(5, 0, 5, 3).tolist() == [1, 1, 1, 1, 1]
