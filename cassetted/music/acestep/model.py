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

import contextlib
import inspect
import json
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cassetted.music.acestep.layout import Layout
from cassetted.music.base import Cancelled

# Offline before the hub libraries are imported: nothing is ever downloaded.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch

if TYPE_CHECKING:
    from cassetted.music.acestep.engine import AceStepSettings

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
    shift: float | None  # None = the variant's default (already in `timesteps`)
    guidance_scale: float
    variants: int = 1
    kind: str = "text2music"
    source: np.ndarray | None = None  # (frames, 2) float32 at the model's rate
    reference: np.ndarray | None = None
    cover_strength: float = 1.0
    repaint_start_s: float = 0.0
    repaint_end_s: float | None = None
    lm_prompt: str | None = None  # the formatted LM chat; None = no LM
    timesteps: tuple[float, ...] = ()  # the sampling schedule, t = 1 -> last t before 0
    first_take: int = 0  # take 0 of this request is take `first_take` of the song (seed + n)
    lora: str | None = None  # the configured LoRA style's name; None = the plain model


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
    lm_error: str | None = None  # why the configured LM is not loaded (songs go on without it)
    loras: set[str] = field(default_factory=set)  # LoRA adapters loaded into the DiT
    quantized: bool = False
    notes: list[str] = field(default_factory=list)

    def format_lm_prompt(self, messages: list[dict[str, str]]) -> str:
        from cassetted.music.acestep import prompt

        tokenizer = self.lm_tokenizer
        text: str
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


def _init_kwargs(cls: type[Any], config: dict[str, Any]) -> dict[str, Any]:
    names = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return {key: value for key, value in config.items() if key in names}


def _empty_init() -> contextlib.AbstractContextManager[Any]:
    """Build big modules without random-initialising weights that are overwritten anyway."""
    try:
        from accelerate import init_empty_weights

        empty: contextlib.AbstractContextManager[Any] = init_empty_weights(include_buffers=False)
        return empty
    except ImportError:  # accelerate is optional: then initialise normally
        return contextlib.nullcontext()


# Official key names -> diffusers 0.42.1's. Upstream's AceStepAttention names its parts
# q_proj/k_proj/v_proj/o_proj/q_norm/k_norm (acestep/models/turbo/modeling_acestep_v15_turbo.py
# :276-282 at 783bb36); diffusers' AceStepAttention calls them to_q/to_k/to_v/to_out.0/
# norm_q/norm_k (diffusers/models/transformers/ace_step_transformer.py:304-311). The DiT's
# proj_in/proj_out are nn.Sequential(Lambda, Conv, Lambda) upstream (":1261-1295"), plain
# convs in diffusers. Everything else has the same name on both sides.
_ATTENTION = re.compile(r"\.(self_attn|cross_attn)\.(q_proj|k_proj|v_proj|o_proj|q_norm|k_norm)\.")
_ATTENTION_NAMES = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "o_proj": "to_out.0",
                    "q_norm": "norm_q", "k_norm": "norm_k"}
_DECODER_NAMES = {"proj_in.1.": "proj_in_conv.", "proj_out.1.": "proj_out_conv."}
_PARTS = ("decoder", "encoder", "tokenizer", "detokenizer")


def diffusers_key(key: str) -> tuple[str, str] | None:
    """An official DiT checkpoint key -> (part, the diffusers module's key), None if the
    key belongs to no part (reported as unexpected)."""
    if key == "null_condition_emb":  # top level upstream; diffusers keeps it in the encoder
        return "encoder", key
    part, _, rest = key.partition(".")
    if part not in _PARTS or not rest:
        return None
    rest = _ATTENTION.sub(lambda m: f".{m.group(1)}.{_ATTENTION_NAMES[m.group(2)]}.", "." + rest)[1:]
    if part == "decoder":
        for old, new in _DECODER_NAMES.items():
            if rest.startswith(old):
                rest = new + rest[len(old):]
    return part, rest


def official_key(part: str, name: str) -> str:
    """The inverse of diffusers_key, for messages that name what a file lacks."""
    if part == "encoder" and name == "null_condition_emb":
        return name
    if part == "decoder":
        for old, new in _DECODER_NAMES.items():
            if name.startswith(new):
                name = old + name[len(new):]
    back = {v: k for k, v in _ATTENTION_NAMES.items()}
    name = re.sub(r"\.(self_attn|cross_attn)\.(to_q|to_k|to_v|to_out\.0|norm_q|norm_k)\.",
                  lambda m: f".{m.group(1)}.{back[m.group(2)]}.", "." + name)[1:]
    return f"{part}.{name}"


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown} and {len(keys) - limit} more" if len(keys) > limit else shown


