"""ACE-Step 1.5 in process: load the checkpoint into diffusers' AceStepPipeline, generate.

Imported only by the engine's model thread (torch, diffusers and transformers are heavy).
Everything here runs on that one thread: the pipeline is not thread-safe.

Integration surface: diffusers' native `AceStepPipeline` (DiT + condition encoder + Oobleck
VAE + Qwen3 text encoder, audio tokenizer/detokenizer for covers and LM codes) — a pinned,
pip-installable library, unlike ACE-Step's own repository (no PyPI release). The official
checkpoint layout is converted in memory at load time (the same prefix split as diffusers'
scripts/convert_ace_step_to_diffusers.py), so one download serves this engine and ACE-Step's
API server alike. The optional 5 Hz LM (a Qwen3 causal LM) writes the semantic audio codes
that condition the DiT, as ACE-Step's "thinking" mode does.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from cassetted.music._acestep_layout import Layout

# Offline before the hub libraries are imported: nothing is ever downloaded.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402

if TYPE_CHECKING:
    from cassetted.music.acestep import AceStepSettings

log = logging.getLogger(__name__)

Report = Callable[[float, "str | None"], None]
_CODE_TOKEN = re.compile(r"^<\|audio_code_(\d+)\|>$")


class ModelError(Exception):
    """The checkpoint is there but cannot be loaded as configured (message says why)."""


@dataclass
class Request:
    """One generation, every musical choice made, audio already at the model's rate."""

    caption: str
    lyrics: str
    language: str
    bpm: int
    keyscale: str
    timesignature: str
    duration_s: float
    seed: int
    steps: int
    shift: float
    guidance_scale: float
    variants: int = 1
    kind: str = "text2music"
    source: np.ndarray | None = None  # (frames, 2) float32 at the model's rate
    reference: np.ndarray | None = None
    cover_strength: float = 1.0
    repaint_start_s: float = 0.0
    repaint_end_s: float | None = None
    lm_prompt: str | None = None  # the formatted LM chat; None = no LM


@dataclass
class Loaded:
    """The pipeline (and LM) of one process, with what the engine needs to know of it."""

    pipe: Any
    device: torch.device
    dtype: torch.dtype
    is_turbo: bool
    sample_rate: int
    lm: Any = None
    lm_tokenizer: Any = None
    code_ids: Any = None  # tensor of the LM's <|audio_code_N|> token ids, ordered by N
    can_cover: bool = False
    offloaded: bool = False
    notes: list[str] = field(default_factory=list)

    def format_lm_prompt(self, messages: list[dict[str, str]]) -> str:
        from cassetted.music import _acestep_prompt as prompt

        tokenizer = self.lm_tokenizer
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        else:
            text = prompt.chatml(messages)
        return text if text.endswith("\n") else text + "\n"


# ------------------------------------------------------------------------------ loading


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device = {name!r} but torch sees no CUDA GPU "
                         f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _init_kwargs(cls: type, config: dict[str, Any]) -> dict[str, Any]:
    names = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return {key: value for key, value in config.items() if key in names}


def _empty_init():  # type: ignore[no-untyped-def]
    """Build big modules without random-initialising weights that are overwritten anyway."""
    try:
        from accelerate import init_empty_weights

        return init_empty_weights(include_buffers=False)
    except ImportError:  # accelerate is optional: then initialise normally
        import contextlib

        return contextlib.nullcontext()


def _build(cls: type, config: dict[str, Any], state: dict[str, torch.Tensor], dtype: torch.dtype,
           buffers: dict[str, torch.Tensor] | None = None) -> Any:
    """Instantiate `cls` from the original config and load its share of the weights strictly;
    `buffers` replace registered buffers whole (their length may differ from the default)."""
    with _empty_init():
        module = cls(**_init_kwargs(cls, config))
    state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}
    buffers = buffers or {}
    result = module.load_state_dict(state, strict=False, assign=True)
    missing = [key for key in result.missing_keys if key not in buffers]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"{cls.__name__}: missing {missing[:5]}, unexpected "
                           f"{list(result.unexpected_keys)[:5]}")
    for name, value in buffers.items():
        module.register_buffer(name, value.to(dtype), persistent=True)
    return module.eval()


