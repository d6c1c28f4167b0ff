"""Notebook 03's helpers: shapes and parameter counts, loss and sample plots, slerp and
interpolation, colour-word swaps on grammar captions, and the colour experiment end to end with
small random models and a real TTS voice."""
import math

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

matplotlib.use("Agg")

from s2i_lib.config import GanConfig, load_config
from s2i_lib.data.captions import make_captions
from s2i_lib.data.layout import ImageRecord
from s2i_lib.gan import ConditioningAugmentation, Generator, count_parameters
from s2i_lib.reports import gan as report
from s2i_lib import inference
from s2i_lib.inference import SpeechToImage
from s2i_lib.sen.speech_encoder import SpeechEncoder

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

SMOKE = load_config("smoke")


def _record(captions, mentions, key="c/x"):
    return ImageRecord(key=key, class_name="c", class_id=0, split="test", captions=tuple(captions),
                       mentions=None if mentions is None else tuple(mentions))


# ------------------------------------------------------------------------------ architecture
def test_stage_shapes_follow_the_forward_pass_and_remove_their_hooks():
    g = Generator.from_config(SMOKE.gan, 12)
    g.train()
    table = report.stage_shapes(g, batch=3)
    shapes = table["output shape"].tolist()
    assert shapes[0] == (3, SMOKE.gan.condition_dim)                       # c
    heads = table[table["block"].str.startswith("image head")]["output shape"].tolist()
    assert heads == [(3, 3, s, s) for s in SMOKE.gan.stage_sizes]
    for stage in ("2", "3"):
        rows = table[table["stage"] == stage].set_index("block")["output shape"]
        residual, skip = rows["residual blocks"], rows["concat[residual out, h] (the dense skip)"]
        assert skip[1] == 2 * residual[1] and skip[2:] == residual[2:]
    assert table["parameters"].sum() == count_parameters(g)   # every parameter counted once
    assert g.training                                          # mode restored
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in g.modules())


def test_stage_shapes_without_the_dense_skip_has_no_concat_row():
    cfg = GanConfig(**{**SMOKE.gan.__dict__, "dense": False})
    table = report.stage_shapes(Generator.from_config(cfg, 12))
    assert not table["block"].str.contains("dense skip").any()
    assert table["parameters"].sum() == count_parameters(Generator.from_config(cfg, 12))


def test_paper_parameter_counts_and_the_relation_supervisor_formula():
    counts = report.parameter_counts(GanConfig(), 1024)
    assert abs(counts["G total"] / 1e6 - 21.29) < 0.02                # the hand count of docs/paper_notes.md §6.2
    assert abs(counts["D stage 3"] / 1e6 - 71.27) < 0.02
    # Linear(2048, 128) + BN(128) + Linear(128, 4)
    assert counts["relation supervisor"] == 2048 * 128 + 128 + 2 * 128 + 128 * 4 + 4
    parts = [v for k, v in counts.items() if k.startswith("G: ")]
    assert sum(parts) == counts["G total"]
    off = GanConfig(relation_supervisor=False)
    assert report.parameter_counts(off, 1024)["relation supervisor"] == 0
    table = report.parameter_table({"paper": (GanConfig(), 1024), "smoke": (SMOKE.gan, 64)})
    assert table.loc["stage sizes (px)", "paper"] == "64/128/256"
    assert table.loc["G total", "paper"] == f"{counts['G total']:,}"


def test_plot_conditioning_draws_one_cloud_per_embedding_around_mu():
    ca = ConditioningAugmentation(embed_dim=8, cond_dim=2)
    with torch.no_grad():   # mu near (3, -3): far from the prior's centre, where a wrong cloud would sit
        ca.fc.bias[:2] = torch.tensor([3.0, -3.0])
        ca.fc.bias[4:6] = 8.0
    phi = F.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    fig = report.plot_conditioning(ca, phi, n=500)
    clouds = fig.axes[0].collections
    mu, logvar = ca.encode(phi)
    assert len(clouds) == 3
    for cloud, m, lv in zip(clouds, mu.detach(), logvar.detach()):
        points = torch.as_tensor(np.asarray(cloud.get_offsets()), dtype=torch.float32)
        assert torch.allclose(points.mean(0), m, atol=4 * (0.5 * lv).exp().max() / 500 ** 0.5)
    with pytest.raises(ValueError, match="cond_dim=4"):
        report.plot_conditioning(ConditioningAugmentation(8, 4), phi)


