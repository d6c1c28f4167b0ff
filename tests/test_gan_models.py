"""The GAN's networks: paper-size parameter counts, shapes at every profile, the dense skip, the
CA and KL, the initialisation, the discriminator heads, the relation supervisor and its labels,
the frozen feature extractor, and the batch sampler's wrong/similar draws."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from s2i_lib.config import load_config
from s2i_lib.gan import (GLU, ConditioningAugmentation, Discriminator, FrozenFeatureExtractor, Generator,
                         GanBatchSampler, GanTrainingSet, RelationSupervisor, ResBlock, count_parameters,
                         discriminators_from_config, kl_loss, relation_generator_loss,
                         relation_supervisor_loss, synthetic_training_set, tiny_feature_extractor)
from s2i_lib.gan.discriminator import image_encoder


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _close(n: int, millions: float, tol: float = 0.01) -> bool:
    return abs(n / 1e6 - millions) <= tol * millions


# ------------------------------------------------------------------------- paper sizes
def test_paper_parameter_counts_match_the_reference_hand_counts():
    cfg = load_config("paper_cub").gan
    with torch.device("meta"):  # no memory, no 30 s of orthogonal init
        g = Generator.from_config(cfg, 1024)
        ds = discriminators_from_config(cfg)
    counts = {"G": count_parameters(g), "CA": count_parameters(g.ca),
              "F0+G0": count_parameters(g.initial) + count_parameters(g.heads[0]),
              "F1+G1": count_parameters(g.stages[0]) + count_parameters(g.heads[1]),
              "F2+G2": count_parameters(g.stages[1]) + count_parameters(g.heads[2]),
              "D64": count_parameters(ds[0]), "D128": count_parameters(ds[1]),
              "D256": count_parameters(ds[2])}
    ref = {"G": 21.29, "CA": 0.52, "F0+G0": 20.08, "F1+G1": 0.52, "F2+G2": 0.17,
           "D64": 5.72, "D128": 18.83, "D256": 71.27}
    for k, v in ref.items():
        assert _close(counts[k], v, tol=0.01 if v > 1 else 0.03), (k, counts[k], v)
    # the first Linear (228 -> 32768, no bias) and the first up-block, as counted by hand
    assert g.initial.fc[0].weight.shape == (32768, 228) and g.initial.fc[0].bias is None
    assert _close(count_parameters(g.initial.up[0]), 9.44)
    assert g.initial.seed_channels == 1024


def test_paper_discriminator_layouts():
    d256 = image_encoder(256, 64)
    convs = [m for m in d256.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (3, 64, 4, 2), (64, 128, 4, 2), (128, 256, 4, 2), (256, 512, 4, 2),
        (512, 1024, 4, 2), (1024, 2048, 4, 2), (2048, 1024, 3, 1), (1024, 512, 3, 1)]
    assert all(c.bias is None for c in convs)
    assert not isinstance(d256[1], nn.BatchNorm2d)  # no BN after the first conv


# ------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_generator_and_discriminators_at_the_small_profiles(profile):
    cfg = load_config(profile).gan
    torch.manual_seed(0)
    g = Generator.from_config(cfg, 48)
    ds = discriminators_from_config(cfg)
    z, e = torch.randn(3, cfg.z_dim), torch.randn(3, 48)
    images, mu, logvar = g(z, e)
    assert [tuple(x.shape) for x in images] == [(3, 3, s, s) for s in cfg.stage_sizes]
    assert all(x.abs().max() <= 1 for x in images)
    assert mu.shape == logvar.shape == (3, cfg.condition_dim)
    # widths: h0 has gf_dim channels from a gf_dim * 2**log2(s0/4) seed; later stages halve
    assert g.initial.seed_channels == cfg.gf_dim * cfg.stage_sizes[0] // 4
    assert [h.conv.in_channels for h in g.heads] == [cfg.gf_dim, cfg.gf_dim // 2, cfg.gf_dim // 4]
    for d, x in zip(ds, images):
        assert d.encode(x).shape == (3, cfg.df_dim * 8, 4, 4)  # 16 px too: fewer halvings
        cond, uncond = d(x, mu)
        assert cond.shape == uncond.shape == (3,)
        p_cond, p_uncond = d.probabilities(x, mu)
        assert torch.allclose(p_cond, torch.sigmoid(cond)) and (p_uncond > 0).all() and (p_uncond < 1).all()
    strided = [m for m in ds[0].encode if isinstance(m, nn.Conv2d) and m.stride[0] == 2]
    assert len(strided) == int(math.log2(cfg.stage_sizes[0] // 4))


def test_embedding_dim_is_checked():
    g = Generator(embed_dim=20, stage_sizes=[16, 32, 64], gf_dim=16, z_dim=8, cond_dim=8, res_blocks=1)
    with pytest.raises(ValueError, match=r"\(B, 20\)"):
        g(torch.randn(2, 8), torch.randn(2, 21))


def test_dense_skip_versus_stackgan_stacking():
    kw = dict(embed_dim=16, stage_sizes=[16, 32, 64], gf_dim=16, z_dim=8, cond_dim=8, res_blocks=1)
    dense, plain = Generator(**kw, dense=True), Generator(**kw, dense=False)
    # dense: the up-block sees concat[Res(Joint([c, h])), h] (2 ngf); StackGAN-v2: Res(Joint) (ngf)
    assert [s.up[1].in_channels for s in dense.stages] == [32, 16]
    assert [s.up[1].in_channels for s in plain.stages] == [16, 8]
    # the skip really carries h_{i-1}: with the joint/residual path zeroed out, stage 1 still
    # depends on h0 in the dense generator and not at all in the plain one
    h = torch.randn(2, 16, 16, 16)
    c = torch.randn(2, 8)
    for gen, depends in ((dense, True), (plain, False)):
        stage = gen.stages[0].eval()
        with torch.no_grad():
            for m in list(stage.joint) + list(stage.residual):
                if isinstance(m, nn.Conv2d):
                    m.weight.zero_()
            out1, out2 = stage(h, c), stage(h * 3 + 1, c)
        assert (not torch.allclose(out1, out2)) == depends


# ----------------------------------------------------------------------- small pieces
def test_glu_resblock_and_kl():
    x = torch.randn(2, 6, 3, 3)
    assert torch.equal(GLU()(x), x[:, :3] * torch.sigmoid(x[:, 3:]))
    with pytest.raises(ValueError):
        GLU()(torch.randn(2, 5))
    rb = ResBlock(4)
    nn.init.zeros_(rb.block[-1].weight)  # last BN scale 0: the block is the identity
    assert torch.allclose(rb(x[:, :4]), x[:, :4])
    assert kl_loss(torch.zeros(3, 5), torch.zeros(3, 5)).item() == 0
    mu, lv = torch.randn(3, 5), torch.randn(3, 5)
    assert torch.allclose(kl_loss(mu, lv), -0.5 * (1 + lv - mu ** 2 - lv.exp()).mean())


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_gemm_convolution_equals_nn_conv2d_forward_and_backward(memory_format):
    from s2i_lib.gan import blocks
    torch.manual_seed(0)
    # 8x8 -> 4x4 with a 1024 * 16 reduction: the im2col + one matrix product path
    ours = blocks.Conv2d(1024, 64, 4, 2, 1, bias=True).to(memory_format=memory_format)
    reference = nn.Conv2d(1024, 64, 4, 2, 1, bias=True)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(3, 1024, 8, 8).contiguous(memory_format=memory_format)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, ref = ours(xa), reference(xb)
    assert out.shape == ref.shape == (3, 64, 4, 4)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(ref)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad.contiguous(memory_format=memory_format),
                               rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(ours.bias.grad, reference.bias.grad, rtol=1e-4, atol=1e-4)


def test_batch_norm_gets_its_gradient_in_its_inputs_memory_format():
    from s2i_lib.gan import blocks
    seen = []

    class Probe(torch.autograd.Function):   # hands a standard-layout gradient back, as an upsampling does
        @staticmethod
        def forward(ctx, y):
            return y.clone()

        @staticmethod
        def backward(ctx, g):
            return g.contiguous()

    bn, reference = blocks.BatchNorm2d(4), nn.BatchNorm2d(4)
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = bn(xa)
    ya.register_hook(lambda g: seen.append(g.is_contiguous(memory_format=torch.channels_last)))
    Probe.apply(ya).pow(2).sum().backward()
    Probe.apply(reference(xb)).pow(2).sum().backward()
    assert seen == [True]   # BatchNorm2d's own hook, registered first, ran first and made it channels_last
    torch.testing.assert_close(xa.grad, xb.grad)
    # standard-layout inputs are left alone: no hook, nothing copied
    y = bn(torch.randn(2, 4, 6, 6, requires_grad=True))
    assert y.grad_fn is not None and not y._backward_hooks


def test_conditioning_augmentation():
    ca = ConditioningAugmentation(12, 4)
    assert ca.fc.out_features == 16 and ca.fc.bias is not None
    e, eps = torch.randn(5, 12), torch.randn(5, 4)
    c, mu, logvar = ca(e, eps)
    assert torch.allclose(c, mu + torch.exp(0.5 * logvar) * eps)
    # the unit-norm embedding is rescaled to unit RMS per element, then GLU: mu, then logvar
    x = F.glu(ca.fc(e * 12 ** 0.5), dim=1)
    assert torch.allclose(mu, x[:, :4]) and torch.allclose(logvar, x[:, 4:])
    original = ConditioningAugmentation(12, 4, rescale_embedding=False)   # as the original: as is
    original.load_state_dict(ca.state_dict())
    _, mu0, _ = original(e, eps)
    x0 = F.glu(ca.fc(e), dim=1)
    assert torch.allclose(mu0, x0[:, :4]) and not torch.allclose(mu0, mu)


def test_orthogonal_initialisation():
    torch.manual_seed(0)
    d = Discriminator(16, df_dim=8, cond_dim=4)
    w = d.encode[0].weight.flatten(1)  # (8, 48): orthonormal rows
    assert torch.allclose(w @ w.T, torch.eye(8), atol=1e-5)
    bn = torch.cat([m.weight.detach() for m in d.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(bn.mean().item() - 1) < 0.01 and 0.01 < bn.std().item() < 0.03
    assert all((m.bias == 0).all() for m in d.modules() if isinstance(m, nn.BatchNorm2d))
    rs = RelationSupervisor(10)
    lin = rs.net[0].weight  # (128, 20): orthonormal columns
    assert torch.allclose(lin.T @ lin, torch.eye(20), atol=1e-5) and (rs.net[0].bias == 0).all()


def test_discriminator_conditions_on_mu_in_the_conditional_head_only():
    torch.manual_seed(0)
    d = Discriminator(32, df_dim=8, cond_dim=6).eval()
    x = torch.randn(2, 3, 32, 32)
    c1, u1 = d(x, torch.randn(2, 6))
    c2, u2 = d(x, torch.randn(2, 6))
    assert not torch.allclose(c1, c2) and torch.equal(u1, u2)


def test_projection_term_is_the_inner_product_of_the_condition_and_the_pooled_code():
    torch.manual_seed(0)
    d = Discriminator(16, df_dim=4, cond_dim=6, projection=True).eval()
    x, mu = torch.rand(3, 3, 16, 16) * 2 - 1, torch.randn(3, 6)
    with torch.no_grad():
        cond, uncond = d(x, mu)
        projection, d.project = d.project, None
        concat_only, uncond_plain = d(x, mu)
        d.project = projection
        term = (projection(mu) * d.encode(x).mean((2, 3))).sum(1)
    assert torch.allclose(cond, concat_only + term, atol=1e-5)
    assert term.abs().min() > 1e-4          # it does contribute
    assert torch.equal(uncond, uncond_plain)
    # the paper's discriminators have none (their state dicts are the original's)
    with torch.device("meta"):   # shapes only: the paper's 256 px discriminator is 71 M weights
        paper = discriminators_from_config(load_config("paper_cub").gan)
    assert all(dd.project is None for dd in paper)
    assert not any("project" in k for dd in paper for k in dd.state_dict())
    assert all(dd.project is not None for dd in discriminators_from_config(load_config("default").gan))


def test_match_scores_are_the_projection_term_of_every_image_with_every_condition():
    torch.manual_seed(0)
    d = Discriminator(16, df_dim=4, cond_dim=6, projection=True).eval()
    x, mu = torch.rand(4, 3, 16, 16) * 2 - 1, torch.randn(4, 6)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        cond, uncond, scores = d(x, mu, match=True)
        assert all(torch.equal(a, b) for a, b in zip((cond, uncond), d(x, mu)))   # the same logits
        term = (d.project(mu) * d.encode(x).mean((2, 3))).sum(1)
        _, _, shuffled = d(x, mu[perm], match=True)
    assert scores.shape == (4, 4) and torch.allclose(scores.diagonal(), term, atol=1e-5)
    assert torch.allclose(shuffled, scores[:, perm], atol=1e-5)   # column j = condition j
    with pytest.raises(ValueError, match="d_projection"):
        Discriminator(16, df_dim=4, cond_dim=6, projection=False)(x, mu, match=True)


def test_contrastive_loss_is_low_when_each_image_scores_its_own_condition_highest():
    from s2i_lib.gan.extensions import contrastive_loss
    b = 5
    assert contrastive_loss(torch.zeros(b, b)).item() == pytest.approx(math.log(b))   # no preference
    assert contrastive_loss(10 * torch.eye(b)).item() < 1e-3
    assert contrastive_loss(-10 * torch.eye(b)).item() > math.log(b)                 # own scored lowest
    one_way = torch.eye(b) * 10
    one_way[0, 1] = 20                          # image 0 prefers condition 1: both directions see it
    assert contrastive_loss(one_way).item() == pytest.approx(
        0.5 * (2 * F.cross_entropy(one_way, torch.arange(b)).item()), rel=1e-5)


def test_the_adversarial_losses_are_the_paper_notes_terms_and_the_extensions_add_nothing_when_off():
    from s2i_lib.config import GanConfig
    from s2i_lib.gan import Extensions, bce, contrastive_loss, discriminator_loss, generator_adversarial_loss
    g = torch.Generator().manual_seed(0)
    real, wrong, fake = [(torch.randn(4, generator=g), torch.randn(4, generator=g)) for _ in range(3)]

    def ref(logits, target):   # the original's sigmoid + BCELoss
        return F.binary_cross_entropy(torch.sigmoid(logits), torch.full_like(logits, target)).item()
    six = (ref(real[0], 1) + ref(real[1], 1) + ref(wrong[0], 0) + ref(wrong[1], 1) + ref(fake[0], 0)
           + ref(fake[1], 0))
    assert discriminator_loss(real, wrong, fake).item() == pytest.approx(six, rel=1e-5)
    assert generator_adversarial_loss(fake).item() == pytest.approx(ref(fake[0], 1) + ref(fake[1], 1), rel=1e-5)
    half = bce(torch.zeros(3, dtype=torch.bfloat16), 1.0)
    assert half.dtype == torch.float32 and half.item() == pytest.approx(math.log(2))
    off = Extensions.from_config(GanConfig())
    assert not off.wants_match and off.discriminator_term() == 0 and off.generator_term() == 0
    on, scores = Extensions(contrastive_coeff=2.0), torch.randn(4, 4, generator=g)
    assert on.wants_match
    assert torch.equal(on.discriminator_term(scores), 2.0 * contrastive_loss(scores))
    assert torch.equal(on.generator_term(scores), 2.0 * contrastive_loss(scores))


# ------------------------------------------------------------------ relation supervisor
def test_relation_supervisor_shapes_and_labels():
    torch.manual_seed(0)
    rs = RelationSupervisor(10)
    assert [type(m) for m in rs.net] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert rs.net[0].in_features == 20 and rs.net[0].out_features == 128 and rs.net[3].out_features == 4
    f = {k: torch.randn(6, 10) for k in ("real", "sim", "fake", "wrong")}
    assert rs(f["real"], f["fake"]).shape == (6, 4)

    def expected(fake_label):
        ce = lambda fb, y: F.cross_entropy(rs(f["real"], fb), torch.full((6,), y))
        return ce(f["real"], 0) + ce(f["sim"], 1) + ce(f["fake"], fake_label) + ce(f["wrong"], 2)

    coop = relation_supervisor_loss(rs, f["real"], f["sim"], f["fake"], f["wrong"], "cooperative")
    adv = relation_supervisor_loss(rs, f["real"], f["sim"], f["fake"], f["wrong"], "adversarial")
    assert torch.allclose(coop, expected(1)) and torch.allclose(adv, expected(3))
    assert not torch.allclose(coop, adv)
    g = relation_generator_loss(rs, f["real"], f["fake"])
    assert torch.allclose(g, F.cross_entropy(rs(f["real"], f["fake"]), torch.ones(6, dtype=torch.long)))


def test_frozen_feature_extractor_stays_frozen_and_passes_gradients():
    ext = FrozenFeatureExtractor(tiny_feature_extractor(out_dim=7))
    ext.train()
    assert not ext.training and not ext.extractor.training
    assert not any(p.requires_grad for p in ext.parameters())
    assert ext.feature_dim(32) == 7
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    ext(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- sampling
def test_sampler_draws_wrong_from_other_classes_and_similar_from_the_same_class():
    data = synthetic_training_set(20, [16, 32, 64], 8, n_classes=3, seed=1)
    s = GanBatchSampler(data, batch_size=10, z_dim=4, cond_dim=3, seed=0)
    seen_epochs = set()
    for _ in range(30):
        idx = s.permutation[s.position * 10:(s.position + 1) * 10] if s.position < 2 else None
        b = s.next_batch()
        seen_epochs.add(s.epoch)
        assert [tuple(x.shape) for x in b.real] == [(10, 3, n, n) for n in (16, 32, 64)]
        assert b.similar.shape == (10, 3, 64, 64) and b.embedding.shape == (10, 8)
        if idx is not None:
            assert torch.equal(b.index, idx)
    # wrong/similar over many draws, straight from the index arithmetic
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 20, (4000,), generator=g)
    wrong = s._other_class(idx, torch.rand(4000, generator=g))
    similar = s._same_class(idx, torch.rand(4000, generator=g))
    cls = data.class_ids
    assert (cls[wrong] != cls[idx]).all()
    assert (cls[similar] == cls[idx]).all() and (similar != idx).all()
    assert len(torch.unique(wrong)) == 20 and len(torch.unique(similar)) == 20
    assert seen_epochs == set(range(15))  # 2 batches per epoch, drop_last


def test_sampler_with_rs_features_looks_up_the_real_similar_and_wrong_images_views():
    plain = synthetic_training_set(20, [16, 32, 64], 8, n_classes=3, seed=1)
    plain.augment = False            # centre crops: a batch's wrong images are known from their rows
    table = torch.zeros(20, 3, 2)    # row i, view v holds (i, v)
    table[:, :, 0] = torch.arange(20.0)[:, None]
    table[:, :, 1] = torch.arange(3.0)
    cached = GanTrainingSet(plain.images, plain.class_ids, plain.embeddings, plain.stage_sizes,
                            augment=False, rs_features=table)
    a, s = GanBatchSampler(plain, 10, 4, 3, seed=0).next_batch(), GanBatchSampler(cached, 10, 4, 3, seed=0)
    b = s.next_batch()
    # the draws before the views are those of a set without the table; the similar image is not loaded
    for name in ("index", "z", "eps", "embedding"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert all(torch.equal(x, y) for x, y in zip(a.real + a.wrong, b.real + b.wrong))
    assert a.similar is not None and b.similar is None and a.rs_features is None
    assert b.rs_features.shape == (3, 10, 2)
    rows, cls = b.rs_features[..., 0].long(), plain.class_ids
    assert torch.equal(rows[0], b.index)
    assert (cls[rows[1]] == cls[b.index]).all() and (rows[1] != b.index).all()
    assert torch.equal(plain.centre(rows[2])[-1], b.wrong[-1])     # the wrong image's own features
    views = torch.cat([b.rs_features[..., 1].flatten()] + [s.next_batch().rs_features[..., 1].flatten()
                                                             for _ in range(5)])
    assert set(views.long().tolist()) == {0, 1, 2}
    parts = [GanBatchSampler(cached, 10, 4, 3, seed=0, rank=r, world_size=2).next_batch() for r in (0, 1)]
    assert torch.equal(torch.cat([p.rs_features for p in parts], dim=1), b.rs_features)
    with pytest.raises(ValueError, match=r"rs_features must be \(20, views, d\)"):
        GanTrainingSet(plain.images, plain.class_ids, plain.embeddings, plain.stage_sizes,
                       rs_features=table[:19])


def test_sampler_shards_the_same_global_batch_across_ranks():
    data = synthetic_training_set(16, [16, 32, 64], 8, seed=2)
    whole = GanBatchSampler(data, 8, 4, 3, seed=5).next_batch()
    parts = [GanBatchSampler(data, 8, 4, 3, seed=5, rank=r, world_size=2).next_batch() for r in (0, 1)]
    for name in ("embedding", "index", "z", "eps", "similar"):
        assert torch.equal(torch.cat([getattr(p, name) for p in parts]), getattr(whole, name)), name
    for k in range(3):
        assert torch.equal(torch.cat([p.real[k] for p in parts]), whole.real[k])
        assert torch.equal(torch.cat([p.wrong[k] for p in parts]), whole.wrong[k])
    with pytest.raises(ValueError, match="divisible"):
        GanBatchSampler(data, 8, 4, 3, seed=5, rank=0, world_size=3)