def _load_original(layout: Layout, dtype: torch.dtype) -> tuple[Any, list[str]]:
    """The official folder layout -> AceStepPipeline, split in memory (no converted copy)."""
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import (
        AceStepAudioTokenDetokenizer,
        AceStepAudioTokenizer,
        AceStepConditionEncoder,
    )
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    notes: list[str] = []
    assert layout.vae_dir and layout.text_encoder_dir
    config = json.loads((layout.dit_dir / "config.json").read_text())
    config.setdefault("is_turbo", "turbo" in layout.dit_name)
    config.setdefault("model_version", "turbo" if config["is_turbo"] else None)
    state = _load_weights(layout.dit_dir, load_file)

    parts: dict[str, dict[str, torch.Tensor]] = {"decoder": {}, "encoder": {}, "tokenizer": {},
                                                 "detokenizer": {}}
    for key, value in state.items():
        prefix, _, rest = key.partition(".")
        if key == "null_condition_emb":
            parts["encoder"]["null_condition_emb"] = value
        elif prefix in parts:
            if prefix == "decoder":
                rest = rest.replace("proj_in.1.", "proj_in_conv.").replace("proj_out.1.", "proj_out_conv.")
            parts[prefix][rest] = value
    silence = torch.load(layout.dit_dir / "silence_latent.pt", map_location="cpu", weights_only=True)
    silence = silence.transpose(1, 2).contiguous()  # stored [1, C, T]; the pipeline slices [1, T, C]

    try:
        transformer = _build(AceStepTransformer1DModel, config, parts["decoder"], dtype)
        condition_encoder = _build(AceStepConditionEncoder, config, parts["encoder"], dtype,
                                   {"silence_latent": silence})
    except RuntimeError as error:
        raise ModelError(f"{layout.dit_dir}/model.safetensors does not match its config.json "
                         f"(a different ACE-Step version?): {str(error)[:300]}") from None
    audio_tokenizer = detokenizer = None
    if parts["tokenizer"] and parts["detokenizer"]:
        try:
            audio_tokenizer = _build(AceStepAudioTokenizer, config, parts["tokenizer"], dtype)
            detokenizer = _build(AceStepAudioTokenDetokenizer, config, parts["detokenizer"], dtype)
        except RuntimeError as error:  # covers and LM codes need these; text2music does not
            notes.append(f"audio tokenizer not loadable ({str(error)[:120]}): cover and LM off")
            audio_tokenizer = detokenizer = None
    else:
        notes.append("checkpoint has no audio tokenizer/detokenizer: cover and LM off")

    vae = AutoencoderOobleck.from_pretrained(layout.vae_dir, local_files_only=True, dtype=dtype)
    text_encoder = AutoModel.from_pretrained(layout.text_encoder_dir, local_files_only=True, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(layout.text_encoder_dir, local_files_only=True)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    pipe = AceStepPipeline(vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                           transformer=transformer, condition_encoder=condition_encoder,
                           scheduler=scheduler, audio_tokenizer=audio_tokenizer,
                           audio_token_detokenizer=detokenizer)
    return pipe, notes


def _load_weights(folder: Path, load_file: Callable[[str], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():  # sharded
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(folder / shard)))
        return state
    return load_file(str(folder / "model.safetensors"))


def _load_lm(lm_dir: Path, dtype: torch.dtype) -> tuple[Any, Any, torch.Tensor]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lm_dir, local_files_only=True)
    codes: dict[int, int] = {}
    for token, token_id in tokenizer.get_vocab().items():
        match = _CODE_TOKEN.match(token)
        if match:
            codes[int(match.group(1))] = token_id
    if not codes:
        raise ModelError(f"the LM tokenizer in {lm_dir} has no <|audio_code_N|> tokens: "
                         "not an ACE-Step 5 Hz LM")
    model = AutoModelForCausalLM.from_pretrained(lm_dir, local_files_only=True, dtype=dtype).eval()
    code_ids = torch.tensor([codes[n] for n in sorted(codes)], dtype=torch.long)
    return model, tokenizer, code_ids


