"""The settings models of the ACE-Step engines: `[acestep]` (in process) and `[acestep_api]`
(a remote server). They live apart from the engines so that the plugin descriptors (and
config.py) can name them without importing the engines' code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from cassetted.music.acestep.layout import DIT_VARIANTS, LM_SIZES
from cassetted.music.task import MAX_VARIANTS


class LoraSettings(BaseModel):
    """One `[acestep.loras.<name>]` entry: a LoRA style a request may pick by name."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(description="The adapter folder as upstream's trainer (PEFT "
                                   "save_pretrained) writes it: adapter_config.json + "
                                   "adapter_model.safetensors; or one .safetensors file.")
    scale: float = Field(1.0, ge=0.0, le=2.0, description="How strongly the style applies.")


class AceStepSettings(BaseModel):
    """`[acestep]`: the in-process ACE-Step 1.5 engine.

    ```toml
    [acestep]
    checkpoint_dir = "/var/lib/cassetted/models/ace-step-1.5"
    dit = "turbo"          # turbo, turbo-shift1, turbo-shift3, turbo-continuous, base, sft
    lm = "none"            # none, 0.6B, 1.7B, 4B (the 5 Hz LM that plans the song first)
    device = "auto"        # auto, cpu, cuda, cuda:1

    [acestep.loras.our_band]   # a request picks it with "lora": "our_band"
    path = "/var/lib/cassetted/loras/our-band"
    scale = 0.8
    ```
    """

    model_config = ConfigDict(extra="forbid")

    checkpoint_dir: Path | None = Field(
        None, description="Folder with the ACE-Step 1.5 weights (see docs/acestep.md).")
    dit: str = Field("turbo", pattern=r"^[A-Za-z0-9._-]{1,64}$",
                     description=f"DiT variant: {', '.join(DIT_VARIANTS)} or a folder name.")
    lm: str = Field("none", pattern=r"^[A-Za-z0-9._-]{1,64}$",
                    description=f"5 Hz LM: none, {', '.join(LM_SIZES)} or a folder name.")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = bfloat16 (or float16) on a GPU, float32 on the CPU.")
    offload: Literal["never", "on_oom", "always"] = Field(
        "on_oom", description="Keep weights in RAM and move each model to the GPU only while "
                              "it runs: always, never, or only after running out of memory.")
    quantization: Literal["none", "int8"] = Field(
        "none", description="int8 = dynamic int8 matmuls (CPU, float32 only).")
    steps: int | None = Field(None, ge=1, le=200,
                              description="Diffusion steps; empty = the variant's: 8 (turbo, "
                                          "fixed) or 50 (base, sft; 1..200).")
    shift: float | None = Field(None, ge=0.1, le=10.0,
                                description="Timestep shift; empty = the variant's: 3 (turbo: 1, "
                                            "2 or 3), 1 (turbo-shift1), 1 (base, sft; 1..5).")
    guidance_scale: float = Field(7.0, ge=1.0, le=20.0,
                                  description="Classifier-free guidance (base and sft only).")
    lm_temperature: float = Field(0.85, gt=0.0, le=2.0)
    lm_top_p: float = Field(0.9, gt=0.0, le=1.0)
    max_variants: int = Field(4, ge=1, le=MAX_VARIANTS, description="Most takes of one request.")
    loras: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")], LoraSettings] = Field(
        default_factory=dict, description="LoRA styles by name (loaded on first use).")