def test_plot_trained_conditioning_histograms_sigma_and_projects_mu_by_species():
    torch.manual_seed(0)
    ca = ConditioningAugmentation(embed_dim=8, cond_dim=6)
    emb = F.normalize(torch.randn(30, 8), dim=1)
    classes = np.repeat(["a", "b", "c", "d", "e", "f"], 5)
    fig = report.plot_trained_conditioning(ca, emb, classes, n_species=4, n=200)
    ax_sigma, ax_mu = fig.axes
    counts = sum(p.get_height() for p in ax_sigma.patches)
    assert counts == 30 * 6                                              # every caption x dimension
    assert [line.get_xdata()[0] for line in ax_sigma.lines] == [1.0]    # the prior's sigma
    clouds = [np.asarray(c.get_offsets()) for c in ax_mu.collections]
    assert [len(c) for c in clouds] == [200, 5, 5, 5, 5]                 # one caption's c, then 4 species' mu
    assert [p.radius for p in ax_mu.patches] == [1, 2]
    # PCA of the shown species' mu: the two axes keep the two largest singular values' share of spread
    with torch.no_grad():
        mu, _ = ca.encode(emb[:20])
    singular = np.linalg.svd(mu.numpy() - mu.numpy().mean(0), compute_uv=False)
    assert (np.concatenate(clouds[1:]) ** 2).sum() == pytest.approx((singular[:2] ** 2).sum(), rel=1e-4)
    # the samples of c sit around that caption's projected mu (the first caption of species "a")
    assert clouds[0].mean(0) == pytest.approx(clouds[1][0], abs=0.3)
    with pytest.raises(ValueError, match="expected embeddings"):
        report.plot_trained_conditioning(ca, emb[:, :5], classes)
    with pytest.raises(ValueError, match="one class per embedding"):
        report.plot_trained_conditioning(ca, emb, classes[:10])
    with pytest.raises(ValueError, match="cond_dim=1"):
        report.plot_trained_conditioning(ConditioningAugmentation(8, 1), emb, classes)


# ------------------------------------------------------------------------------ training run
HISTORY = {"every": 10, "records": [
    {"iteration": 10 * i, "D16": 4.0 - i, "D32": 4.1, "D64": 3.9, "RS": 6.0, "G16": 1.0, "G32": 1.1,
     "G64": 1.2, "G_RS": 1.3, "KL": 0.01, "G": 7.0} for i in (1, 2, 3)]}


def test_plot_losses_puts_each_curve_in_its_panel():
    fig = report.plot_losses(HISTORY)
    labels = [[line.get_label() for line in ax.lines] for ax in fig.axes]
    assert labels == [["D16", "D32", "D64"], ["G16", "G32", "G64", "G_RS", "G"], ["RS"], ["KL"]]
    assert list(fig.axes[0].lines[0].get_ydata()) == [3.0, 2.0, 1.0]
    assert list(fig.axes[0].lines[0].get_xdata()) == [10, 20, 30]
    with pytest.raises(ValueError, match="no records"):
        report.plot_losses({"every": 10, "records": []})


def _uniform_rs(n_classes=4):
    """A relation supervisor whose logits are all 0 (its last layer zeroed): uniform over its classes."""
    from s2i_lib.gan import RelationSupervisor
    rs = RelationSupervisor(3, n_classes=n_classes)
    torch.nn.init.zeros_(rs.net[-1].weight), torch.nn.init.zeros_(rs.net[-1].bias)
    return rs


