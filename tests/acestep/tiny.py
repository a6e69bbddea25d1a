"""Tiny random-weight ACE-Step 1.5 checkpoints, written in the official folder layout.

Same files and key names as `ACE-Step/Ace-Step1.5` (DiT folder with config.json,
model.safetensors holding decoder./encoder./tokenizer./detokenizer. weights and
null_condition_emb, silence_latent.pt; vae/; Qwen3-Embedding-0.6B/; acestep-5Hz-lm-*/),
only a few thousand parameters each, so the real loading and generation code runs on a CPU
in about a second per song. The VAE runs at 8 kHz with a 320x downsampling (25 latent
frames a second, as the real 48 kHz / 1920x one).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

HIDDEN = 32
TEXT_HIDDEN = 32
ACOUSTIC = 8
VAE_RATE = 8000
N_CODES = 16  # fsq levels [4, 4]

DIT_CONFIG = {
    "model_type": "acestep",
    "hidden_size": HIDDEN, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
    "in_channels": 3 * ACOUSTIC, "audio_acoustic_hidden_dim": ACOUSTIC, "patch_size": 2,
    "rope_theta": 10000.0, "attention_bias": False, "attention_dropout": 0.0,
    "rms_norm_eps": 1e-6, "sliding_window": 16, "use_sliding_window": True,
    "max_position_embeddings": 32768,
    "text_hidden_dim": TEXT_HIDDEN, "timbre_hidden_dim": ACOUSTIC,
    "num_lyric_encoder_hidden_layers": 1, "num_timbre_encoder_hidden_layers": 1,
    "pool_window_size": 5, "fsq_dim": HIDDEN, "fsq_input_levels": [4, 4],
    "fsq_input_num_quantizers": 1, "num_attention_pooler_hidden_layers": 1,
}


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


def _dit_modules(seed: int):  # type: ignore[no-untyped-def]
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import (
        AceStepAudioTokenDetokenizer,
        AceStepAudioTokenizer,
        AceStepConditionEncoder,
    )

    from cassetted.music._acestep_model import _init_kwargs

    torch.manual_seed(seed)
    return {
        "decoder": AceStepTransformer1DModel(**_init_kwargs(AceStepTransformer1DModel, DIT_CONFIG)),
        "encoder": AceStepConditionEncoder(**_init_kwargs(AceStepConditionEncoder, DIT_CONFIG)),
        "tokenizer": AceStepAudioTokenizer(**_init_kwargs(AceStepAudioTokenizer, DIT_CONFIG)),
        "detokenizer": AceStepAudioTokenDetokenizer(**_init_kwargs(AceStepAudioTokenDetokenizer,
                                                                   DIT_CONFIG)),
    }


def write_dit(folder: Path, seed: int = 0, turbo: bool = True) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state: dict[str, torch.Tensor] = {}
    for prefix, module in _dit_modules(seed).items():
        for key, value in module.state_dict().items():
            if prefix == "encoder" and key == "null_condition_emb":
                state["null_condition_emb"] = value
                continue
            if prefix == "encoder" and key == "silence_latent":
                continue
            if prefix == "decoder":
                key = key.replace("proj_in_conv.", "proj_in.1.").replace("proj_out_conv.", "proj_out.1.")
            state[f"{prefix}.{key}"] = value.contiguous()
    save_file(state, str(folder / "model.safetensors"))
    config = dict(DIT_CONFIG, is_turbo=turbo, model_version="turbo" if turbo else "base")
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    torch.manual_seed(seed + 1)
    torch.save(torch.randn(1, ACOUSTIC, 15000) * 0.1, folder / "silence_latent.pt")  # [1, C, T]


def write_vae(folder: Path, seed: int = 0) -> None:
    from diffusers import AutoencoderOobleck

    torch.manual_seed(seed)
    AutoencoderOobleck(encoder_hidden_size=2 * ACOUSTIC, downsampling_ratios=[4, 8, 10],
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


def write_checkpoint(root: Path, lm: str | None = "0.6B", variants: tuple[str, ...] = ("turbo",)) -> Path:
    """The official layout under `root`: DiT variant folders, vae/, text encoder, LM."""
    for number, variant in enumerate(variants):
        write_dit(root / f"acestep-v15-{variant}", seed=number, turbo=variant.startswith("turbo"))
    write_vae(root / "vae")
    write_text_encoder(root / "Qwen3-Embedding-0.6B")
    if lm:
        write_lm(root / f"acestep-5Hz-lm-{lm}")
    return root
