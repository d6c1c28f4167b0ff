"""The gan step's data wiring: utterance embeddings grouped per image, in dataset order; the
relation supervisor's features of the cached views."""
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from s2i_lib.data.layout import read_dataset
from s2i_lib.data.torch_datasets import image_cache
from s2i_lib.sen.image_encoder import SenImageFeatures
from s2i_lib.steps.gan import cached_view_features, group_by_image
from s2i_lib.pipeline import ensure
from s2i_lib.sen.backbones import augmented_views, view_params


def _records(*keys):
    return [SimpleNamespace(key=k) for k in keys]


def test_group_by_image_keeps_each_image_its_own_captions():
    emb = np.arange(6, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)   # row i is all i
    keys = ["b", "a", "b", "c", "a", "b"]                                         # speech-store order
    out = group_by_image(emb, keys, _records("a", "b", "c"))
    assert out.shape == (3, 3, 4)
    assert out[0, :, 0].tolist() == [1, 4, 1]      # a: its two utterances, the first repeated
    assert out[1, :, 0].tolist() == [0, 2, 5]      # b: in store order
    assert out[2, :, 0].tolist() == [3, 3, 3]      # c: one utterance only


def test_group_by_image_ignores_utterances_of_other_images():
    emb = np.eye(3, dtype=np.float32)
    out = group_by_image(emb, ["x", "a", "y"], _records("a"))
    assert out.shape == (1, 1, 3) and out[0, 0].tolist() == [0, 1, 0]


def test_group_by_image_names_the_problem():
    with pytest.raises(ValueError, match="no spoken caption.*'b'"):
        group_by_image(np.zeros((1, 2), np.float32), ["a"], _records("a", "b"))
    with pytest.raises(ValueError, match="2 embeddings for 3 utterances"):
        group_by_image(np.zeros((2, 2), np.float32), ["a", "a", "a"], _records("a"))


def test_cached_views_give_what_the_extractor_gives_on_those_views(smoke_gan, one_thread):
    cfg, runs = smoke_gan.cfg, smoke_gan.runs_dir
    index = read_dataset(ensure("data", cfg, runs))
    extractor = SenImageFeatures(ensure("sen", cfg, runs), cfg.sen).eval()
    table = cached_view_features(cfg, index, extractor)
    n, views = len(index.split("train")), cfg.sen.feature_views
    assert table.shape == (n, views, extractor.projection.out_features) and views >= 2
    # the same views of the first 3 images, rebuilt and run through the extractor's own forward
    images = image_cache(index, "train", cfg.data.image_size)[:3]
    params = view_params(n, views, cfg.seed, cfg.data.image_size)[:3]
    with torch.no_grad():
        live = extractor(augmented_views(images, params)).reshape(3, views, -1)
    assert torch.allclose(table[:3], live, atol=5e-3)     # the cache stores float16
    assert not torch.allclose(table[:, 0], table[:, 1], atol=5e-3)
    off = dataclasses.replace(cfg, gan=dataclasses.replace(cfg.gan, rs_cached_views=False))
    assert cached_view_features(off, index, extractor) is None
    other_size = dataclasses.replace(cfg, gan=dataclasses.replace(cfg.gan, stage_sizes=[32, 64, 128]))
    assert cached_view_features(other_size, index, extractor) is None


def test_gan_seed_changes_the_gan_alone(smoke_gan, one_thread, tmp_path):
    from s2i_lib import load_config
    from s2i_lib.steps.gan import train_gan_step
    from s2i_lib.gan.trainer import load_generator
    runs = smoke_gan.runs_dir
    inputs = {s: ensure(s, smoke_gan.cfg, runs) for s in ("data", "speech", "sen")}

    def first_weight(*extra):
        cfg = load_config("smoke", smoke_gan.overrides + list(extra))
        out = tmp_path / ("_".join(extra) or "profile")
        train_gan_step(cfg, out, inputs)
        return next(load_generator(out / "generator.pt").parameters()).detach()

    profile, same, other = first_weight(), first_weight(f"gan.seed={smoke_gan.cfg.seed}"), first_weight("gan.seed=7")
    assert torch.equal(profile, same)           # gan.seed = the profile's seed: the same GAN
    assert not torch.equal(profile, other)      # another seed: another GAN
    # the upstream steps keep their config hash (they are reused), the gan step gets its own
    cfg7 = load_config("smoke", smoke_gan.overrides + ["gan.seed=7"])
    assert [cfg7.step_hash(s) for s in ("data", "speech", "sen")] == \
           [smoke_gan.cfg.step_hash(s) for s in ("data", "speech", "sen")]
    assert cfg7.step_hash("gan") != smoke_gan.cfg.step_hash("gan")
