"""`acestep`: ACE-Step 1.5 in process, on this machine's GPU (or CPU), fully offline.

Created once per worker process; the models load on the first song (or `warm_up()`) from a
local checkpoint directory and stay loaded. torch, diffusers and transformers are imported
only then, so a daemon that never uses this engine never pays for them, and this module can
be imported (for its settings) without them installed.

All model work runs on one dedicated thread (ACE-Step is not thread-safe); the job's thread
waits, receives the progress of every diffusion step (and of the LM's code writing) and
passes it to the progress callback; a Cancelled raised by that callback stops the model at
its next step. Out of GPU memory is retried once, one take at a time with CPU offload
(`offload = "on_oom"`), then reported as such. Every take is checked (NaN, silence) before
it leaves the engine; a 5 Hz LM that fails to load or to write codes is skipped with a
warning (the song is made without it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from cassetted.contract import errors
from cassetted.contract.schemas import SongSpec
from cassetted.music.acestep import prompt as prompting
from cassetted.music.acestep import shaping
from cassetted.music.acestep.layout import (
    CheckpointMissing,
    Layout,
    resolve,
)
from cassetted.music.acestep.settings import AceStepSettings as AceStepSettings
from cassetted.music.acestep.settings import LoraSettings as LoraSettings
from cassetted.music.acestep.task import (
    TEXT2MUSIC,
    AceStepTask,
    ScheduleInvalid,
    TaskInvalid,
    schedule,
)
from cassetted.music.acestep.thread import ModelThread
from cassetted.music.base import Audio, Cancelled, ProgressCallback

if TYPE_CHECKING:
    from cassetted.music.acestep.model import Loaded, Rendered, Request

log = logging.getLogger(__name__)

__all__ = [
    "AceStepEngine",
    "AceStepOutOfMemory",
    "AceStepSettings",
    "AceStepTask",
    "AceStepUnavailable",
    "CheckpointMissing",
    "ScheduleInvalid",
    "TaskInvalid",
]


class AceStepUnavailable(errors.GenerationFailed):
    """torch/diffusers are not installed, or the checkpoint cannot be loaded as configured."""


class AceStepOutOfMemory(errors.GenerationFailed):
    """The GPU ran out of memory (after the offload retry, where configured)."""


class AceStepEngine:
    """The MusicEngine on ACE-Step 1.5 (see the module docstring).

    `generate(spec, progress, task=None)` returns one song; `generate_variants(...)` all the
    takes of a task with `variants > 1` (take 0 is the song `generate` gives).
    """

    name = "acestep"

    def __init__(self, settings: AceStepSettings, sample_rate: int) -> None:
        self.settings = settings
        self.sample_rate = sample_rate
        # The layout is checked now (cheap, no torch): a wrong path fails the first job with
        # a message naming what is missing, and the next job checks again.
        self.layout: Layout = resolve(settings.checkpoint_dir, settings.dit, settings.lm)
        self._thread = ModelThread("acestep-model")
        self._loaded: Loaded | None = None
        self.load_seconds: float | None = None
        self.last_model_seconds: float = 0.0
        self.last_warnings: list[str] = []  # what the last song's fallbacks were

    @property
    def loras(self) -> frozenset[str]:
        """The LoRA styles a request may name (`[acestep] loras`)."""
        return frozenset(self.settings.loras)

    def __repr__(self) -> str:
        return (f"AceStepEngine(dit={self.layout.dit_name!r}, lm={self.settings.lm!r}, "
                f"device={self.settings.device!r})")

    # -- loading -------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load the models now (otherwise the first song does)."""
        self._ensure_loaded()

    def _ensure_loaded(self, progress: ProgressCallback | None = None) -> Loaded:
        """The loaded models, loading them on the model thread the first time. With a
        `progress`, the job sees "loading" and a cancel returns at once while the load goes
        on (the next song finds the models ready)."""
        loaded = self._loaded
        if loaded is not None:
            return loaded

        def load(report: Any) -> Loaded:
            if self._loaded is None:  # a queued second load finds the first one's result
                report(0.0, "loading the ACE-Step models")
                started = time.perf_counter()
                result = self._load()
                self.load_seconds = time.perf_counter() - started
                self._loaded = result
                log.info("ACE-Step %s loaded in %.1f s on %s (%s)%s", self.layout.dit_name,
                         self.load_seconds, result.device, str(result.dtype).split(".")[-1],
                         "; " + "; ".join(result.notes) if result.notes else "")
            return self._loaded

        if progress is None:
            return self._thread.call(lambda: load(lambda fraction, note=None: None))
        return self._thread.run(load, progress, wait_on_cancel=False)

    def _load(self) -> Loaded:
        try:
            from cassetted.music.acestep import model
        except ImportError as error:
            raise AceStepUnavailable(
                f"the acestep engine needs torch, diffusers and transformers ({error.name} is "
                "missing): pip install 'cassetted[acestep]' (see docs/acestep.md)", "engine") from None
        try:
            return model.load(self.layout, self.settings)
        except model.ModelError as error:
            raise AceStepUnavailable(str(error), "engine") from None
        except OSError as error:  # unreadable or truncated files
            raise AceStepUnavailable(f"cannot load the ACE-Step checkpoint from {self.layout.root}: "
                                     f"{str(error)[:300]}", "engine") from None

    @property
    def model_sample_rate(self) -> int:
        return self._ensure_loaded().sample_rate

    # -- generation ------------------------------------------------------------------------

    def generate(self, spec: SongSpec, progress: ProgressCallback,
                 task: AceStepTask | None = None) -> Audio:
        return self.generate_variants(spec, progress, task)[0]

    def generate_variants(self, spec: SongSpec, progress: ProgressCallback,
                          task: AceStepTask | None = None) -> list[Audio]:
        task = task or TEXT2MUSIC
        task.validate(spec.duration_s, self.settings.max_variants, "acestep")
        if task.lora is not None and task.lora not in self.settings.loras:
            known = ", ".join(sorted(self.settings.loras)) or "none configured"
            raise errors.InvalidPayload(f"no LoRA style {task.lora!r} in [acestep] loras "
                                        f"(known: {known})", "lora")
        loaded = self._ensure_loaded(progress)
        request, warnings = self._request(spec, task, loaded)
        started = time.perf_counter()
        try:
            rendered = self._thread.run(lambda report: self._run(loaded, request, report), progress)
        finally:
            self.last_model_seconds = time.perf_counter() - started
        self.last_warnings = warnings + rendered.warnings
        for warning in self.last_warnings:
            progress(1.0, f"warning: {warning}")
        takes = [shaping.to_engine(a, loaded.sample_rate, self.sample_rate, spec.duration_s)
                 for a in rendered.takes]
        if task.kind == "repaint":
            assert task.source is not None
            # Upstream splices the source's own waveform back outside the window
            # (core/generation/handler/repaint_waveform_splice.py at 783bb36): what was not
            # to be repainted is the source's audio, not a VAE re-synthesis of it.
            original = shaping.fit_length(
                shaping.resample(shaping.stereo(task.source.samples), task.source.sample_rate,
                                 self.sample_rate),
                round(spec.duration_s * self.sample_rate), rate=self.sample_rate)
            end = spec.duration_s if task.repaint_end_s is None else task.repaint_end_s
            takes = [shaping.splice(take, original, task.repaint_start_s, end, self.sample_rate)
                     for take in takes]
        notes = tuple(self.last_warnings)  # reach the job's `ready` event as its warnings
        return [Audio(take, self.sample_rate, seed=seed % 2**32, notes=notes)
                for take, seed in zip(takes, rendered.seeds, strict=True)]

    def _run(self, loaded: Loaded, request: Request, report: Any) -> Rendered:
        """On the model thread: generate; after running out of memory, once more one take
        at a time with CPU offload (where configured and where it helps)."""
        from cassetted.music.acestep import model

        lora = self.settings.loras.get(request.lora) if request.lora else None
        try:
            model.use_lora(loaded, request.lora, lora.path if lora else None,
                           lora.scale if lora else 1.0)
        except model.ModelError as error:
            raise AceStepUnavailable(str(error), "lora") from None
        try:
            return self._generate(model, loaded, request, report)
        except Exception as error:
            if not model.is_out_of_memory(error):
                raise
            where = f"{loaded.device}{model.memory_note(loaded.device)}"
            model.empty_cache(loaded.device)
            del error
        offload = self.settings.offload == "on_oom" and model.enable_offload(loaded)
        if offload or request.variants > 1:
            how = ("one take at a time" if request.variants > 1 else "") + \
                  (" with CPU offload" if offload else "")
            log.warning("ACE-Step ran out of memory on %s; retrying %s", where, how.strip())
            report(0.0, f"out of memory: retrying {how.strip()}")
            try:
                takes: list[np.ndarray] = []
                warnings: list[str] = []
                seeds: list[int] = []
                for take in range(request.variants):
                    one = dataclasses.replace(request, variants=1, first_take=take)
                    part = self._generate(model, loaded, one, lambda f, note=None, take=take: report(
                        (take + f) / request.variants, note))
                    takes += part.takes
                    seeds += part.seeds
                    warnings += [w for w in part.warnings if w not in warnings]
                return model.Rendered(takes, warnings, seeds)
            except Exception as error:
                if not model.is_out_of_memory(error):
                    raise
                model.empty_cache(loaded.device)
                where = f"{loaded.device}{model.memory_note(loaded.device)} even {how.strip()}"
        raise AceStepOutOfMemory(
            f"out of GPU memory on {where} generating {request.variants} x "
            f"{request.duration_s:g} s with {self.layout.dit_name}"
            f"{' + LM ' + self.settings.lm if request.lm_prompt else ''}: ask for a shorter song "
            "or fewer variants, or set [acestep] offload = \"always\", a smaller lm, or "
            "dtype = \"float16\"")

    def _generate(self, model: Any, loaded: Loaded, request: Request, report: Any) -> Rendered:
        """One request; a NaN or silent take makes the takes render once more with new seeds
        (past every take's own, so no two takes share one), and only then fails the job."""
        try:
            return self._generate_once(model, loaded, request, report)
        except model.BadTake as error:
            first = error
        retry = dataclasses.replace(request, first_take=request.first_take + self.settings.max_variants)
        log.warning("ACE-Step %s: %s; rendering again with new seeds", self.layout.dit_name, first)
        report(0.0, f"{first}: rendering again with new seeds")
        try:
            rendered = self._generate_once(model, loaded, retry, report)
        except model.BadTake as error:
            hint = "another seed" + ('' if loaded.dtype == model.torch.float32 else ', or dtype = "float32"')
            raise errors.GenerationFailed(f"ACE-Step {self.layout.dit_name}: {first}, and again "
                                          f"with new seeds: {error}; nothing was kept (try {hint})",
                                          "seed") from None
        seeds = ", ".join(str(seed) for seed in rendered.seeds)
        rendered.warnings.append(f"{first}; rendered again with seed {seeds}")
        return rendered

    def _generate_once(self, model: Any, loaded: Loaded, request: Request, report: Any) -> Rendered:
        try:
            rendered: Rendered = model.generate(loaded, request, self.settings, report)
            return rendered
        except Cancelled:
            raise
        except model.ModelError as error:
            raise AceStepUnavailable(str(error), "engine") from None

    def _request(self, spec: SongSpec, task: AceStepTask, loaded: Loaded) -> tuple[Request, list[str]]:
        """The model's request, and warnings about what the song is made without."""
        from cassetted.music.acestep.model import Request

        rate = loaded.sample_rate
        source = reference = None
        duration = spec.duration_s
        if task.source is not None:
            source = shaping.resample(shaping.stereo(task.source.samples), task.source.sample_rate, rate)
            if task.kind == "cover" and task.source_bpm and abs(task.source_bpm - spec.bpm) > 0.5:
                source = shaping.time_stretch(source, spec.bpm / task.source_bpm)
            source = shaping.fit_length(source, round(duration * rate), rate=rate)
        if task.reference is not None:
            reference = shaping.resample(shaping.stereo(task.reference.samples),
                                         task.reference.sample_rate, rate)
        # The configured defaults must suit the variant, then what this request asks.
        folder = self.layout.dit_name
        schedule(folder, loaded.is_turbo, self.settings.steps, self.settings.shift, "[acestep] setting")
        steps = task.steps if task.steps is not None else self.settings.steps
        shift = task.shift if task.shift is not None else self.settings.shift
        timesteps = schedule(folder, loaded.is_turbo, steps, shift)
        warnings = []
        if loaded.lm_error and task.kind == "text2music":
            warnings.append(f"the 5 Hz LM could not be loaded ({loaded.lm_error}); generated without it")
        use_lm = loaded.lm is not None and task.kind == "text2music"
        return Request(
            caption=prompting.caption(spec),
            lyrics=prompting.lyrics(spec),
            language=prompting.vocal_language(spec),
            bpm=spec.bpm,
            keyscale=prompting.keyscale(spec),
            timesignature=prompting.time_signature(spec),
            duration_s=duration,
            seed=spec.seed,
            steps=len(timesteps),
            shift=shift,
            timesteps=timesteps,
            guidance_scale=(task.guidance_scale if task.guidance_scale is not None
                            else self.settings.guidance_scale),
            variants=task.variants,
            kind=task.kind,
            source=source,
            reference=reference,
            cover_strength=task.cover_strength,
            repaint_start_s=task.repaint_start_s,
            repaint_end_s=task.repaint_end_s,
            lm_prompt=loaded.format_lm_prompt(prompting.lm_messages(spec, duration)) if use_lm else None,
            lora=task.lora,
        ), warnings

    def close(self) -> None:
        self._thread.shutdown()


def create(settings: Any, credentials: Any = None) -> AceStepEngine:
    """Registry factory: the engine from the daemon's Settings (`settings.acestep`, mounted
    by config.py, and `settings.generation.sample_rate`). `credentials` is unused."""
    return AceStepEngine(settings.acestep, settings.generation.sample_rate)