def _build(cls: type[Any], config: dict[str, Any], state: dict[str, torch.Tensor], dtype: torch.dtype,
           part: str, originals: dict[str, str], buffers: dict[str, torch.Tensor] | None = None) -> Any:
    """Instantiate `cls` without initialising its weights, then assign its share of the
    checkpoint. Every parameter and persistent buffer must come from the file (or
    `buffers`): one left unassigned is still on the meta device, i.e. never initialised,
    and fails the load with its name, as does a tensor of the file nothing took.
    `originals` maps the module's key names back to the file's (`part`), for the messages."""
    try:
        with _empty_init():
            module = cls(**_init_kwargs(cls, config))
    except (TypeError, ValueError, IndexError, KeyError) as error:  # a malformed config.json
        raise ModelError(f"{cls.__name__} cannot be built from config.json: "
                         f"{type(error).__name__}: {str(error)[:200]}") from None
    buffers = buffers or {}
    expected = module.state_dict()
    mismatched = [f"{originals.get(k, k)} {tuple(v.shape)} (model wants {tuple(expected[k].shape)})"
                  for k, v in state.items() if k in expected and tuple(expected[k].shape) != tuple(v.shape)]
    if mismatched:
        raise ModelError(f"{cls.__name__}: tensors of the wrong shape: {_names(mismatched, 4)}")
    state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}
    result = module.load_state_dict(state, strict=False, assign=True)
    missing = [key for key in result.missing_keys if key not in buffers]
    unexpected = [originals.get(key, key) for key in result.unexpected_keys]
    for name, value in buffers.items():
        module.register_buffer(name, value.to(dtype), persistent=True)
    never_set = [name for name, tensor in [*module.named_parameters(), *module.named_buffers()]
                 if tensor.is_meta and name not in missing]
    if missing or unexpected or never_set:
        problems = []
        if missing or never_set:
            absent = [official_key(part, k) for k in missing + never_set]
            problems.append(f"not in the file: {_names(absent)}")
        if unexpected:
            problems.append(f"in the file but unused: {_names(unexpected)}")
        raise ModelError(f"{cls.__name__}: " + "; ".join(problems))
    return module.eval()


