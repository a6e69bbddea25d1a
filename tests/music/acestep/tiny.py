"""Tiny random-weight ACE-Step 1.5 checkpoints, written in the official layout and naming.

The DiT folder is written from a key table typed in by hand from upstream's model classes,
not from diffusers' modules (which the engine loads into): a fixture produced by the
library under test, renamed by the inverse of our own mapping, can never catch a mapping
bug. Source of every fact below, unless a line says otherwise:

    ace-step/ACE-Step-1.5 at 783bb36 (2026-03-20, read from the erichchampion fork mirror)
    acestep/models/turbo/modeling_acestep_v15_turbo.py        (the DiT checkpoint's code)
    acestep/models/turbo/configuration_acestep_v15.py         (AceStepConfig, config.json)
    acestep/models/base|sft/...                               (same classes, same keys)
    acestep/core/generation/handler/init_service_loader.py:199 (silence_latent.pt, [1, C, T])

At f30aee4 (2026-02-08) the model code is not in the repository: it ships next to the
weights (config.json "auto_map"), the same classes.

Folders (as in the `ACE-Step/Ace-Step1.5` download): `acestep-v15-<variant>/` (config.json,
model.safetensors, silence_latent.pt, the modeling files), `vae/` (diffusers
AutoencoderOobleck, which upstream itself loads with diffusers), `Qwen3-Embedding-0.6B/`
(transformers Qwen3 + tokenizer), `acestep-5Hz-lm-<size>/` (Qwen3 causal LM with
`<|audio_code_N|>` tokens). Only a few thousand parameters each, so the real loading and
generation code runs on a CPU in about a second per song. The latent has the real 64
channels at the real 25 frames a second; the VAE runs at 4 kHz (160x instead of 1920x).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

HIDDEN = 32
TEXT_HIDDEN = 32
ACOUSTIC = 64          # audio_acoustic_hidden_dim: the VAE latent's channels, as the real one
VAE_RATE = 4000
VAE_RATIOS = [2, 8, 10]  # 160x: 25 latent frames a second, as the real 48 kHz / 1920x
N_CODES = 16           # fsq levels [4, 4]
SILENCE_FRAMES = 15000  # silence_latent.pt is [1, 64, 15000] in the real download
UPSTREAM = "ace-step/ACE-Step-1.5@783bb36 acestep/models/turbo/modeling_acestep_v15_turbo.py"

# config.json as AceStepConfig.save_pretrained writes it (configuration_acestep_v15.py
# __init__ arguments, plus the fields PretrainedConfig adds and `is_turbo`, which upstream
# reads as `self.config.is_turbo`, service_generate_request.py:52), at tiny sizes.
DIT_CONFIG: dict[str, object] = {
    "architectures": ["AceStepConditionGenerationModel"],
    "auto_map": {
        "AutoConfig": "configuration_acestep_v15.AceStepConfig",
        "AutoModel": "modeling_acestep_v15_turbo.AceStepConditionGenerationModel",
    },
    "model_type": "acestep",
    "dtype": "bfloat16",
    "transformers_version": "4.57.6",
    "vocab_size": 64003,
    "fsq_dim": HIDDEN,
    "fsq_input_levels": [4, 4],
    "fsq_input_num_quantizers": 1,
    "hidden_size": HIDDEN,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-6,
    "use_cache": True,
    "tie_word_embeddings": True,
    "rope_theta": 1000000,
    "rope_scaling": None,
    "attention_bias": False,
    "use_sliding_window": True,
    "sliding_window": 16,
    "layer_types": ["sliding_attention", "full_attention"],
    "attention_dropout": 0.0,
    "num_lyric_encoder_hidden_layers": 1,
    "audio_acoustic_hidden_dim": ACOUSTIC,
    "pool_window_size": 5,
    "text_hidden_dim": TEXT_HIDDEN,
    "in_channels": 3 * ACOUSTIC,  # noisy latent + source latent + chunk mask
    "data_proportion": 0.5,
    "timestep_mu": -0.4,
    "timestep_sigma": 1.0,
    "timbre_hidden_dim": ACOUSTIC,
    "num_timbre_encoder_hidden_layers": 1,
    "timbre_fix_frame": 750,
    "patch_size": 2,
    "num_attention_pooler_hidden_layers": 1,
    "num_audio_decoder_hidden_layers": 2,
    "model_version": "turbo",
    "is_turbo": True,
}


# ------------------------------------------------------------ the official key table
# Each helper is one upstream class; the comment names it and its line at 783bb36.

def _linear(out: int, inp: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"weight": (out, inp)}
    if bias:
        shapes["bias"] = (out,)
    return shapes


def _nest(prefix: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{key}": shape for key, shape in shapes.items()}


def _attention(c: dict) -> dict[str, tuple[int, ...]]:
    """AceStepAttention (:253): q_proj/k_proj/v_proj/o_proj (bias = attention_bias) and
    Qwen3RMSNorm q_norm/k_norm over one head (:276-282)."""
    h, hd, bias = c["hidden_size"], c["head_dim"], c["attention_bias"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    out: dict[str, tuple[int, ...]] = {}
    out |= _nest("q_proj", _linear(q, h, bias))
    out |= _nest("k_proj", _linear(kv, h, bias))
    out |= _nest("v_proj", _linear(kv, h, bias))
    out |= _nest("o_proj", _linear(h, q, bias))
    out |= {"q_norm.weight": (hd,), "k_norm.weight": (hd,)}
    return out


def _mlp(c: dict) -> dict[str, tuple[int, ...]]:
    """transformers Qwen3MLP: gate/up/down projections without bias."""
    h, i = c["hidden_size"], c["intermediate_size"]
    return {"gate_proj.weight": (i, h), "up_proj.weight": (i, h), "down_proj.weight": (h, i)}


def _encoder_layer(c: dict) -> dict[str, tuple[int, ...]]:
    """AceStepEncoderLayer (:371): self_attn, input_layernorm, post_attention_layernorm, mlp."""
    h = c["hidden_size"]
    return (_nest("self_attn", _attention(c)) | {"input_layernorm.weight": (h,),
                                                 "post_attention_layernorm.weight": (h,)}
            | _nest("mlp", _mlp(c)))


def _dit_layer(c: dict) -> dict[str, tuple[int, ...]]:
    """AceStepDiTLayer (:440): self_attn_norm, self_attn, cross_attn_norm, cross_attn,
    mlp_norm, mlp, scale_shift_table [1, 6, H]."""
    h = c["hidden_size"]
    return ({"self_attn_norm.weight": (h,)} | _nest("self_attn", _attention(c))
            | {"cross_attn_norm.weight": (h,)} | _nest("cross_attn", _attention(c))
            | {"mlp_norm.weight": (h,)} | _nest("mlp", _mlp(c))
            | {"scale_shift_table": (1, 6, h)})


def _layers(n: int, layer: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    return {f"layers.{i}.{key}": shape for i in range(n) for key, shape in layer.items()}


def _timestep_embedding(h: int) -> dict[str, tuple[int, ...]]:
    """TimestepEmbedding (:197): linear_1 (256 -> H), linear_2, time_proj (H -> 6H)."""
    return (_nest("linear_1", _linear(h, 256)) | _nest("linear_2", _linear(h, h))
            | _nest("time_proj", _linear(6 * h, h)))


def official_dit_keys(c: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of an official `model.safetensors`, by name, with its shape."""
    h, a, p = c["hidden_size"], c["audio_acoustic_hidden_dim"], c["patch_size"]
    # AceStepDiTModel (:1237): proj_in = Sequential(Lambda, Conv1d, Lambda) -> "proj_in.1",
    # proj_out = Sequential(Lambda, ConvTranspose1d [in, out, k], Lambda) -> "proj_out.1".
    decoder = (_layers(c["num_hidden_layers"], _dit_layer(c))
               | {"proj_in.1.weight": (h, c["in_channels"], p), "proj_in.1.bias": (h,)}
               | _nest("time_embed", _timestep_embedding(h))
               | _nest("time_embed_r", _timestep_embedding(h))
               | _nest("condition_embedder", _linear(h, h))
               | {"norm_out.weight": (h,)}
               | {"proj_out.1.weight": (h, a, p), "proj_out.1.bias": (a,)}
               | {"scale_shift_table": (1, 2, h)})
    # AceStepConditionEncoder (:1506): text_projector (no bias), AceStepLyricEncoder (:574),
    # AceStepTimbreEncoder (:994, special_token [1, 1, H]).
    lyric = (_nest("embed_tokens", _linear(h, c["text_hidden_dim"])) | {"norm.weight": (h,)}
             | _layers(c["num_lyric_encoder_hidden_layers"], _encoder_layer(c)))
    timbre = (_nest("embed_tokens", _linear(h, c["timbre_hidden_dim"])) | {"norm.weight": (h,)}
              | {"special_token": (1, 1, h)}
              | _layers(c["num_timbre_encoder_hidden_layers"], _encoder_layer(c)))
    encoder = ({"text_projector.weight": (h, c["text_hidden_dim"])}
               | _nest("lyric_encoder", lyric) | _nest("timbre_encoder", timbre))
    # AceStepAudioTokenizer (:1178): audio_acoustic_proj, AttentionPooler (:731), and
    # vector_quantize_pytorch ResidualFSQ(dim=fsq_dim, levels): project_in/out Linear
    # between fsq_dim and len(levels) (its FSQ layers hold only non-persistent buffers).
    pooler = (_nest("embed_tokens", _linear(h, h)) | {"norm.weight": (h,)}
              | {"special_token": (1, 1, h)}
              | _layers(c["num_attention_pooler_hidden_layers"], _encoder_layer(c)))
    levels = len(c["fsq_input_levels"])
    tokenizer = (_nest("audio_acoustic_proj", _linear(h, a)) | _nest("attention_pooler", pooler)
                 | _nest("quantizer.project_in", _linear(levels, c["fsq_dim"]))
                 | _nest("quantizer.project_out", _linear(c["fsq_dim"], levels)))
    # AudioTokenDetokenizer (:859): special_tokens [1, pool_window_size, H], proj_out -> A.
    detokenizer = (_nest("embed_tokens", _linear(h, h)) | {"norm.weight": (h,)}
                   | {"special_tokens": (1, c["pool_window_size"], h)}
                   | _layers(c["num_attention_pooler_hidden_layers"], _encoder_layer(c))
                   | _nest("proj_out", _linear(a, h)))
    # AceStepConditionGenerationModel (:1586): decoder, encoder, tokenizer, detokenizer and
    # null_condition_emb [1, 1, H] at the top level.
    return (_nest("decoder", decoder) | _nest("encoder", encoder) | _nest("tokenizer", tokenizer)
            | _nest("detokenizer", detokenizer) | {"null_condition_emb": (1, 1, h)})