def test_chance_losses_are_the_loss_functions_on_chance_inputs():
    from s2i_lib.gan import (contrastive_loss, discriminator_loss, generator_adversarial_loss, kl_loss,
                             relation_generator_loss, relation_supervisor_loss)
    gan = SMOKE.gan
    chance = report.chance_losses(gan)
    half = torch.zeros(5)   # logits 0: probability 0.5
    assert chance["D"] == pytest.approx(float(discriminator_loss((half, half), (half, half), (half, half))))
    assert chance["D"] == pytest.approx(6 * math.log(2))
    assert chance["G_adv"] == pytest.approx(float(generator_adversarial_loss((half, half))))
    f = torch.randn(7, 3)
    with torch.no_grad():
        rs = _uniform_rs()
        assert chance["RS"] == pytest.approx(float(relation_supervisor_loss(rs, f, f, f, f)), abs=1e-6)
        assert chance["G_RS"] == pytest.approx(float(relation_generator_loss(rs, f, f)), abs=1e-6)
    assert chance["RS"] == pytest.approx(4 * math.log(4))
    assert chance["KL"] == float(kl_loss(torch.zeros(2, 3), torch.zeros(2, 3))) == 0.0
    assert chance["G"] == pytest.approx(3 * chance["G_adv"] + gan.rs_coeff * chance["G_RS"])
    # the contrastive extension adds its InfoNCE of equal scores, log B, to D and to each G term
    with_it = report.chance_losses(GanConfig(**{**gan.__dict__, "contrastive_coeff": 2.0}), batch_size=6)
    equal = float(contrastive_loss(torch.zeros(6, 6)))
    assert equal == pytest.approx(math.log(6))
    assert with_it["D"] == pytest.approx(chance["D"] + 2 * equal)
    assert with_it["G_adv"] == pytest.approx(chance["G_adv"] + 2 * equal)
    # without the RS its term leaves the total; the adversarial RS mode still has four pair types
    no_rs = report.chance_losses(GanConfig(**{**gan.__dict__, "relation_supervisor": False}))
    assert no_rs["G"] == pytest.approx(3 * chance["G_adv"])
    assert report.chance_losses(GanConfig(**{**gan.__dict__, "rs_mode": "adversarial"}))["RS"] == pytest.approx(
        chance["RS"])


def test_plot_losses_draws_a_chance_line_in_every_panel():
    chance = report.chance_losses(SMOKE.gan)
    fig = report.plot_losses(HISTORY, SMOKE.gan)
    lines = [{line.get_label(): line.get_ydata()[0] for line in ax.lines if line.get_label().startswith("chance")}
             for ax in fig.axes]
    assert lines[0] == {"chance": pytest.approx(chance["D"])}
    # one line for the per-term curves (2 log 2 = log 4: they coincide), one for the weighted total
    assert lines[1] == {"chance (G16, G32, G64, G_RS)": pytest.approx(chance["G_adv"]),
                        "chance (G)": pytest.approx(chance["G"])}
    assert lines[2] == {"chance": pytest.approx(chance["RS"])}
    assert lines[3] == {"chance": 0.0}
    assert all("chance" in "".join(t.get_text() for t in ax.get_legend().get_texts()) for ax in fig.axes)


def test_sample_grids_first_and_last(tmp_path):
    with pytest.raises(FileNotFoundError, match="samples"):
        report.sample_grid_paths(tmp_path)
    (tmp_path / "samples").mkdir()
    for it in (20, 10, 30):
        Image.new("RGB", (8 * 66, 4 * 66 + 2)).save(tmp_path / "samples" / f"iter_{it:07d}.png")
    fig = report.show_sample_grids(tmp_path, [16, 32, 64])
    assert [ax.get_title() for ax in fig.axes] == ["iteration 10", "iteration 30"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        "real", "stage 1 (16 px)", "stage 2 (32 px)", "stage 3 (64 px)"]


def test_plot_grid_checks_its_input():
    fig = report.plot_grid(np.zeros((2, 3, 8, 8, 3), np.uint8), ["a", "b"], ["x", "y", "z"])
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == "x" and fig.axes[3].get_ylabel() == "b"
    with pytest.raises(ValueError, match="rows, columns"):
        report.plot_grid(np.zeros((3, 8, 8, 3), np.uint8))