class RemoteLora(BaseModel):
    """One LoRA/LoKr adapter *on the server's disk* (`[acestep_api.loras.<name>]`)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=1024,
                      description="A PEFT adapter folder or LoKr .safetensors on the server.")
    scale: float = Field(1.0, ge=0.0, le=1.0, description="Strength (upstream takes 0..1).")


class AceStepApiSettings(BaseModel):
    """`[acestep_api]`: one or more ACE-Step API servers.

    ```toml
    [acestep_api]
    urls = ["http://gpu-box:8001", "http://basement:8001"]
    key_provider = "acestep_api"   # cassetted keys set acestep_api
    ```
    """

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8001"], min_length=1,
                            description="Base URLs of ACE-Step API servers, tried in turn.")
    key_provider: str = Field("acestep_api", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
                              description="Credential name of the API key (`cassetted keys set`).")
    model: str | None = Field(None, max_length=128,
                              description='DiT model on the server as /v1/models names it, e.g. '
                                          '"acestep-v15-turbo" (or "acestep/acestep-v15-turbo").')
    thinking: bool = Field(False, description="Let the server's 5 Hz LM write audio codes first.")
    steps: int | None = Field(None, ge=1, le=200, description="Empty = the server's default.")
    shift: float | None = Field(None, ge=0.1, le=10.0)
    guidance_scale: float | None = Field(None, ge=1.0, le=20.0)
    audio_format: Literal["flac", "wav", "mp3"] = "flac"
    request_timeout_s: float = Field(30.0, gt=0, le=600, description="Per HTTP request.")
    task_timeout_s: float = Field(1800.0, gt=0, description="Submit to finished file, queue included.")
    poll_interval_s: float = Field(1.0, gt=0, le=60)
    health_ttl_s: float = Field(30.0, ge=0, description="How long a health verdict is trusted.")
    retries: int = Field(2, ge=0, le=10, description="Retries of one request on the same URL.")
    retry_backoff_s: float = Field(0.5, ge=0, le=30)
    lost_after_s: float = Field(30.0, gt=0, description="A task the server no longer knows "
                                                        "this long is submitted elsewhere.")
    stall_after_s: float = Field(120.0, gt=0, description="A running task whose progress has not "
                                 "moved this long, on a server that runs no job (/v1/stats), is "
                                 "taken as lost (the server restarted) and submitted again: "
                                 "another server first, the same one once.")
    busy_wait_s: float = Field(600.0, ge=0, description="How long to keep trying while every "
                                                        "server answers 429 (queue full).")
    busy_backoff_s: float = Field(5.0, gt=0, le=300, description="First pause after a round of "
                                                                 "429s; doubles up to 60 s.")
    max_variants: int = Field(4, ge=1, le=MAX_VARIANTS)
    loras: dict[str, RemoteLora] = Field(default_factory=dict, description="Adapters on the "
                                         "servers, by name (ACE-Step API 783bb36 or later).")
    lora: str | None = Field(None, description="The name in `loras` every song is rendered with "
                             "(a household style); the servers' adapter state is global, so "
                             "cassetted should be their only client.")
    simple_mode: bool = Field(False, description="A request with only a description (no lyrics) "
                              "lets the server's 5 Hz LM write caption, lyrics, tempo, key and "
                              "length (upstream's sample_query); the lyrics chain writes them "
                              "when the LM is off.")

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        clean = []
        for url in urls:
            if not re.match(r"^https?://[^\s/]+", url):
                raise ValueError(f"{url!r} must start with http:// or https://")
            clean.append(url.rstrip("/"))
        return clean

    @field_validator("loras")
    @classmethod
    def _lora_names(cls, loras: dict[str, RemoteLora]) -> dict[str, RemoteLora]:
        for name in loras:
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", name):
                raise ValueError(f"LoRA name {name!r}: letters, digits, '_', '-', '.'")
        return loras

    @model_validator(mode="after")
    def _lora_is_known(self) -> AceStepApiSettings:
        if self.lora is not None and self.lora not in self.loras:
            known = ", ".join(sorted(self.loras)) or "none"
            raise ValueError(f"lora {self.lora!r} is not one of [acestep_api.loras] ({known})")
        return self

    @property
    def model_name(self) -> str | None:
        """The model as /release_task takes it: /v1/models's id without "acestep/"."""
        if not self.model:
            return None
        return self.model.split("/", 1)[1] if self.model.startswith("acestep/") else self.model