def load(layout: Layout, settings: "AceStepSettings") -> Loaded:
    """Load every model once (on the calling thread, which must be the model thread)."""
    _quiet()
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    if settings.quantization == "int8" and (device.type != "cpu" or dtype != torch.float32):
        raise ModelError('quantization = "int8" (dynamic int8 matmuls) runs on the CPU in '
                         'float32 only; on a GPU use dtype = "bfloat16" and offload instead')
    if layout.kind == "diffusers":
        from diffusers import AceStepPipeline

        pipe = AceStepPipeline.from_pretrained(layout.dit_dir, local_files_only=True, dtype=dtype)
        notes: list[str] = []
    else:
        pipe, notes = _load_original(layout, dtype)
    pipe.set_progress_bar_config(disable=True)
    loaded = Loaded(pipe=pipe, device=device, dtype=dtype, is_turbo=bool(pipe.is_turbo),
                    sample_rate=int(pipe.sample_rate),
                    can_cover=pipe.audio_tokenizer is not None and pipe.audio_token_detokenizer is not None,
                    notes=notes)
    if layout.lm_dir is not None:
        if not loaded.can_cover:
            raise ModelError("the 5 Hz LM needs the DiT checkpoint's audio tokenizer/detokenizer, "
                             "which this checkpoint lacks; set lm = \"none\"")
        loaded.lm, loaded.lm_tokenizer, loaded.code_ids = _load_lm(layout.lm_dir, dtype)
    if settings.quantization == "int8":
        _quantize(loaded)
    if settings.offload == "always":
        enable_offload(loaded)
    else:
        pipe.to(device)
        if loaded.lm is not None:
            loaded.lm.to(device)
    return loaded


def _quiet() -> None:
    """No progress bars from the hub libraries in a daemon's log."""
    try:
        import diffusers.utils.logging as diffusers_logging
        import transformers.utils.logging as transformers_logging

        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
    except (ImportError, AttributeError):
        pass


