"""Save and restore every random number generator a training loop draws from (torch, CUDA, numpy,
Python), so that a resumed run continues exactly as the uninterrupted one would have.

The state is made of tensors, numbers, strings and tuples only, so that it loads with
``torch.load(weights_only=True)``: a checkpoint from a runs folder is never unpickled.
"""
from __future__ import annotations

import random

import numpy as np
import torch


def rng_state() -> dict:
    """The state of every generator, as plain data (see the module docstring)."""
    np_state = np.random.get_state(legacy=False)
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"bit_generator": np_state["bit_generator"],
                      # uint32 has no safe tensor type: stored as int64, converted back on restore
                      "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                      "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                      "gauss": float(np_state["gauss"])},
            "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    random.setstate(state["python"])
