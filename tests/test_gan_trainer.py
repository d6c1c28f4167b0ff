"""The GAN trainer: one iteration updates what it should, the EMA lives apart, an interrupted run
resumes bit for bit, a NaN stops training without touching the last checkpoint, files on disk."""
import dataclasses
import hashlib
import json
import math

import pytest
import torch
import torch.nn as nn

from s2i_lib.config import load_config
from s2i_lib.gan import (GanDivergenceError, GanTrainer, GanTrainingSet, load_generator,
                         relation_supervisor_loss, synthetic_training_set, tiny_feature_extractor)

EMBED = 24


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def smoke_cfg(**changes):
    cfg = load_config("smoke").gan
    changes.setdefault("batch_size", 4)
    return dataclasses.replace(cfg, **changes)


@pytest.fixture(scope="module")
def data():
    return synthetic_training_set(12, [16, 32, 64], EMBED, n_classes=3, seed=0)


def make(cfg, out, rs=True, **kw):
    # keep_freed_memory=False: the allocator setting is process-wide, and pytest runs other tests
    return GanTrainer(cfg, EMBED, out, feature_extractor=tiny_feature_extractor() if rs else None,
                      seed=3, progress=False, log_every=2, keep_freed_memory=False, **kw)


def states(trainer):
    return {f"{name}.{k}": v.clone() for name, m in trainer.modules_for_digest().items()
            for k, v in m.state_dict().items()}


def test_one_iteration_updates_every_network_and_keeps_the_ema_apart(data, tmp_path):
    tr = make(smoke_cfg(), tmp_path)
    before = states(tr)
    g0 = [p.detach().clone() for p in tr.generator.parameters()]
    logs = tr.train_step(tr.make_sampler(data).next_batch())
    assert set(logs) == {"D16", "D32", "D64", "RS", "G16", "G32", "G64", "G_RS", "KL", "G"}
    after = states(tr)
    for prefix in ("generator.", "generator_ema.", "discriminator16.", "discriminator64.",
                   "relation_supervisor."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix
    assert not torch.equal(before["discriminator32.project.weight"], after["discriminator32.project.weight"])
    # EMA = d * old + (1 - d) * new, in its own module; the live G is not overwritten
    for p_ema, p_old, p in zip(tr.generator_ema.parameters(), g0, tr.generator.parameters()):
        # first update: the warm-up decay min(0.999, 1 / 10)
        assert torch.allclose(p_ema, 0.1 * p_old + 0.9 * p.detach(), atol=1e-7)
    assert not all(torch.equal(a, b)
                   for a, b in zip(tr.generator_ema.parameters(), tr.generator.parameters()))
    assert all(p.requires_grad for d in tr.discriminators for p in d.parameters())  # restored
    assert all(p.grad is None for p in tr.generator.parameters())  # freed after the step
    assert logs["G"] == pytest.approx(logs["G16"] + logs["G32"] + logs["G64"] + logs["G_RS"] + 2 * logs["KL"],
                                      rel=1e-5)


def test_contrastive_term_adds_to_the_discriminator_and_generator_losses(data, tmp_path):
    from s2i_lib.gan.extensions import contrastive_loss
    plain = make(smoke_cfg(relation_supervisor=False), tmp_path / "plain", rs=False)
    contrastive = make(smoke_cfg(relation_supervisor=False, contrastive_coeff=2.0), tmp_path / "contrastive",
                       rs=False)
    batch = plain.make_sampler(data).next_batch()
    # what the first D update of the 16 px stage adds: 2 x the InfoNCE of the untrained
    # discriminator's match scores of the real images with their captions' mu
    fresh = make(smoke_cfg(relation_supervisor=False), tmp_path / "fresh", rs=False)
    with torch.no_grad():
        _, mu, _ = fresh.generator(batch.z, batch.embedding, batch.eps)
        _, _, scores = fresh.discriminators[0](batch.real[0], mu, match=True)
    from s2i_lib.gan import extensions as extensions_module
    seen = []

    def spy(s):
        seen.append((tuple(s.shape), s.requires_grad))
        return contrastive_loss(s)
    a = plain.train_step(batch)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(extensions_module, "contrastive_loss", spy)
        b = contrastive.train_step(batch)                            # same seed, same batch
    assert b["D16"] - a["D16"] == pytest.approx(2.0 * contrastive_loss(scores).item(), rel=1e-4)
    assert all(math.isfinite(v) for v in b.values()) and b["G16"] != a["G16"]
    # one term per discriminator update and one per stage in the G update, every one with a graph
    assert seen == [((4, 4), True)] * 6


def test_rs_term_trains_the_generator_through_the_frozen_extractor(data, tmp_path):
    tr = make(smoke_cfg(), tmp_path)
    batch = tr.make_sampler(data).next_batch()
    fakes, mu, _ = tr.generator(batch.z, batch.embedding, batch.eps)
    f_real = tr.extractor(batch.real[-1])
    from s2i_lib.gan import relation_generator_loss
    relation_generator_loss(tr.relation, f_real, tr.extractor(fakes[-1])).backward()
    assert tr.generator.heads[-1].conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tr.extractor.parameters())

    class Blocking(nn.Module):  # a feature extractor that (wrongly) cuts the graph
        def forward(self, x):
            with torch.no_grad():
                return x.mean(dim=(2, 3))
    bad = GanTrainer(smoke_cfg(), EMBED, tmp_path / "bad", feature_extractor=Blocking(), progress=False,
                     keep_freed_memory=False)
    with pytest.raises(ValueError, match="blocks gradients"):
        bad.train_step(bad.make_sampler(data).next_batch())