# ------------------------------------------------------------------------------ interpolation
def test_slerp_known_answers():
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    path = report.slerp(a, b, [0.0, 0.5, 1.0])
    assert torch.allclose(path[0], a) and torch.allclose(path[2], b)
    assert torch.allclose(path[1], torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2))
    t = torch.linspace(0, 1, 7)
    c = F.normalize(torch.tensor([1.0, 2.0, -1.0]), dim=0)
    path = report.slerp(a, c, t)
    assert torch.allclose(path.norm(dim=1), torch.ones(7), atol=1e-6)
    angles = torch.arccos((path @ a).clamp(-1, 1))
    assert torch.allclose(angles, t * angles[-1], atol=1e-5)                 # constant speed
    same = report.slerp(a, a + 1e-9, [0.3])                                  # linear fallback
    assert torch.allclose(same[0], a)
    with pytest.raises(ValueError, match="opposite"):
        report.slerp(a, -a, [0.5])


class _RecordingGenerator:
    """Stands in for SpeechToImage.generate: keeps the embeddings it was given."""

    def generate(self, embeddings, n=1, seed=0):
        self.embeddings, self.n, self.seed = torch.as_tensor(embeddings), n, seed
        return np.zeros((len(embeddings), n, 4, 4, 3), np.uint8)