def _random(key: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Weights of sensible scale: RMSNorm gains 1, Linear/Conv like torch's default init."""
    if key.endswith(("norm.weight", "layernorm.weight")):
        return torch.ones(shape)
    if len(shape) == 1:  # bias
        return (torch.rand(shape, generator=generator) - 0.5) * 0.1
    if key.endswith(("scale_shift_table", "special_token", "special_tokens", "null_condition_emb")):
        return torch.randn(shape, generator=generator) / math.sqrt(shape[-1])
    fan_in = shape[1] * (shape[2] if len(shape) == 3 else 1)
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def write_dit(folder: Path, seed: int = 0, variant: str = "turbo",
              dtype: torch.dtype = torch.bfloat16) -> None:
    """One DiT variant folder; weights stored in bfloat16 as upstream ships them."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    turbo = variant.startswith("turbo")
    config = dict(DIT_CONFIG, is_turbo=turbo, model_version="turbo" if turbo else variant)
    if not turbo:
        config["auto_map"] = {
            "AutoConfig": "configuration_acestep_v15.AceStepConfig",
            "AutoModel": "modeling_acestep_v15_base.AceStepConditionGenerationModel",
        }
    generator = torch.Generator().manual_seed(seed)
    state = {key: _random(key, shape, generator).to(dtype).contiguous()
             for key, shape in official_dit_keys(config).items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    # The remote code files sit next to the weights (the auto_map points at them).
    for name in ("configuration_acestep_v15.py",
                 "modeling_acestep_v15_turbo.py" if turbo else "modeling_acestep_v15_base.py"):
        (folder / name).write_text(f"# stand-in for upstream's {name} ({UPSTREAM})\n")
    silence = torch.randn(1, ACOUSTIC, SILENCE_FRAMES, generator=generator) * 0.1
    torch.save(silence, folder / "silence_latent.pt")  # [1, C, T], upstream transposes on load


def byte_tokenizer(extra: list[str], chat_template: bool = False):  # type: ignore[no-untyped-def]
    """A byte-level BPE tokenizer (no merges) with the special tokens ACE-Step uses."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>", *extra])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
    if chat_template:
        fast.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                              "{{ m['content'] }}<|im_end|>\n{% endfor %}")
    return fast