def test_rs_reads_real_similar_and_wrong_features_from_the_table(data, tmp_path):
    seen = []

    class Counting(nn.Module):   # the extractor, recording the size of every batch it runs on
        def __init__(self):
            super().__init__()
            self.net = tiny_feature_extractor()

        def forward(self, x):
            seen.append(x.shape[0])
            return self.net(x)
    table = torch.randn(len(data), 2, 32)
    cached = GanTrainingSet(data.images, data.class_ids, data.embeddings, data.stage_sizes, rs_features=table)
    tr = GanTrainer(smoke_cfg(), EMBED, tmp_path, feature_extractor=Counting(), seed=3, progress=False,
                    keep_freed_memory=False)
    batch = tr.make_sampler(cached).next_batch()
    with torch.no_grad():   # the RS loss the step must see: the table's rows, the fakes' features
        fakes, _, _ = tr.generator(batch.z, batch.embedding, batch.eps)
        f_real, f_similar, f_wrong = batch.rs_features.unbind(0)
        expected = relation_supervisor_loss(tr.relation, f_real, f_similar, tr.extractor(fakes[-1]), f_wrong)
    seen.clear()
    logs = tr.train_step(batch)
    assert seen == [4]                   # the generated images only (without the table: [12, 4])
    assert logs["RS"] == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="rs_features are 31-d, the feature extractor gives 32"):
        tr.make_sampler(GanTrainingSet(data.images, data.class_ids, data.embeddings, data.stage_sizes,
                                       rs_features=table[..., :31]))


def test_interrupted_run_resumes_bit_identical(data, tmp_path):
    cfg = smoke_cfg(checkpoint_every=3, sample_every=3)
    full = make(cfg, tmp_path / "full")
    full.train(data, 6)

    class Stop(Exception):
        pass

    def crash_at_5(it, logs):
        if it == 5:
            raise Stop  # after the checkpoint at 3: iterations 4 and 5 are lost and redone
    with pytest.raises(Stop):
        make(cfg, tmp_path / "cut").train(data, 6, callback=crash_at_5)
    ckpt = torch.load(tmp_path / "cut/checkpoints/latest.pt", weights_only=True)
    assert ckpt["iteration"] == 3
    assert {"torch", "cuda", "numpy", "python"} <= set(ckpt["rng"])
    assert set(ckpt["optimizers"]) == {"generator", "discriminators", "relation_supervisor"}

    resumed = make(cfg, tmp_path / "cut")
    figures = resumed.train(data, 6)
    assert figures["resumed_from"] == 3 and figures["iterations"] == 6
    a, b = states(full), states(resumed)
    assert a.keys() == b.keys() and len(a) > 50
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert full.history == resumed.history and [r["iteration"] for r in full.history] == [2, 4, 6]
    for o1, o2 in zip([full.opt_g, *full.opt_d, full.opt_rs],
                      [resumed.opt_g, *resumed.opt_d, resumed.opt_rs]):
        s1, s2 = o1.state_dict()["state"], o2.state_dict()["state"]
        assert all(torch.equal(s1[i][k], s2[i][k]) for i in s1 for k in s1[i])
    # the files: full checkpoint, EMA snapshots, sample grids, curves; no temporary files left
    files = sorted(p.relative_to(tmp_path / "full").as_posix() for p in (tmp_path / "full").rglob("*"))
    assert files == ["checkpoints", "checkpoints/generator_ema_0000003.pt",
                     "checkpoints/generator_ema_0000006.pt", "checkpoints/latest.pt", "loss_history.json",
                     "samples", "samples/iter_0000003.png", "samples/iter_0000006.png"]
    curves = json.loads((tmp_path / "full/loss_history.json").read_text())
    assert curves["every"] == 2 and curves["records"][-1]["iteration"] == 6
    g = load_generator(tmp_path / "full/checkpoints/generator_ema_0000006.pt")
    ema = full.generator_ema.state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in g.state_dict().items())
    assert not g.training
    # already done: a second call trains nothing
    assert make(cfg, tmp_path / "full").train(data, 6)["iterations_this_run"] == 0


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(data, tmp_path):
    cfg = smoke_cfg(checkpoint_every=2, sample_every=100)
    tr = make(cfg, tmp_path)
    poison = {"on": False}

    def nan_output(module, inputs, output):
        if poison["on"]:
            cond, uncond = output
            return cond * float("nan"), uncond
    tr.discriminators[2].register_forward_hook(nan_output)

    def arm(it, logs):
        if it == 4:
            poison["on"] = True
    latest = tmp_path / "checkpoints/latest.pt"
    with pytest.raises(GanDivergenceError) as err:
        tr.train(data, 8, callback=arm)
    msg = str(err.value)
    assert "iteration 5" in msg and "D64" in msg and "nan" in msg and "untouched" in msg
    assert "iteration 4" in msg  # which checkpoint was kept
    digest = hashlib.sha256(latest.read_bytes()).hexdigest()
    assert torch.load(latest, weights_only=True)["iteration"] == 4
    assert sorted(p.name for p in latest.parent.iterdir()) == [
        "generator_ema_0000002.pt", "generator_ema_0000004.pt", "latest.pt"]
    assert hashlib.sha256(latest.read_bytes()).hexdigest() == digest
    # the poisoned loss never reached the weights
    assert all(torch.isfinite(p).all() for d in tr.discriminators for p in d.parameters())