def _quantize(loaded: Loaded) -> None:
    """Dynamic int8 matmuls for every Linear layer (torch.ao; deprecated upstream in favour
    of torchao, still shipped in the pinned torch)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        for module in (loaded.pipe.transformer, loaded.pipe.condition_encoder,
                       loaded.pipe.text_encoder, loaded.lm):
            if module is not None:
                quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def enable_offload(loaded: Loaded) -> bool:
    """Keep weights in RAM and move each model to the GPU only while it runs. False when it
    cannot help (on the CPU everything already lives in RAM)."""
    if loaded.offloaded:
        return False
    if loaded.device.type == "cpu":
        loaded.notes.append("offload has no effect on the CPU")
        return False
    loaded.pipe.to("cpu")
    if loaded.lm is not None:
        loaded.lm.to("cpu")
    empty_cache(loaded.device)
    loaded.pipe.enable_model_cpu_offload(device=loaded.device)
    loaded.offloaded = True
    return True


def empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_out_of_memory(error: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(error, oom):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def memory_note(device: torch.device) -> str:
    if device.type != "cuda":
        return ""
    try:
        free, total = torch.cuda.mem_get_info(device)
    except RuntimeError:
        return ""
    return f" ({free / 2**30:.1f} of {total / 2**30:.1f} GiB free)"


# --------------------------------------------------------------------------- generation


class _CodesOnly:
    """A logits processor: only <|audio_code_N|> tokens may follow; ticks once per token."""

    def __init__(self, allowed: torch.Tensor, tick: Callable[[], None]) -> None:
        self.allowed = allowed
        self.tick = tick

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.tick()
        mask = torch.full_like(scores, float("-inf"))
        mask[:, self.allowed.to(scores.device)] = 0.0
        return scores + mask


def _lm_codes(loaded: Loaded, request: Request, settings: "AceStepSettings", report: Report,
              start: float, span: float) -> list[str]:
    """The 5 Hz LM writes one code per 200 ms of music for each variant."""
    from transformers import LogitsProcessorList

    from cassetted.music._acestep_prompt import audio_codes_needed

    assert request.lm_prompt is not None
    model, tokenizer = loaded.lm, loaded.lm_tokenizer
    n_codes = audio_codes_needed(request.duration_s)
    lm_device = loaded.device
    if loaded.offloaded:
        model.to(lm_device)
    inputs = tokenizer(request.lm_prompt, return_tensors="pt").to(lm_device)
    total = n_codes * request.variants
    done = [0]
    code_of = {int(token_id): n for n, token_id in enumerate(loaded.code_ids.tolist())}

    def tick() -> None:
        done[0] += 1
        if done[0] % max(1, total // 50) == 0 or done[0] == total:
            report(start + span * min(1.0, done[0] / total), "writing audio codes")

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    strings = []
    try:
        for variant in range(request.variants):
            torch.manual_seed(request.seed + variant)
            output = model.generate(
                **inputs, max_new_tokens=n_codes, min_new_tokens=n_codes, do_sample=True,
                temperature=settings.lm_temperature, top_p=settings.lm_top_p, top_k=0,
                logits_processor=LogitsProcessorList([_CodesOnly(loaded.code_ids, tick)]),
                pad_token_id=pad, eos_token_id=None,
            )
            new = output[0, inputs["input_ids"].shape[1]:].tolist()
            strings.append("".join(f"<|audio_code_{code_of[t]}|>" for t in new if t in code_of))
    finally:
        if loaded.offloaded:
            model.to("cpu")
            empty_cache(lm_device)
    return strings


def generate(loaded: Loaded, request: Request, settings: "AceStepSettings", report: Report) -> list[np.ndarray]:
    """Run one request; returns `variants` arrays (frames, channels) at the model's rate.

    `report(fraction, note)` is called after each LM token batch and each diffusion step; it
    raises Cancelled to stop between steps.
    """
    pipe = loaded.pipe
    torch.manual_seed(request.seed)  # the VAE's posterior sample (cover, repaint) draws from it
    if loaded.device.type == "cuda":
        torch.cuda.manual_seed_all(request.seed)
    generators = [torch.Generator("cpu").manual_seed(request.seed + i) for i in range(request.variants)]

    audio_codes = None
    dit_start, dit_end = 0.0, 0.9
    if request.lm_prompt is not None and request.kind == "text2music":
        report(0.0, "writing audio codes")
        audio_codes = _lm_codes(loaded, request, settings, report, 0.0, 0.45)
        dit_start, dit_end = 0.45, 0.92
    steps = request.steps

    def on_step(_pipe: Any, step: int, _t: Any, _kwargs: dict[str, Any]) -> dict[str, Any]:
        report(dit_start + (dit_end - dit_start) * (step + 1) / steps, f"diffusion step {step + 1}/{steps}")
        return {}

    kwargs: dict[str, Any] = {}
    device = loaded.device
    if request.kind in ("cover", "repaint"):
        if request.kind == "cover" and not loaded.can_cover:
            raise ModelError("this checkpoint has no audio tokenizer: covers are not possible")
        assert request.source is not None
        kwargs["src_audio"] = torch.from_numpy(np.ascontiguousarray(request.source.T)).to(device)
        if request.kind == "cover":
            kwargs["audio_cover_strength"] = request.cover_strength
        else:
            kwargs["repainting_start"] = request.repaint_start_s
            kwargs["repainting_end"] = request.repaint_end_s if request.repaint_end_s is not None else -1
    if request.reference is not None:
        kwargs["reference_audio"] = torch.from_numpy(np.ascontiguousarray(request.reference.T)).to(device)
    if audio_codes is not None:
        kwargs["audio_codes"] = audio_codes

    report(dit_start, "diffusion")
    output = pipe(
        prompt=[request.caption] * request.variants,
        lyrics=[request.lyrics] * request.variants,
        vocal_language=request.language,
        audio_duration=request.duration_s,
        num_inference_steps=steps,
        guidance_scale=1.0 if loaded.is_turbo else request.guidance_scale,
        shift=request.shift,
        generator=generators,
        bpm=request.bpm,
        keyscale=request.keyscale,
        timesignature=request.timesignature,
        task_type=request.kind,
        callback_on_step_end=on_step,
        output_type="np",
        **kwargs,
    )
    audios = output.audios  # (variants, channels, frames) float32
    report(1.0, "decoded")
    return [np.ascontiguousarray(np.asarray(a, dtype=np.float32).T) for a in audios]