def test_interpolate_walks_from_one_embedding_to_the_other():
    a = F.normalize(torch.randn(1, 16, generator=torch.Generator().manual_seed(1)), dim=1)
    b = F.normalize(torch.randn(16, generator=torch.Generator().manual_seed(2)), dim=0)
    stub = _RecordingGenerator()
    out = report.interpolate(stub, a, b, steps=5, seed=3, n=2)
    assert out.shape == (5, 2, 4, 4, 3) and stub.seed == 3 and stub.n == 2
    assert torch.allclose(stub.embeddings[0], a[0], atol=1e-6)
    assert torch.allclose(stub.embeddings[-1], b, atol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        report.interpolate(stub, a, b, steps=1)


# ------------------------------------------------------------------------------ colour captions
def test_find_colour_caption_skips_ambiguous_captions_and_prefers_the_first_attribute():
    shared = _record(["a bird with black wings and a black crown"],
                     [{"wing_color": "black", "crown_color": "black"}], key="a/0")
    belly = _record(["a bird with a yellow belly"], [{"belly_color": "yellow"}], key="b/0")
    wings = _record(["a small bird", "a bird with dark brown wings"],
                    [{"size": "small"}, {"wing_color": "brown"}], key="c/0")
    r, caption, mention, attribute = report.find_colour_caption([shared, belly, wings])
    assert (r.key, caption, mention, attribute) == ("c/0", "a bird with dark brown wings",
                                                    {"wing_color": "brown"}, "wing_color")
    assert report.find_colour_caption([shared, belly])[2:] == ({"belly_color": "yellow"}, "belly_color")
    real = _record(["this bird is red and red", "a bird with a white belly"], None, key="r/0")
    assert report.find_colour_caption([real])[1:] == ("a bird with a white belly", {"colour": "white"},
                                                      "colour")
    with pytest.raises(ValueError, match="no caption"):
        report.find_colour_caption([shared])


def test_find_colour_caption_on_grammar_captions():
    attrs = {"crown_color": "red", "belly_color": "yellow", "wing_color": "brown", "beak_color": "grey",
             "beak_length": "short", "size": "small", "wing_bars": "white"}
    captions = make_captions("toybirds", attrs, seed=0, class_id=3, index=0, n=10)
    records = [_record([c.text for c in captions], [c.mentions for c in captions])]
    r, caption, mention, attribute = report.find_colour_caption(records)
    assert attribute == "wing_color" and mention["wing_color"] == "brown"
    assert caption == next(c.text for c in captions if "wing_color" in c.mentions)


# ------------------------------------------------------------------------------ colour experiment
class _ToneVoice:
    """A deterministic stand-in for a TTS voice (real eSpeak and Piper output differs by a few
    samples from call to call): a tone whose pitch comes from the words and whose length from the
    prosody parameters, and a record of the parameters it was given."""

    def __init__(self):
        self.params = []

    def synthesize(self, text, params):
        self.params.append(dict(params))
        t = np.arange(int(params["rate"]) * 40 + 20 * len(text)) / 16000
        return np.sin(2 * np.pi * (200 + 7 * (sum(map(ord, text)) % 300)) * t).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_s2i():
    torch.manual_seed(0)
    cfg = SMOKE
    encoder = SpeechEncoder.from_config(cfg.sen, cfg.speech.n_mels).eval()
    generator = Generator.from_config(cfg.gan, cfg.sen.embed_dim).eval()
    return SpeechToImage(encoder, generator, cfg.speech, torch.device("cpu"))


@pytest.fixture()
def tone_voice(monkeypatch):
    voice = _ToneVoice()
    # "espeak:..." so that sample_params draws eSpeak's rate/pitch/range; the loaded-voice cache
    # hands out the stand-in instead of the real eSpeak
    monkeypatch.setitem(inference._SYNTHS, ("espeak:en-us+m7", SMOKE.speech.sample_rate), voice)
    return voice


def test_speak_with_prosody_of_uses_the_reference_rate_and_pitch(tiny_s2i, tone_voice):
    a, b = "a bird with brown wings", "a bird with blue wings"
    tiny_s2i.speak(a, "espeak:en-us+m7")
    tiny_s2i.speak(b, "espeak:en-us+m7")
    wave = tiny_s2i.speak_with_prosody_of(b, "espeak:en-us+m7", reference=a)
    said_a, said_b, b_like_a = tone_voice.params
    assert b_like_a == said_a and said_b != said_a
    assert np.array_equal(wave, tone_voice.synthesize(b, said_a))


def test_colour_experiment_same_noise_per_seed(tiny_s2i, tone_voice):
    caption = "a small bird with dark brown wings"
    mention = {"size": "small", "wing_color": "brown"}
    captions, waves, images = report.colour_experiment(tiny_s2i, caption, mention, "wing_color",
                                                       ["blue", "red"], "espeak:en-us+m7", seeds=[0, 1, 2])
    size = SMOKE.gan.stage_sizes[-1]
    assert captions == [caption, "a small bird with blue wings", "a small bird with red wings"]
    assert images.shape == (3, 3, size, size, 3) and images.dtype == np.uint8
    assert len({tuple(sorted(p.items())) for p in tone_voice.params}) == 1   # said the same way
    assert len(waves) == 3 and len(waves[1]) != len(waves[0])
    emb = tiny_s2i.embed([tiny_s2i.features(w) for w in waves])
    for j, seed in enumerate([0, 1, 2]):     # column j: every caption with seed j's noise
        assert np.array_equal(images[:, j], tiny_s2i.generate(emb, n=1, seed=seed)[:, 0])
    assert not np.array_equal(images[0, 0], images[1, 0])   # another colour word: another image
    assert not np.array_equal(images[0, 0], images[0, 1])   # another seed: other noise
    with pytest.raises(ValueError, match="cannot set wing_color to 'brown'"):
        report.colour_experiment(tiny_s2i, caption, mention, "wing_color", ["brown"], "espeak:en-us+m7", [0])


def test_colour_change_table_known_differences():
    images = np.zeros((3, 2, 4, 4, 3), np.uint8)
    images[1] = 10          # caption 1: every pixel 10 away from caption 0
    images[0, 1] = 30       # caption 0, seed 1: 30 away from seed 0
    table = report.colour_change_table(["brown", "blue", "red"], images)
    values = table.iloc[:, 0].tolist()
    # blue vs brown: seed 0 differs by 10, seed 1 by |10 - 30| = 20; red vs brown: 0 and 30
    assert values == [15.0, 15.0, 30.0]
    assert table.index[-1] == "brown: one seed vs the next"
    with pytest.raises(ValueError, match="captions"):
        report.colour_change_table(["brown"], images)