def _checked(component: str, folder: Path, loaded: Any) -> Any:
    """A transformers/diffusers `from_pretrained(..., output_loading_info=True)` result:
    the model, or ModelError naming what the file lacked or held in vain."""
    model, info = loaded
    problems = []
    for label, field_name in (("not in the file", "missing_keys"),
                              ("in the file but unused", "unexpected_keys"),
                              ("of the wrong shape", "mismatched_keys")):
        keys = sorted(str(k if isinstance(k, str) else k[0]) for k in (info.get(field_name) or ()))
        if keys:
            problems.append(f"{label}: {_names(keys)}")
    if info.get("error_msgs"):
        problems.append("; ".join(str(m) for m in info["error_msgs"])[:200])
    if problems:
        raise ModelError(f"{component} in {folder} does not match its config.json: " + "; ".join(problems))
    return model


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

    parts: dict[str, dict[str, torch.Tensor]] = {part: {} for part in _PARTS}
    originals: dict[str, dict[str, str]] = {part: {} for part in _PARTS}
    stray: list[str] = []
    for key, value in state.items():
        target = diffusers_key(key)
        if target is None:
            stray.append(key)
            continue
        part, name = target
        parts[part][name] = value
        originals[part][name] = key
    where = f"{layout.dit_dir}/model.safetensors"
    if stray:
        raise ModelError(f"{where} holds tensors outside decoder/encoder/tokenizer/detokenizer, "
                         f"which nothing would use: {_names(sorted(stray))}")
    if any(".to_q." in name or "proj_in_conv." in name for name in state):
        raise ModelError(f"{where} is named the Diffusers way (to_q, proj_in_conv): put a "
                         "Diffusers-format pipeline in its own folder (model_index.json) instead")
    silence = torch.load(layout.dit_dir / "silence_latent.pt", map_location="cpu", weights_only=True)
    channels = int(config.get("audio_acoustic_hidden_dim", 64))
    if silence.ndim != 3 or silence.shape[0] != 1 or silence.shape[1] != channels:
        raise ModelError(f"{layout.dit_dir}/silence_latent.pt is {tuple(silence.shape)}, "
                         f"expected [1, {channels}, frames] as upstream stores it")
    silence = silence.transpose(1, 2).contiguous()  # stored [1, C, T]; the pipeline slices [1, T, C]

    try:
        transformer = _build(AceStepTransformer1DModel, config, parts["decoder"], dtype,
                             "decoder", originals["decoder"])
        condition_encoder = _build(AceStepConditionEncoder, config, parts["encoder"], dtype,
                                   "encoder", originals["encoder"], {"silence_latent": silence})
    except ModelError as error:
        raise ModelError(f"{where} does not match its config.json (a different ACE-Step "
                         f"version?): {error}") from None
    audio_tokenizer = detokenizer = None
    if parts["tokenizer"] or parts["detokenizer"]:
        try:
            audio_tokenizer = _build(AceStepAudioTokenizer, config, parts["tokenizer"], dtype,
                                     "tokenizer", originals["tokenizer"])
            detokenizer = _build(AceStepAudioTokenDetokenizer, config, parts["detokenizer"], dtype,
                                 "detokenizer", originals["detokenizer"])
        except ModelError as error:  # half a tokenizer is a broken file, not a smaller model
            raise ModelError(f"{where} does not match its config.json: {error}") from None
    else:
        notes.append("checkpoint has no audio tokenizer/detokenizer: cover and LM off")

    vae = _checked("the VAE", layout.vae_dir, AutoencoderOobleck.from_pretrained(
        layout.vae_dir, local_files_only=True, dtype=dtype, output_loading_info=True))
    text_encoder = _checked("the text encoder", layout.text_encoder_dir, AutoModel.from_pretrained(
        layout.text_encoder_dir, local_files_only=True, dtype=dtype, output_loading_info=True))
    tokenizer = AutoTokenizer.from_pretrained(layout.text_encoder_dir, local_files_only=True)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    pipe = AceStepPipeline(vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                           transformer=transformer, condition_encoder=condition_encoder,
                           scheduler=scheduler, audio_tokenizer=audio_tokenizer,
                           audio_token_detokenizer=detokenizer)
    return pipe, notes


