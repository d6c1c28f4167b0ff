"""Profiles (``configs/<name>.yaml``) loaded into typed dataclasses, with overrides.

One section per pipeline step (data, speech, sen, gan, eval), each a dataclass of
``step_configs.py``; ``Config`` holds them with the seed, the device and the precision. Only the
steps and the code above them read a ``Config`` (``.importlinter``). Every key of a profile must
be a field of these dataclasses: an unknown key, a value of the wrong type or an impossible value
is a ``ConfigError`` that names the key and the value. Overrides come as ``"section.key=value"`` strings (CLI
``--set``) or as a dict (notebook parameter), flat (``{"gan.batch_size": 32}``) or nested.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .artifacts import stable_hash
from .step_configs import (ConfigError, DataConfig, EvalConfig, GanConfig, SenConfig, SpeechConfig,
                           _check, _fail)

STEPS = ("data", "speech", "sen", "gan", "eval")

# Switches that only *add* outputs to a step: what the step makes without them is the same with
# them. They are left out of the step's hash, so turning one on extends a finished run (the
# ablations after a plain evaluation reuse its ~9 minutes of full-model figures) and turning it
# off keeps what was added (a later `make run` does not throw away the ablations' hour and a half).
EXTENDING_KEYS: dict[str, tuple[str, ...]] = {"eval": ("ablations",)}


# Upper bounds of the numeric keys: far above any real run, they catch a typo (batch_size=1e23,
# workers=800) with a message before it turns into an out-of-memory error an hour later.
UPPER_BOUNDS: dict[str, int | float] = {
    "seed": 2**32 - 1,   # numpy's global seed is 32-bit
    "data.images_per_class": 1000, "data.n_train_classes": 100_000, "data.n_test_classes": 100_000,
    "data.workers": 256, "speech.workers": 256,
    "sen.embed_dim": 8192, "sen.gru_hidden": 4096, "sen.gru_layers": 8, "sen.attention_hidden": 4096,
    "sen.batch_size": 8192, "sen.epochs": 100_000, "sen.lr_decay_every": 100_000,
    "sen.weight_decay": 1.0, "sen.gamma": 1000.0, "sen.feature_views": 64,
    "gan.gf_dim": 1024, "gan.df_dim": 1024, "gan.z_dim": 4096, "gan.condition_dim": 4096,
    "gan.res_blocks": 16, "gan.batch_size": 8192, "gan.iterations": 100_000_000,
    "gan.kl_coeff": 1000.0, "gan.rs_coeff": 1000.0, "gan.contrastive_coeff": 1000.0,
    "gan.seed": 2**32 - 1, "gan.checkpoint_every": 100_000_000, "gan.sample_every": 100_000_000,
    "eval.is_splits": 100, "eval.batch_size": 8192, "eval.colour_swaps": 100_000,
    "eval.judge_images": 1_000_000, "eval.judge_epochs": 1000,
}


@dataclass
class Config:
    profile: str = "default"
    seed: int = 200                          # the original code's
    device: str = "auto"                     # auto | cpu | cuda | cuda:N
    # bf16 autocast + channels_last where the hardware has bf16 units (auto: measured per part,
    # s2i_lib/device.py); like the device, not part of a step's hash: it changes speed, and the
    # last digits of the numbers
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    sen: SenConfig = field(default_factory=SenConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> "Config":
        _check(self.seed >= 0, "seed", self.seed, "must be >= 0")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               "device", self.device, "must be auto, cpu, cuda or cuda:N")
        for name in STEPS:
            getattr(self, name).validate(name)
        for key, bound in UPPER_BOUNDS.items():
            section, _, field_name = key.rpartition(".")
            value = getattr(getattr(self, section) if section else self, field_name)
            _check(value is None or value <= bound, key, value, f"must be at most {bound}")
        return self

    def step_hash(self, step: str) -> str:
        """Hash of everything that decides the outputs of ``step``: the seed and the sections of
        this step and all steps before it (so an upstream change makes a step stale)."""
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; expected one of {STEPS}")
        upto = STEPS[: STEPS.index(step) + 1]
        sections = {s: dataclasses.asdict(getattr(self, s)) for s in upto}
        for s, keys in EXTENDING_KEYS.items():
            for k in keys:
                sections.get(s, {}).pop(k, None)
        return stable_hash({"seed": self.seed, **sections})

    def missing_extensions(self, step: str, finished: dict) -> str | None:
        """What this config asks of ``step`` that a finished run of the same hash (its
        ``metrics.json``) did not do: the ``EXTENDING_KEYS`` on here and off there. None if nothing."""
        done = finished.get("config", {}).get(step, {})
        wanted = [f"{step}.{k}" for k in EXTENDING_KEYS.get(step, ())
                  if getattr(getattr(self, step), k) and not done.get(k)]
        return f"{', '.join(wanted)} asked for, the finished run has none" if wanted else None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------- loading
def configs_dir() -> Path:
    """``configs/`` of the repository (or ``S2I_CONFIGS_DIR``)."""
    env = os.environ.get("S2I_CONFIGS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "configs"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in configs_dir().glob("*.yaml"))


def load_config(profile: str | os.PathLike = "default",
                overrides: dict | list[str] | None = None) -> Config:
    """Load a profile by name (``configs/<name>.yaml``) or path, apply overrides, validate."""
    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = configs_dir() / f"{profile}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown profile {str(profile)!r}: no {path}. "
                              f"Available: {', '.join(available_profiles()) or 'none'}")
    elif not path.exists():
        raise ConfigError(f"profile file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, not {type(raw).__name__}")
    raw.setdefault("profile", path.stem)
    for key, value in _flatten_overrides(overrides).items():
        _set_nested(raw, key, value)
    return _build(Config, raw, prefix="").validate()


def _flatten_overrides(overrides: dict | list[str] | None) -> dict[str, Any]:
    if not overrides:
        return {}
    flat: dict[str, Any] = {}
    if isinstance(overrides, dict):
        def walk(d: dict, prefix: str) -> None:
            for k, v in d.items():
                key = f"{prefix}{k}"
                if isinstance(v, dict) and k in STEPS:
                    walk(v, key + ".")
                else:
                    flat[key] = v
        walk(overrides, "")
        return flat
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, text = item.split("=", 1)
        try:  # YAML syntax, so numbers, booleans, null and [lists] come out typed
            flat[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: cannot parse value ({e})") from e
    return flat


def _set_nested(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{key}': '{part}' is not a section")
    node[parts[-1]] = value


def _build(cls: type, raw: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            full = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{full}'{hint}")
    kwargs = {}
    for name in names:
        if name not in raw:
            continue
        tp, value, full = hints[name], raw[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                _fail(full, value, "must be a section (a mapping of keys)")
            kwargs[name] = _build(tp, value, prefix=full + ".")
        else:
            kwargs[name] = _coerce(tp, value, full)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert only lossless cases (int -> float)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError:
                pass
        _fail(key, value, f"has the wrong type; expected {_type_name(tp)}")
    if origin is Literal:
        _check(value in args, key, value, f"must be one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        _check(isinstance(value, (list, tuple)), key, value, f"must be a list of {_type_name(args[0])}")
        return [_coerce(args[0], v, key) for v in value]
    if tp is bool:
        _check(isinstance(value, bool), key, value, "must be true or false")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, value, "must be an integer")
        return value
    if tp is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key, value,
               "must be a number")
        _check(math.isfinite(value), key, value, "must be a finite number")
        return float(value)
    if tp is str:
        _check(isinstance(value, str), key, value, "must be a string")
        return value
    raise TypeError(f"config field {key} has an unsupported type {tp}")  # a bug here, not the user's


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
