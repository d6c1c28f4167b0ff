"""DDP: two CPU processes under torchrun (gloo) train the smoke-size GAN, rank 0 alone writes one
checkpoint, and both ranks end with the same weights (parameters and BN buffers)."""
import json
import os
import subprocess
import sys

import torch

from s2i_lib.gan import load_generator
from s2i_lib.gan.distributed import state_digest


def test_two_process_torchrun_training(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "s2i_lib.torchrun_gan", "--profile", "smoke", "--out", str(out),
           "--synthetic", "16", "--embed-dim", "24", "--iterations", "4", "--digest",
           "--set", "device=cpu", "--set", "gan.batch_size=8", "--set", "gan.checkpoint_every=100",
           "--set", "gan.sample_every=100"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    d0, d1 = (json.loads((out / f"digest_rank{r}.json").read_text()) for r in (0, 1))
    assert d0["world_size"] == d1["world_size"] == 2
    assert set(d0["digests"]) == {"generator", "generator_ema", "discriminator16", "discriminator32",
                                  "discriminator64", "relation_supervisor"}
    assert d0["digests"] == d1["digests"]

    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["generator_ema_0000004.pt", "latest.pt"]  # one checkpoint, written once
    state = torch.load(out / "checkpoints/latest.pt", weights_only=True)
    assert state["iteration"] == 4
    # what rank 0 wrote is what both ranks hold
    latest = out / "checkpoints/latest.pt"
    assert state_digest(load_generator(latest, ema=False)) == d0["digests"]["generator"]
    assert state_digest(load_generator(latest)) == d0["digests"]["generator_ema"]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["iterations"] == 4
