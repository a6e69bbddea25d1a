"""The ACE-Step 1.5 checkpoint directory: which files must be there, checked before torch.

Two layouts are understood:

* ``original`` — the official ``ACE-Step/Ace-Step1.5`` download (what ACE-Step's own API
  server and Gradio UI use), one folder per component::

      <checkpoint_dir>/
        acestep-v15-turbo/      config.json, model.safetensors, silence_latent.pt   (DiT)
        acestep-v15-base/ ...   other DiT variants, each from its own repository
        vae/                    config.json, diffusion_pytorch_model.safetensors
        Qwen3-Embedding-0.6B/   config.json, model.safetensors, tokenizer files     (text encoder)
        acestep-5Hz-lm-1.7B/    config.json, model.safetensors, tokenizer files     (optional LM)

* ``diffusers`` — a Diffusers-format AceStepPipeline (``model_index.json`` with
  ``transformer/``, ``condition_encoder/``, ``vae/``, ``text_encoder/``, ``tokenizer/``),
  either the checkpoint directory itself or a ``<dit-folder>-diffusers`` folder in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cassetted.contract import errors

# DiT variants by the short name used in the configuration -> folder name.
DIT_VARIANTS: dict[str, str] = {
    "turbo": "acestep-v15-turbo",
    "turbo-shift1": "acestep-v15-turbo-shift1",
    "turbo-shift3": "acestep-v15-turbo-shift3",
    "turbo-continuous": "acestep-v15-turbo-continuous",
    "base": "acestep-v15-base",
    "sft": "acestep-v15-sft",
}
LM_SIZES: dict[str, str] = {
    "0.6B": "acestep-5Hz-lm-0.6B",
    "1.7B": "acestep-5Hz-lm-1.7B",
    "4B": "acestep-5Hz-lm-4B",
}
# Where each folder comes from (for the "how to fetch it" part of the message).
MAIN_REPO = "ACE-Step/Ace-Step1.5"
IN_MAIN_REPO = {"acestep-v15-turbo", "vae", "Qwen3-Embedding-0.6B", "acestep-5Hz-lm-1.7B"}
TEXT_ENCODER_DIR = "Qwen3-Embedding-0.6B"
VAE_DIR = "vae"

_WEIGHTS = ("model.safetensors", "diffusion_pytorch_model.safetensors", "model.safetensors.index.json",
            "diffusion_pytorch_model.safetensors.index.json")
_TOKENIZER = ("tokenizer.json", "tokenizer_config.json")


class CheckpointMissing(errors.GenerationFailed):
    """Files of the checkpoint are missing; the message names them and how to fetch them."""


@dataclass(frozen=True)
class Layout:
    """Resolved paths of one checkpoint (everything in it exists)."""

    kind: str  # "original" | "diffusers"
    root: Path
    dit_name: str  # folder name of the DiT variant (or of the diffusers pipeline)
    dit_dir: Path
    vae_dir: Path | None = None
    text_encoder_dir: Path | None = None
    lm_dir: Path | None = None
    notes: list[str] = field(default_factory=list)


def dit_folder(variant: str) -> str:
    """"turbo" -> "acestep-v15-turbo"; a full folder name passes through."""
    return DIT_VARIANTS.get(variant, variant)


def lm_folder(size: str) -> str | None:
    if size in ("", "none"):
        return None
    return LM_SIZES.get(size, size)


def fetch_hint(folder: str) -> str:
    repo = MAIN_REPO if folder in IN_MAIN_REPO else f"ACE-Step/{folder}"
    if folder in IN_MAIN_REPO:
        return (f"`hf download {MAIN_REPO} --local-dir <checkpoint_dir>` (brings {folder}/ "
                "with the other main components)")
    return f"`hf download {repo} --local-dir <checkpoint_dir>/{folder}`"


def _has_weights(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _WEIGHTS)


def _check_component(folder: Path, what: str, needs: tuple[str, ...], missing: list[str],
                     weights: bool = True, tokenizer: bool = False) -> None:
    if not folder.is_dir():
        missing.append(f"{what} folder {folder}/ — fetch with {fetch_hint(folder.name)}")
        return
    missing.extend(f"{what} file {folder / name} — fetch with {fetch_hint(folder.name)}"
                   for name in needs if not (folder / name).is_file())
    if weights and not _has_weights(folder):
        missing.append(f"{what} weights ({' or '.join(_WEIGHTS[:2])}) in {folder}/ — "
                       f"fetch with {fetch_hint(folder.name)}")
    if tokenizer and not any((folder / name).is_file() for name in _TOKENIZER):
        missing.append(f"{what} tokenizer (tokenizer.json) in {folder}/ — "
                       f"fetch with {fetch_hint(folder.name)}")


def _diffusers_dir(root: Path, dit_name: str) -> Path | None:
    for candidate in (root, root / f"{dit_name}-diffusers", root / dit_name):
        if (candidate / "model_index.json").is_file():
            return candidate
    return None


def resolve(checkpoint_dir: Path | None, dit: str = "turbo", lm: str = "none") -> Layout:
    """Check the layout and return its paths, or raise CheckpointMissing naming every
    missing file and how to fetch it (on a machine with internet; this one stays offline)."""
    if checkpoint_dir is None:
        raise CheckpointMissing(
            "the acestep engine needs [acestep] checkpoint_dir: a folder holding the ACE-Step 1.5 "
            f"weights — on a machine with internet: `hf download {MAIN_REPO} --local-dir DIR`, "
            "copy DIR here and set checkpoint_dir = \"DIR\" (see docs/acestep.md)", "engine")
    root = Path(checkpoint_dir).expanduser()
    if not root.is_dir():
        raise CheckpointMissing(
            f"ACE-Step checkpoint_dir {root} does not exist — on a machine with internet run "
            f"`hf download {MAIN_REPO} --local-dir {root}` and copy it here (see docs/acestep.md)",
            "engine")
    dit_name = dit_folder(dit)
    lm_name = lm_folder(lm)
    missing: list[str] = []

    lm_dir = None
    if lm_name is not None:
        lm_dir = root / lm_name
        _check_component(lm_dir, f"5 Hz LM ({lm})", ("config.json",), missing, tokenizer=True)

    pipeline_dir = _diffusers_dir(root, dit_name)
    if pipeline_dir is not None:
        index = json.loads((pipeline_dir / "model_index.json").read_text())
        for component in ("transformer", "condition_encoder", "vae", "text_encoder", "tokenizer"):
            if component not in index:
                missing.append(f"component {component!r} in {pipeline_dir / 'model_index.json'}")
                continue
            sub = pipeline_dir / component
            if component == "tokenizer":
                _check_component(sub, "tokenizer", (), missing, weights=False, tokenizer=True)
            else:
                _check_component(sub, component, ("config.json",), missing)
        if missing:
            raise CheckpointMissing("ACE-Step checkpoint incomplete: " + "; ".join(missing), "engine")
        return Layout("diffusers", root, pipeline_dir.name, pipeline_dir, lm_dir=lm_dir)

    dit_dir = root / dit_name
    _check_component(dit_dir, f"DiT ({dit})", ("config.json", "silence_latent.pt"), missing)
    vae_dir = root / VAE_DIR
    _check_component(vae_dir, "VAE", ("config.json",), missing)
    te_dir = root / TEXT_ENCODER_DIR
    _check_component(te_dir, "text encoder", ("config.json",), missing, tokenizer=True)
    if missing:
        raise CheckpointMissing("ACE-Step checkpoint incomplete: " + "; ".join(missing), "engine")
    return Layout("original", root, dit_name, dit_dir, vae_dir=vae_dir, text_encoder_dir=te_dir,
                  lm_dir=lm_dir)
