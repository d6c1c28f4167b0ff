"""The pipeline's steps, their order, and the one function that runs a step if it is needed.

``ensure(step, cfg)`` is what the CLI and the notebooks call: it first ensures every earlier step
(building only what is missing or stale), then runs ``step`` unless its outputs are up to date,
and returns the step's folder ``runs/<profile>/<step>/`` (``step_dir``, from ``artifacts``).

With ``s2i_lib/steps/`` this is the steps layer (see ``.importlinter``): the only code that orders
the steps and hands them a ``Config`` and their folders.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

from .artifacts import METRICS_FILE, StepState, default_runs_dir, run_step, step_dir, step_state
from .config import STEPS, Config

# step -> "module:function" of the steps layer (s2i_lib/steps/); the function is
# work(cfg, out_dir, inputs) -> figures, where inputs maps every earlier step to its folder.
# Imported when a step runs, not here: the step modules import torch, and `status` and the
# notebooks' status tables (``state``) need only the config and the runs folder.
STEP_FUNCTIONS: dict[str, str] = {
    # the dataset, then the evaluation's instruments of it (they depend on the dataset alone)
    "data": "s2i_lib.steps.data:data_step",
    "speech": "s2i_lib.steps.speech:build_speech_step",
    "sen": "s2i_lib.steps.sen:train_sen_step",
    "gan": "s2i_lib.steps.gan:train_gan_step",
    "eval": "s2i_lib.steps.eval:evaluate_step",
}


def _work_function(step: str) -> Callable:
    target = STEP_FUNCTIONS[step]
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def state(step: str, cfg: Config, runs_dir: str | Path | None = None) -> StepState:
    """What is on disk for ``step`` compared with what ``cfg`` asks for (no work is done)."""
    own = step_dir(step, cfg, runs_dir)
    upstream = {}
    for up in STEPS[: STEPS.index(step)]:
        up_state = state(up, cfg, runs_dir)
        if up_state.status != "done":
            built = (own / METRICS_FILE).exists()
            return StepState(step, own, "stale" if built else "missing",
                             f"upstream step '{up}' is {up_state.status}", None)
        upstream[up] = up_state.metrics["run_id"]
    return step_state(own, step, cfg.step_hash(step), upstream, _missing(step, cfg))


def _missing(step: str, cfg: Config) -> Callable[[dict], str | None]:
    return lambda finished: cfg.missing_extensions(step, finished)


def ensure(step: str, cfg: Config, runs_dir: str | Path | None = None, force: bool = False,
           log: Callable[[str], None] = print) -> Path:
    """Build ``step`` (and whatever it needs) unless up to date; return its folder."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; expected one of {', '.join(STEPS)}")
    work = _work_function(step)
    runs_dir = Path(runs_dir or default_runs_dir())
    earlier = STEPS[: STEPS.index(step)]
    if earlier:  # ensuring the previous step ensures every step before it
        ensure(earlier[-1], cfg, runs_dir, force=False, log=log)
    inputs = {up: step_dir(up, cfg, runs_dir) for up in earlier}
    upstream_runs = {up: step_state(inputs[up], up, cfg.step_hash(up), {}).metrics["run_id"]
                     for up in earlier}
    out = step_dir(step, cfg, runs_dir)
    section = {"seed": cfg.seed, "device": cfg.device, step: cfg.to_dict()[step]}
    run_step(out, step, cfg.step_hash(step), section, upstream_runs,
             work=lambda d: work(cfg, d, inputs), force=force, log=log, missing=_missing(step, cfg))
    return out