def write_vae(folder: Path, seed: int = 0) -> None:
    """vae/: upstream loads it with diffusers' AutoencoderOobleck, so diffusers' own format
    is the official one (config.json + diffusion_pytorch_model.safetensors)."""
    from diffusers import AutoencoderOobleck

    torch.manual_seed(seed)
    AutoencoderOobleck(encoder_hidden_size=2 * ACOUSTIC, downsampling_ratios=VAE_RATIOS,
                       channel_multiples=[1, 1, 1], decoder_channels=4,
                       decoder_input_channels=ACOUSTIC, audio_channels=2,
                       sampling_rate=VAE_RATE).save_pretrained(folder)


def write_text_encoder(folder: Path, seed: int = 0) -> None:
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = byte_tokenizer([])
    torch.manual_seed(seed)
    Qwen3Model(Qwen3Config(hidden_size=TEXT_HIDDEN, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                           vocab_size=len(tokenizer), max_position_embeddings=8192)
               ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def write_lm(folder: Path, seed: int = 0) -> None:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = byte_tokenizer(["<think>", "</think>", *[f"<|audio_code_{i}|>" for i in range(N_CODES)]],
                               chat_template=True)
    torch.manual_seed(seed)
    Qwen3ForCausalLM(Qwen3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                 vocab_size=len(tokenizer), max_position_embeddings=8192,
                                 tie_word_embeddings=True)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def write_checkpoint(root: Path, lm: str | None = "1.7B", variants: tuple[str, ...] = ("turbo",)) -> Path:
    """The official layout under `root`: DiT variant folders, vae/, text encoder, LM."""
    for number, variant in enumerate(variants):
        write_dit(root / f"acestep-v15-{variant}", seed=number, variant=variant)
    write_vae(root / "vae")
    write_text_encoder(root / "Qwen3-Embedding-0.6B")
    if lm:
        write_lm(root / f"acestep-5Hz-lm-{lm}")
    return root


def write_lora(folder: Path, rank: int = 4, alpha: int = 8, seed: int = 0) -> Path:
    """A LoRA style as upstream's trainer writes it: PEFT wraps the decoder (module names as
    upstream's, from the key table above) with LoraConfig(r, lora_alpha, target_modules
    q_proj/k_proj/v_proj/o_proj, FEATURE_EXTRACTION) and `save_pretrained` writes
    adapter_config.json + adapter_model.safetensors (acestep/training/configs.py LoRAConfig,
    lora_injection.py, lora_checkpoint.py:43 at 783bb36). Only the decoder's attention
    projections exist in the stand-in, which is all PEFT looks at."""
    from peft import LoraConfig, get_peft_model

    root = torch.nn.Module()
    for key, shape in official_dit_keys(DIT_CONFIG).items():
        if not key.startswith("decoder.") or not key.endswith("_proj.weight") or ".mlp." in key:
            continue
        *path, leaf, _ = key.removeprefix("decoder.").split(".")
        parent = root
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, torch.nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, torch.nn.Linear(shape[1], shape[0], bias=False))
    peft = get_peft_model(root, LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.1,
                                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                           bias="none", task_type="FEATURE_EXTRACTION"))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_" in name:  # trained weights, not PEFT's zero-initialised lora_B
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    peft.save_pretrained(str(folder))
    return folder
