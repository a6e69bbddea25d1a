"""ACE-Step's side of a task: the step/shift schedules each model variant supports.

The task itself (cover, repaint, variants) is engine-neutral: cassetted.music.task.
"""

from __future__ import annotations

from dataclasses import dataclass

from cassetted.contract import errors
from cassetted.music.task import MAX_VARIANTS as MAX_VARIANTS
from cassetted.music.task import TEXT2MUSIC as TEXT2MUSIC
from cassetted.music.task import EngineTask as EngineTask
from cassetted.music.task import TaskInvalid as TaskInvalid
from cassetted.music.task import TaskKind as TaskKind

# The task type as the ACE-Step modules have always called it.
AceStepTask = EngineTask


# ------------------------------------------------------------------ schedules per variant

class ScheduleInvalid(errors.InvalidPayload):
    """`steps`/`shift` the model variant does not support (the field is named)."""


# Upstream turbo's fixed 8-step tables, t = 1 down to the last t before 0, per shift
# (SHIFT_TIMESTEPS in acestep/models/turbo/modeling_acestep_v15_turbo.py:1855-1859 at
# 783bb36). Upstream rounds any other shift to the nearest of these and clamps steps to 8
# (handler/service_generate_request.py:52); we refuse instead of changing the request.
TURBO_STEPS = 8
TURBO_TIMESTEPS: dict[float, tuple[float, ...]] = {
    1.0: (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125),
    2.0: (1.0, 0.9333333333333333, 0.8571428571428571, 0.7692307692307693, 0.6666666666666666,
          0.5454545454545454, 0.4, 0.2222222222222222),
    3.0: (1.0, 0.9545454545454546, 0.9, 0.8333333333333334, 0.75, 0.6428571428571429, 0.5, 0.3),
}


@dataclass(frozen=True)
class VariantLimits:
    """What one DiT variant runs: its default steps/shift and what a request may ask."""

    default_steps: int
    default_shift: float
    steps: tuple[int, int]              # inclusive range
    shifts: tuple[float, ...] | None    # the allowed values, or None for the range below
    shift_range: tuple[float, float] = (1.0, 5.0)
    fixed_table: bool = False           # turbo: upstream's table, not the shift formula


# docs/en/Tutorial.md "Turbo Series" at 783bb36: turbo is distilled jointly on shift 1, 2, 3,
# turbo-shift1/-shift3 on one shift each, turbo-continuous on continuous shift 1-5.
# base/sft: 50 steps, shift 1.0 (training_v2/model_discovery.py:24-27); the UI allows 1-200
# steps and shift 1-5 (ui/gradio/.../model_config.py, generation_advanced_dit_controls.py).
_TURBO = VariantLimits(TURBO_STEPS, 3.0, (TURBO_STEPS, TURBO_STEPS), (1.0, 2.0, 3.0), fixed_table=True)
_LIMITS: dict[str, VariantLimits] = {
    "acestep-v15-turbo": _TURBO,
    "acestep-v15-turbo-shift1": VariantLimits(TURBO_STEPS, 1.0, (TURBO_STEPS, TURBO_STEPS), (1.0,),
                                              fixed_table=True),
    "acestep-v15-turbo-shift3": VariantLimits(TURBO_STEPS, 3.0, (TURBO_STEPS, TURBO_STEPS), (3.0,),
                                              fixed_table=True),
    "acestep-v15-turbo-continuous": VariantLimits(TURBO_STEPS, 3.0, (TURBO_STEPS, TURBO_STEPS), None),
}
_NOT_TURBO = VariantLimits(50, 1.0, (1, 200), None)


def variant_limits(folder: str, is_turbo: bool) -> VariantLimits:
    """The limits of a DiT folder (`acestep-v15-turbo-shift1`, ...); an unknown folder is
    treated by its config's `is_turbo` as plain turbo or as base."""
    return _LIMITS.get(folder, _TURBO if is_turbo else _NOT_TURBO)


def schedule(folder: str, is_turbo: bool, steps: int | None, shift: float | None,
             where: str = "request") -> tuple[float, ...]:
    """The timesteps a request runs (t = 1 down to the last t before 0), or ScheduleInvalid
    naming `steps` or `shift` when the variant cannot run what was asked. `where` says who
    asked ("request" or "[acestep]") for the message."""
    limits = variant_limits(folder, is_turbo)
    n = limits.default_steps if steps is None else steps
    low, high = limits.steps
    if not low <= n <= high:
        allowed = f"exactly {low}" if low == high else f"{low}..{high}"
        fixed = " (a distilled turbo runs upstream's fixed schedule)" if low == high else ""
        raise ScheduleInvalid(f"{folder} runs {allowed} diffusion steps{fixed}; the {where} "
                              f"asked for {n}", "steps")
    value = limits.default_shift if shift is None else float(shift)
    if limits.shifts is not None:
        if not any(abs(value - allowed) < 1e-6 for allowed in limits.shifts):
            raise ScheduleInvalid(f"{folder} was distilled for shift "
                                  f"{' or '.join(f'{a:g}' for a in limits.shifts)}; the {where} "
                                  f"asked for {value:g}", "shift")
        value = min(limits.shifts, key=lambda allowed: abs(allowed - value))
    elif not limits.shift_range[0] <= value <= limits.shift_range[1]:
        raise ScheduleInvalid(f"{folder} takes shift {limits.shift_range[0]:g}..."
                              f"{limits.shift_range[1]:g}; the {where} asked for {value:g}", "shift")
    if limits.fixed_table:
        return TURBO_TIMESTEPS[value]
    # linspace(1, 0, N + 1) through the flow-matching shift, the terminal 0 dropped
    # (modeling_acestep_v15_base.py generate_audio at 783bb36).
    ts = [1.0 - i / n for i in range(n)]
    if value != 1.0:
        ts = [value * t / (1 + (value - 1) * t) for t in ts]
    return tuple(ts)