def _load_weights(folder: Path,
                  load_file: Callable[[str], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
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
    model = _checked("the 5 Hz LM", lm_dir, AutoModelForCausalLM.from_pretrained(
        lm_dir, local_files_only=True, dtype=dtype, output_loading_info=True)).eval()
    code_ids = torch.tensor([codes[n] for n in sorted(codes)], dtype=torch.long)
    return model, tokenizer, code_ids


def load(layout: Layout, settings: AceStepSettings) -> Loaded:
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
    pipe.vae.enable_tiling()  # long songs decode in overlapping windows, not one multi-GB pass
    loaded = Loaded(pipe=pipe, device=device, dtype=dtype, is_turbo=bool(pipe.is_turbo),
                    sample_rate=int(pipe.sample_rate),
                    can_cover=pipe.audio_tokenizer is not None and pipe.audio_token_detokenizer is not None,
                    notes=notes)
    if layout.lm_dir is not None:
        if not loaded.can_cover:
            raise ModelError("the 5 Hz LM needs the DiT checkpoint's audio tokenizer/detokenizer, "
                             "which this checkpoint lacks; set lm = \"none\"")
        try:
            loaded.lm, loaded.lm_tokenizer, loaded.code_ids = _load_lm(layout.lm_dir, dtype)
        except Exception as error:  # noqa: BLE001 - any unreadable LM (safetensors, config, tokenizer)
            # The LM only plans the song; without it the DiT still makes one (upstream's
            # "thinking" off). Said in every song's warnings, not only in this log.
            loaded.lm_error = f"{type(error).__name__}: {str(error)[:200]}"
            log.warning("ACE-Step: the 5 Hz LM in %s is not usable, songs are made without "
                        "it: %s", layout.lm_dir, loaded.lm_error)
    if settings.quantization == "int8":
        _quantize(loaded)
        loaded.quantized = True
    if settings.offload == "always":
        enable_offload(loaded)
    else:
        pipe.to(device)
        if loaded.lm is not None:
            loaded.lm.to(device)
    return loaded


_LORA_KEY = re.compile(r"(?P<module>.+)\.(?P<which>lora_A|lora_B)(?:\.default)?\.weight")


def adapter_name(name: str) -> str:
    """The PEFT adapter name of LoRA style `name` (prefixed: PEFT keeps adapters as module
    attributes, so a style called "half" or "to" must not meet a torch method's name)."""
    return f"style_{name}"


def _load_lora(loaded: Loaded, name: str, path: Path) -> None:
    """A LoRA adapter in upstream's format into the DiT, as adapter `adapter_name(name)`.

    Upstream's trainer wraps the decoder with PEFT and calls `save_pretrained`
    (acestep/training/lora_injection.py, lora_checkpoint.py:43 at 783bb36): a folder with
    adapter_config.json (r, lora_alpha, target_modules q_proj/k_proj/v_proj/o_proj) and
    adapter_model.safetensors keyed `base_model.model.layers.N.{self,cross}_attn.q_proj.lora_A.weight`.
    Keys are renamed as the checkpoint's are; every tensor must find its layer."""
    from safetensors.torch import load_file

    transformer = loaded.pipe.transformer
    folder = path if path.is_dir() else None
    weights = folder / "adapter_model.safetensors" if folder else path
    if not weights.is_file():
        raise ModelError(f"LoRA {name!r}: {weights} does not exist (a PEFT adapter folder with "
                         "adapter_model.safetensors, or one .safetensors file)")
    config: dict[str, Any] = {}
    if folder is not None and (folder / "adapter_config.json").is_file():
        config = json.loads((folder / "adapter_config.json").read_text())
        if config.get("peft_type", "LORA") != "LORA":
            raise ModelError(f"LoRA {name!r}: {folder} holds a {config['peft_type']} adapter, "
                             "only LoRA is supported")
    try:
        state = load_file(str(weights))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
        raise ModelError(f"LoRA {name!r}: {weights} is not a readable safetensors file ({error})") from None
    modules = dict(transformer.named_modules())
    converted: dict[str, torch.Tensor] = {}
    targets: set[str] = set()
    stray: list[str] = []
    for key, value in state.items():
        match = _LORA_KEY.fullmatch(key.removeprefix("base_model.model."))
        target = diffusers_key(f"decoder.{match.group('module')}.weight") if match else None
        module = target[1][: -len(".weight")] if target else None
        layer = modules.get(module) if module else None
        # (match and module are None only when layer is: tested apart for the type checker)
        if (match is None or module is None
                or not isinstance(getattr(layer, "base_layer", layer), torch.nn.Linear)):  # an adapter's wrap
            stray.append(key)
            continue
        converted[f"{module}.{match.group('which')}.weight"] = value.to(transformer.dtype)
        targets.add(module)
    if stray or not converted:
        raise ModelError(f"LoRA {name!r}: tensors that match no layer of this DiT: "
                         f"{_names(sorted(stray)) or 'the file is empty'} (a LoRA for another model?)")
    rank = int(config.get("r") or next(v.shape[0] for k, v in converted.items() if "lora_A" in k))
    metadata = {"r": rank, "lora_alpha": config.get("lora_alpha", rank), "lora_dropout": 0.0,
                "target_modules": sorted(targets), "bias": "none",
                "use_rslora": bool(config.get("use_rslora", False))}
    adapter = adapter_name(name)
    transformer.load_lora_adapter(converted, prefix=None, adapter_name=adapter, metadata=metadata)
    took = sum(1 for key, _ in transformer.named_parameters() if f".lora_A.{adapter}." in key
               or f".lora_B.{adapter}." in key)
    if took != len(converted):
        transformer.delete_adapters(adapter)
        raise ModelError(f"LoRA {name!r}: {len(converted)} tensors in {weights}, {took} loaded")


def use_lora(loaded: Loaded, name: str | None, path: Path | None, scale: float) -> None:
    """Make the DiT run with LoRA `name` at `scale` (loading it the first time), or plain."""
    transformer = loaded.pipe.transformer
    if name is None:
        if loaded.loras:
            transformer.disable_adapters()
        return
    if loaded.quantized:
        raise ModelError('LoRA styles need quantization = "none" (int8 layers cannot take an adapter)')
    if name not in loaded.loras:
        assert path is not None
        _load_lora(loaded, name, Path(path).expanduser())
        loaded.loras.add(name)
        log.info("ACE-Step: LoRA %r loaded from %s", name, path)
    transformer.enable_adapters()
    transformer.set_adapters([adapter_name(name)], weights=[scale])


def _quiet() -> None:
    """No progress bars from the hub libraries in a daemon's log."""
    try:
        import diffusers.utils.logging as diffusers_logging
        import transformers.utils.logging as transformers_logging

        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated upstream
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
                quantize_dynamic(  # type: ignore[no-untyped-call]  # torch.ao leaves it unannotated
                    module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


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


def _lm_codes(loaded: Loaded, request: Request, settings: AceStepSettings, report: Report,
              start: float, span: float) -> list[str]:
    """The 5 Hz LM writes one code per 200 ms of music for each variant."""
    from transformers import LogitsProcessorList

    from cassetted.music.acestep.prompt import audio_codes_needed

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
            torch.manual_seed(request.seed + request.first_take + variant)
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


@dataclass
class Rendered:
    """What one request gave: a (frames, channels) array per take at the model's rate, the
    seed of each, and what the household should hear about (a fallback that was taken)."""

    takes: list[np.ndarray]
    warnings: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)  # the seed each take was rendered with


class BadTake(Exception):
    """A take came out as NaN/inf or silence (its index, seed and cause in the message)."""


# Below this RMS (-80 dBFS) a decoded take is silence: upstream's NaN-latent and fp16
# failures (issues #286, #1260) decode to exact or near-exact zeros.
SILENCE_RMS = 1e-4


def check_take(audio: torch.Tensor, take: int, seed: int) -> None:
    """Raise BadTake for a take that must never reach the library."""
    if not bool(torch.isfinite(audio).all()):
        raise BadTake(f"take {take} (seed {seed}) came out as NaN/inf")
    rms = float(audio.float().pow(2).mean().sqrt())
    if rms < SILENCE_RMS:
        raise BadTake(f"take {take} (seed {seed}) is silent (RMS {rms:.1e})")


def _encode_prompt(pipe: Any, request: Request, instruction: str, device: torch.device) -> tuple[Any, ...]:
    encoded: tuple[Any, ...] = pipe.encode_prompt(
        prompt=[request.caption] * request.variants, lyrics=[request.lyrics] * request.variants,
        device=device, vocal_language=request.language, audio_duration=request.duration_s,
        instruction=instruction, bpm=request.bpm, keyscale=request.keyscale,
        timesignature=request.timesignature)
    return encoded


def _condition(pipe: Any, prompt: tuple[Any, ...], refer: tuple[Any, ...]) -> torch.Tensor:
    text, text_mask, lyric, lyric_mask = prompt
    hidden: torch.Tensor
    hidden, _mask = pipe.condition_encoder(
        text_hidden_states=text, text_attention_mask=text_mask, lyric_hidden_states=lyric,
        lyric_attention_mask=lyric_mask, refer_audio_acoustic_hidden_states_packed=refer[0],
        refer_audio_order_mask=refer[1])
    return hidden


def _repaint_mask(pipe: Any, request: Request, frames: int, device: torch.device) -> torch.Tensor:
    """[frames] bool, True inside the repaint window (the pipeline's own frame rounding)."""
    lps = pipe.latents_per_second
    start = max(0, min(int(request.repaint_start_s * lps), frames - 1))
    end = frames if request.repaint_end_s is None else int(request.repaint_end_s * lps)
    end = max(start + 1, min(end, frames))
    mask = torch.zeros(frames, dtype=torch.bool, device=device)
    mask[start:end] = True
    return mask


def _boundary_blend(generated: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor,
                    frames: int = 10) -> torch.Tensor:
    """Upstream's _repaint_boundary_blend (modeling_acestep_v15_turbo.py:1561 at 783bb36):
    the source outside the window, linear ramps of `frames` latent frames at its edges."""
    from cassetted.music.acestep.shaping import window_weights

    inside = torch.nonzero(mask).squeeze(-1)
    weight = torch.from_numpy(window_weights(mask.shape[0], int(inside[0]), int(inside[-1]) + 1, frames))
    weight = weight.to(device=generated.device, dtype=generated.dtype)[None, :, None]
    return weight * generated + (1 - weight) * clean


def generate(loaded: Loaded, request: Request, settings: AceStepSettings, report: Report) -> Rendered:
    """Run one request; returns `variants` takes (frames, channels) at the model's rate.

    The sampling loop is upstream's `generate_audio` (turbo and base,
    acestep/models/{turbo,base}/modeling_acestep_v15_*.py at 783bb36) on diffusers' modules:
    cover strength switches to a text2music condition on silence at step int(N * strength);
    repaint puts the noised source back outside the window for the first half of the steps,
    then blends it in at the edges. `report(fraction, note)` is called after each LM token
    batch and each diffusion step; it raises Cancelled to stop between steps.
    """
    from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer, normalized_guidance
    from diffusers.pipelines.ace_step.pipeline_ace_step import TASK_INSTRUCTIONS
    from diffusers.utils.torch_utils import randn_tensor

    pipe = loaded.pipe
    warnings: list[str] = []
    seeds = [request.seed + request.first_take + i for i in range(request.variants)]
    torch.manual_seed(request.seed)  # the VAE's posterior sample (cover, repaint) draws from it
    if loaded.device.type == "cuda":
        torch.cuda.manual_seed_all(request.seed)

    audio_codes = None
    dit_start, dit_end = 0.0, 0.9
    if request.lm_prompt is not None and request.kind == "text2music":
        report(0.0, "writing audio codes")
        try:
            audio_codes = _lm_codes(loaded, request, settings, report, 0.0, 0.45)
            dit_start, dit_end = 0.45, 0.92
        except Exception as error:
            if is_out_of_memory(error) or isinstance(error, Cancelled):
                raise
            note = f"the 5 Hz LM failed ({type(error).__name__}: {str(error)[:120]}); generated without it"
            log.warning("ACE-Step: %s", note)
            warnings.append(note)
            report(0.0, note)

    with torch.no_grad():
        latents = _sample(pipe, loaded, request, seeds, audio_codes, report, dit_start, dit_end,
                          TASK_INSTRUCTIONS, MomentumBuffer, normalized_guidance, randn_tensor)
        report(dit_end, "decoding")
        takes = []
        for index, latent in enumerate(torch.split(latents, 1)):  # one take at a time: lower peak
            if not bool(torch.isfinite(latent).all()):
                raise BadTake(f"take {request.first_take + index} (seed {seeds[index]}) came out as NaN/inf")
            audio = pipe.vae.decode(latent.transpose(1, 2).to(pipe.vae.dtype)).sample.float()
            check_take(audio, request.first_take + index, seeds[index])
            # The pipeline's two-stage peak normalisation (anti-clip, then -1 dBFS), as
            # upstream's generate_music does.
            audio = audio / audio.abs().amax().clamp(min=1.0)
            audio = audio * (10.0 ** (-1.0 / 20.0) / audio.abs().amax().clamp(min=1e-6))
            takes.append(np.ascontiguousarray(audio[0].cpu().numpy().T))
    pipe.maybe_free_model_hooks()  # with CPU offload: every model back in RAM, as __call__ does
    report(1.0, "decoded")
    return Rendered(takes, warnings, seeds)


def _sample(pipe: Any, loaded: Loaded, request: Request, seeds: list[int], audio_codes: Any,
            report: Report, dit_start: float, dit_end: float, instructions: dict[str, str],
            momentum_buffer: Any, normalized_guidance: Any, randn_tensor: Any) -> torch.Tensor:
    """Conditioning and the flow-matching loop; the final latents [B, T, C]."""
    device = pipe._execution_device
    dtype = pipe.transformer.dtype
    batch = request.variants
    acoustic = pipe.transformer.config.audio_acoustic_hidden_dim
    kind = request.kind
    if kind == "cover" and not loaded.can_cover:
        raise ModelError("this checkpoint has no audio tokenizer: covers are not possible")
    task = "cover" if kind == "cover" or audio_codes is not None else kind
    prompt = _encode_prompt(pipe, request, instructions[task], device)

    frames = math.ceil(request.duration_s * pipe.latents_per_second)
    source = None
    if request.source is not None:
        source = torch.from_numpy(np.ascontiguousarray(request.source.T)).to(device)
    src_latents, frames = pipe.prepare_src_latents(
        device=device, dtype=dtype, batch_size=batch, src_audio=source,
        audio_codes=audio_codes, latent_length=frames, task_type=task)
    silence, _ = pipe.prepare_src_latents(device=device, dtype=dtype, batch_size=batch,
                                          latent_length=frames)
    if request.reference is not None:
        reference = torch.from_numpy(np.ascontiguousarray(request.reference.T)).to(device)
        refer = pipe.prepare_reference_audio_latents(reference, batch, device, dtype)
    else:  # upstream: silence_latent[:, :750] when there is no reference (30 s at 25 Hz)
        timbre_frames = math.ceil(30 * pipe.latents_per_second)
        refer = (pipe.condition_encoder.silence_latent[:, :timbre_frames, :].to(device=device, dtype=dtype)
                 .expand(batch, -1, -1).contiguous(), torch.arange(batch, device=device))
    hidden = _condition(pipe, prompt, refer)

    mask = None
    clean = None
    chunk = torch.ones(batch, frames, acoustic, device=device, dtype=dtype)
    if kind == "repaint":
        mask = _repaint_mask(pipe, request, frames, device)
        chunk = mask.to(dtype)[None, :, None].expand(batch, -1, acoustic).contiguous()
        clean = src_latents.clone()  # the source's own latents
        src_latents = torch.where(chunk > 0.5, silence, src_latents)
    context = torch.cat([src_latents, chunk], dim=-1)

    # Cover strength < 1: from step int(N * strength) on, the text2music condition on silence
    # (modeling_acestep_v15_turbo.py:1928-1946 and :1981-1990 at 783bb36; base the same).
    switch_hidden = switch_context = None
    timesteps = list(request.timesteps)
    steps = len(timesteps)
    cover_steps = steps
    if kind == "cover" and request.cover_strength < 1.0:
        plain = _encode_prompt(pipe, request, instructions["text2music"], device)
        switch_hidden = _condition(pipe, plain, refer)
        switch_context = torch.cat([silence, chunk], dim=-1)
        cover_steps = int(steps * request.cover_strength)

    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    noise = randn_tensor((batch, frames, acoustic), generator=generators, device=device, dtype=dtype)
    guided = not loaded.is_turbo and request.guidance_scale > 1.0
    null = None
    if guided:
        null = pipe.condition_encoder.null_condition_emb.to(device=device, dtype=dtype)
    momentum = momentum_buffer(momentum=-0.75) if guided else None
    injection_steps = round(0.5 * steps)  # upstream's repaint_injection_ratio default
    schedule = [*timesteps, 0.0]
    xt: torch.Tensor = noise
    for index in range(steps):
        if index == cover_steps and switch_hidden is not None and switch_context is not None:
            hidden, context = switch_hidden, switch_context
        t = schedule[index]
        t_batch = torch.full((batch,), t, device=device, dtype=dtype)
        if null is not None:  # guided
            both = pipe.transformer(
                hidden_states=torch.cat([xt, xt]), timestep=torch.cat([t_batch, t_batch]),
                timestep_r=torch.cat([t_batch, t_batch]),
                encoder_hidden_states=torch.cat([hidden, null.expand_as(hidden)]),
                context_latents=torch.cat([context, context]), return_dict=False)[0]
            conditioned, unconditioned = both.chunk(2)
            velocity = normalized_guidance(
                pred_cond=conditioned, pred_uncond=unconditioned,
                guidance_scale=request.guidance_scale - 1.0, momentum_buffer=momentum, eta=0.0,
                norm_threshold=2.5, use_original_formulation=True, norm_dim=(1,))
        else:
            velocity = pipe.transformer(
                hidden_states=xt, timestep=t_batch, timestep_r=t_batch,
                encoder_hidden_states=hidden, context_latents=context, return_dict=False)[0]
        xt = xt - velocity * (t - schedule[index + 1])  # Euler; the last step lands on x0
        if mask is not None and clean is not None and index < injection_steps:
            t_next = schedule[index + 1]
            noised = t_next * noise + (1.0 - t_next) * clean
            xt = torch.where(mask[None, :, None], xt, noised)
        report(dit_start + (dit_end - dit_start) * (index + 1) / steps,
               f"diffusion step {index + 1}/{steps}")
    if mask is not None and clean is not None:
        xt = _boundary_blend(xt, clean, mask)
    return xt