def test_huge_learning_rate_is_caught(data, tmp_path):
    tr = make(smoke_cfg(lr=1e30, relation_supervisor=False), tmp_path, rs=False)
    with pytest.raises(GanDivergenceError, match=r"diverged at iteration \d+: (loss|weight) "):
        tr.train(data, 5)
    assert not (tmp_path / "checkpoints/latest.pt").exists()


def test_resume_refuses_other_settings_and_rs_needs_an_extractor(data, tmp_path):
    make(smoke_cfg(relation_supervisor=False), tmp_path, rs=False).train(data, 1)
    with pytest.raises(ValueError, match="gan.gf_dim"):
        make(smoke_cfg(relation_supervisor=False, gf_dim=8), tmp_path, rs=False).train(data, 2)
    with pytest.raises(ValueError, match="feature_extractor"):
        make(smoke_cfg(), tmp_path / "x", rs=False)
    with pytest.raises(ValueError, match="fewer than gan.batch_size"):
        make(smoke_cfg(batch_size=16), tmp_path / "y").train(data, 1)


def test_adversarial_rs_mode_trains(data, tmp_path):
    tr = make(smoke_cfg(rs_mode="adversarial", dense=False), tmp_path)
    out = tr.train(data, 2)
    assert out["iterations"] == 2 and set(out["final_losses"]) >= {"RS", "G_RS"}


def test_training_set_from_an_image_caption_dataset(tmp_path):
    from s2i_lib.data.build import build_toy_dataset
    from s2i_lib.data.torch_datasets import ImageCaptionDataset
    from s2i_lib.gan import GanTrainingSet

    build_toy_dataset(tmp_path / "birds", "toybirds", 64, images_per_class=2, seed=0, n_train_classes=2,
                      n_test_classes=1, workers=1)
    ds = ImageCaptionDataset(tmp_path / "birds", "train", sizes=(16, 32, 64), seed=0)
    emb = torch.nn.functional.normalize(torch.randn(len(ds), 10, EMBED), dim=-1)
    data = GanTrainingSet.from_image_caption_dataset(ds, emb.numpy())
    assert data.load_size == 76 and len(data) == 4 and data.stage_sizes == [16, 32, 64]
    item = data[1]
    assert [tuple(x.shape) for x in item["images"]] == [(3, 16, 16), (3, 32, 32), (3, 64, 64)]
    assert item["class_id"] == int(ds.class_ids[1])
    assert any(torch.equal(item["embedding"], e) for e in emb[1])
    tr = make(smoke_cfg(), tmp_path / "run")
    batch = tr.make_sampler(data).next_batch()
    assert -1 <= batch.real[-1].min() < batch.real[-1].max() <= 1
    assert (ds.class_ids[batch.index] == batch.class_id).all()
    assert tr.train(data, 2)["iterations"] == 2
