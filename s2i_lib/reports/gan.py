"""Tables and plots of the generation stage for notebook 03: the generator's shapes and parameter
counts, the conditioning augmentation (untrained and trained), the loss curves (with their chance
levels) and sample grids of a ``gan`` run, image grids, interpolation between two speech
embeddings, and the colour experiment (one colour word of a caption changed, same noise)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from PIL import Image

from ..config import GanConfig
from ..data.captions import swap_colour
from ..data.layout import ImageRecord
from ..data.toy_common import COLOR_NAMES
from ..gan.blocks import count_parameters
from ..gan.conditioning import kl_loss
from ..gan.discriminator import discriminators_from_config
from ..gan.extensions import Extensions
from ..gan.generator import Generator
from ..gan.losses import discriminator_loss, generator_adversarial_loss
from ..gan.relation_supervisor import RelationSupervisor, relation_generator_loss, relation_supervisor_loss


# ------------------------------------------------------------------------------ architecture
def stage_shapes(generator: Generator, batch: int = 2, seed: int = 0) -> pd.DataFrame:
    """Run ``generator`` on ``batch`` random embeddings and list the output shape and parameter
    count of every block, stage by stage (forward hooks; the dense skip is the input of each
    later stage's up-block)."""
    g = torch.Generator().manual_seed(seed)
    rows: list[dict] = []

    def record(stage: str, block: str, module: nn.Module, pre: bool = False):
        def hook(_module, inputs, output=None):
            x = inputs[0] if pre else output
            if isinstance(x, tuple):   # the CA returns (c, mu, logvar)
                x = x[0]
            rows.append({"stage": stage, "block": block, "output shape": tuple(x.shape),
                         "parameters": 0 if pre else count_parameters(module)})
        return module.register_forward_pre_hook(hook) if pre else module.register_forward_hook(hook)

    hooks = [record("CA", "Linear, GLU, sample c = mu + sigma * eps", generator.ca),
             record("1", "Linear([c, z]), BN, GLU (reshaped to a 4x4 seed below)", generator.initial.fc)]
    hooks += [record("1", f"up-block {i + 1}", m) for i, m in enumerate(generator.initial.up)]
    hooks.append(record("1", "image head (conv, tanh)", generator.heads[0]))
    for i, (stage, head) in enumerate(zip(generator.stages, generator.heads[1:])):
        name = str(i + 2)
        hooks += [record(name, "joint conv on [c tiled, h]", stage.joint),
                  record(name, "residual blocks", stage.residual)]
        if stage.dense:
            hooks.append(record(name, "concat[residual out, h] (the dense skip)", stage.up, pre=True))
        hooks += [record(name, "up-block", stage.up), record(name, "image head (conv, tanh)", head)]
    z = torch.randn(batch, generator.z_dim, generator=g)
    emb = torch.nn.functional.normalize(torch.randn(batch, generator.embed_dim, generator=g), dim=1)
    was_training = generator.training
    try:
        generator.eval()
        with torch.no_grad():
            generator(z, emb)
    finally:
        generator.train(was_training)
        for h in hooks:
            h.remove()
    return pd.DataFrame(rows)


def parameter_counts(gan: GanConfig, embed_dim: int, feat_dim: int | None = None) -> dict[str, int]:
    """Parameters of G (by part), of every discriminator and of the relation supervisor (whose
    features are ``feat_dim``-d: the SEN image embedding, ``embed_dim`` unless given). Built on
    the meta device: no memory, no initialisation, so the paper's 256 px sizes count instantly."""
    with torch.device("meta"):
        g = Generator.from_config(gan, embed_dim)
        ds = discriminators_from_config(gan)
        rs = RelationSupervisor(feat_dim or embed_dim) if gan.relation_supervisor else None
    counts = {"G: conditioning augmentation": count_parameters(g.ca),
              "G: stage 1 (+ image head)": count_parameters(g.initial) + count_parameters(g.heads[0])}
    for i, (stage, head) in enumerate(zip(g.stages, g.heads[1:])):
        counts[f"G: stage {i + 2} (+ image head)"] = count_parameters(stage) + count_parameters(head)
    counts["G total"] = count_parameters(g)
    for i, d in enumerate(ds):
        counts[f"D stage {i + 1}"] = count_parameters(d)
    counts["relation supervisor"] = count_parameters(rs) if rs is not None else 0
    return counts


def parameter_table(configs: dict[str, tuple[GanConfig, int]]) -> pd.DataFrame:
    """One column of ``parameter_counts`` per named ``(GanConfig, embed_dim)``, plus the stage
    sizes of each."""
    columns = {}
    for name, (gan, embed_dim) in configs.items():
        counts = parameter_counts(gan, embed_dim)
        columns[name] = {"stage sizes (px)": "/".join(str(s) for s in gan.stage_sizes),
                         **{k: f"{v:,}" for k, v in counts.items()}}
    return pd.DataFrame(columns)


def plot_conditioning(ca: nn.Module, embeddings: torch.Tensor, n: int = 300, seed: int = 0) -> plt.Figure:
    """Samples ``c = mu + sigma * eps`` of a 2-d conditioning augmentation ``ca`` for each of
    ``embeddings`` (B, D): one cloud per embedding around its ``mu`` (cross), over the N(0, I)
    prior that the KL term pulls every cloud towards (circles at 1 and 2 sigma)."""
    if ca.cond_dim != 2:
        raise ValueError(f"plot_conditioning draws a 2-d condition, this CA has cond_dim={ca.cond_dim}")
    g = torch.Generator().manual_seed(seed)
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    for r in (1, 2):
        ax.add_patch(plt.Circle((0, 0), r, fill=False, ls=":", lw=1.5, color="black", zorder=3))
    with torch.no_grad():
        for i, phi in enumerate(embeddings):
            eps = torch.randn(n, 2, generator=g)
            c, mu, _ = ca(phi[None].expand(n, -1), eps)
            dots = ax.scatter(c[:, 0], c[:, 1], s=4, alpha=0.4, label=f"embedding {i}")
            ax.plot(mu[0, 0], mu[0, 1], "x", ms=10, mew=2, color=dots.get_facecolor()[0][:3])
    ax.set(aspect="equal", xlabel="c[0]", ylabel="c[1]", title="samples of c per embedding (x: mu)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _principal_axes(points: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The mean of ``points`` (N, d) and their first ``k`` principal axes as columns (d, k)."""
    mean = points.mean(0)
    _, _, vt = np.linalg.svd(points - mean, full_matrices=False)
    return mean, vt[:k].T


def plot_trained_conditioning(ca: nn.Module, embeddings: np.ndarray | torch.Tensor, classes: Sequence,
                              n_species: int = 5, n: int = 300, seed: int = 0) -> plt.Figure:
    """What a trained CA does with the ``embeddings`` (N, D) of captions of species ``classes`` (N,):

    (a) a histogram of sigma = exp(logvar / 2) over every caption and condition dimension, against
        the prior's sigma = 1 that the KL term pulls towards;
    (b) the ``mu`` of the captions of the first ``n_species`` species (by sorted class id),
        projected on the first two principal axes of those ``mu`` (PCA), one colour per species;
        grey, ``n`` samples c = mu + sigma * eps of the first of those captions, projected the same
        way; dotted, the prior N(0, I) seen in that plane (circles of radius 1 and 2 around the
        projected origin: the projection on orthonormal axes of N(0, I) is N(0, I) in 2-d)."""
    if ca.cond_dim < 2:
        raise ValueError(f"a 2-d projection needs cond_dim >= 2, this CA has cond_dim={ca.cond_dim}")
    weight = ca.fc.weight
    x = torch.as_tensor(np.asarray(embeddings), dtype=weight.dtype, device=weight.device)
    classes = np.asarray(classes)
    if x.dim() != 2 or x.shape[1] != ca.embed_dim:
        raise ValueError(f"expected embeddings (N, {ca.embed_dim}), got {tuple(x.shape)}")
    if classes.shape != (len(x),):
        raise ValueError(f"expected one class per embedding ({len(x)}), got shape {classes.shape}")
    with torch.no_grad():
        mu, logvar = (t.float().cpu().numpy() for t in ca.encode(x))
    sigma = np.exp(0.5 * logvar)
    shown = np.unique(classes)[:n_species]
    rows = np.flatnonzero(np.isin(classes, shown))
    if len(rows) < 2:
        raise ValueError("the projection needs at least two embeddings of the shown species")
    mean, axes_2d = _principal_axes(mu[rows])

    fig, (ax_sigma, ax_mu) = plt.subplots(1, 2, figsize=(10.5, 5.2), gridspec_kw={"width_ratios": [1, 1.15]})
    ax_sigma.hist(sigma.ravel(), bins=40, color="tab:blue", alpha=0.8)
    ax_sigma.axvline(1.0, ls="--", color="black", label="the prior's sigma = 1")
    ax_sigma.set(xlabel="sigma (every caption x every condition dimension)", ylabel="count",
                 title=f"sigma of {len(x)} captions x {ca.cond_dim} dimensions", xlim=(0, None))
    ax_sigma.legend(fontsize=7)

    origin = (-mean) @ axes_2d
    for r in (1, 2):
        ax_mu.add_patch(plt.Circle(tuple(origin), r, fill=False, ls=":", lw=1.5, color="black", zorder=3))
    first = rows[0]
    eps = np.random.default_rng(seed).standard_normal((n, ca.cond_dim))
    cloud = (mu[first] + sigma[first] * eps - mean) @ axes_2d
    ax_mu.scatter(cloud[:, 0], cloud[:, 1], s=4, alpha=0.3, color="grey",
                  label=f"{n} samples c of one caption ({shown[0]})")
    for species in shown:
        xy = (mu[classes == species] - mean) @ axes_2d
        ax_mu.scatter(xy[:, 0], xy[:, 1], s=18, alpha=0.85, label=f"mu, {species}")
    ax_mu.set(aspect="equal", xlabel="PC 1 of mu", ylabel="PC 2 of mu",
              title="mu by species (dotted: the prior, 1 and 2 sigma)")
    # below the plot: species names are long, and inside it the legend would hide the points
    ax_mu.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ training run
def loss_records(history: dict | list) -> pd.DataFrame:
    """``loss_history.json`` (``{"every", "records"}``) or its list of records, as a table indexed
    by iteration."""
    records = history["records"] if isinstance(history, dict) else history
    if not records:
        raise ValueError("the loss history has no records (the gan step logged nothing)")
    return pd.DataFrame(records).set_index("iteration")


def chance_losses(gan: GanConfig, batch_size: int | None = None) -> dict[str, float]:
    """The value each logged loss takes when no network knows anything, computed by the library's own
    loss functions on chance inputs (so that it follows the code):

    - ``"D"``: one stage's discriminator with logits 0 (probability 0.5) on every term, plus the
      contrastive extension on a (B, B) matrix of equal scores when ``gan.contrastive_coeff > 0``;
    - ``"G_adv"``: one stage's adversarial term of the generator against such a discriminator;
    - ``"RS"`` and ``"G_RS"``: the relation supervisor with uniform logits over its classes;
    - ``"KL"``: a CA that returns the prior N(0, I) whatever the caption (mu = 0, log sigma^2 = 0);
    - ``"G"``: the generator's total as ``GanTrainer.train_step`` weighs it (``gan.kl_coeff``,
      ``gan.rs_coeff``), over ``len(gan.stage_sizes)`` stages.

    ``batch_size``: B of the contrastive term, the batch of one process (default ``gan.batch_size``;
    under DDP each process's share)."""
    b = int(batch_size or gan.batch_size)
    zeros = torch.zeros(b)
    extensions = Extensions.from_config(gan)
    equal_scores = torch.zeros(b, b) if extensions.wants_match else None
    d = discriminator_loss((zeros, zeros), (zeros, zeros), (zeros, zeros)) + extensions.discriminator_term(equal_scores)
    g_adv = generator_adversarial_loss((zeros, zeros)) + extensions.generator_term(equal_scores)
    with torch.device("meta"):   # only its number of classes is read
        n_classes = RelationSupervisor(1).net[-1].out_features

    def uniform(f_a: torch.Tensor, f_b: torch.Tensor) -> torch.Tensor:   # an RS that knows nothing
        return torch.zeros(len(f_a), n_classes)

    f = torch.zeros(b, 1)
    rs = relation_supervisor_loss(uniform, f, f, f, f, gan.rs_mode)
    g_rs = relation_generator_loss(uniform, f, f)
    kl = kl_loss(torch.zeros(b, gan.condition_dim), torch.zeros(b, gan.condition_dim))
    g = len(gan.stage_sizes) * g_adv + gan.kl_coeff * kl + (gan.rs_coeff * g_rs if gan.relation_supervisor else 0.0)
    # + 0.0: the KL of the prior comes out as -0.0
    return {k: float(v) + 0.0 for k, v in {"D": d, "G_adv": g_adv, "RS": rs, "G_RS": g_rs, "KL": kl, "G": g}.items()}


def _chance_of(column: str, chance: dict[str, float]) -> float | None:
    """The ``chance_losses`` entry of a logged loss column (D16 -> "D", G16 -> "G_adv", ...)."""
    if re.fullmatch(r"D\d+", column):
        return chance["D"]
    if re.fullmatch(r"G\d+", column):
        return chance["G_adv"]
    return chance.get(column)


def _draw_chance(ax: plt.Axes, columns: Sequence[str], chance: dict[str, float]) -> None:
    """A dashed grey line per distinct chance value of ``columns``; its label names the columns it
    is for, unless one line serves them all."""
    groups: dict[float, list[str]] = {}
    for c in columns:
        value = _chance_of(c, chance)
        if value is not None:
            groups.setdefault(round(value, 6), []).append(c)
    for i, (value, cols) in enumerate(groups.items()):
        label = "chance" if cols == list(columns) else f"chance ({', '.join(cols)})"
        ax.axhline(value, ls="--" if i == 0 else ":", lw=1.2, color="grey", label=label, zorder=0)


def plot_losses(history: dict | list, gan: GanConfig | None = None) -> plt.Figure:
    """Four panels: the discriminators (one line per stage), the generator (total and its adversarial
    terms per stage and its RS term), the relation supervisor, and the KL term. With ``gan`` (the
    run's ``GanConfig``), each panel also has a dashed grey line at chance (``chance_losses``)."""
    df = loss_records(history)
    chance = chance_losses(gan) if gan is not None else None
    style = "o-" if len(df) < 20 else "-"
    panels = [("discriminators", [c for c in df if re.fullmatch(r"D\d+", c)]),
              ("generator", [c for c in df if c == "G" or re.fullmatch(r"G\d+|G_RS", c)]),
              ("relation supervisor", [c for c in df if c == "RS"]),
              ("KL (conditioning augmentation)", [c for c in df if c == "KL"])]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    for ax, (title, cols) in zip(axes, panels):
        for c in cols:
            ax.plot(df.index, df[c], style, ms=3, lw=2 if c == "G" else 1, label=c)
        if chance is not None:
            _draw_chance(ax, cols, chance)
        ax.set(title=title, xlabel="iteration")
        if len(ax.get_legend_handles_labels()[1]) > 1:
            ax.legend(fontsize=7)
    axes[0].set_ylabel("loss (mean over the logging window)")
    fig.tight_layout()
    return fig


def sample_grid_paths(gan_dir: str | Path) -> list[Path]:
    """The sample grids the trainer saved (``samples/iter_*.png``), oldest first."""
    paths = sorted((Path(gan_dir) / "samples").glob("iter_*.png"))
    if not paths:
        raise FileNotFoundError(f"no sample grids in {Path(gan_dir) / 'samples'}: rebuild the gan step")
    return paths


def show_sample_grids(gan_dir: str | Path, stage_sizes: Sequence[int]) -> plt.Figure:
    """The first and the last sample grid side by side (rows: real image, then stages 1..3, each
    upsampled to the last size; columns: fixed training captions and noise)."""
    paths = sample_grid_paths(gan_dir)
    paths = [paths[0], paths[-1]] if len(paths) > 1 else paths
    fig, axes = plt.subplots(1, len(paths), figsize=(7.5 * len(paths), 4.2), squeeze=False)
    cell = int(stage_sizes[-1])
    labels = ["real"] + [f"stage {i + 1} ({s} px)" for i, s in enumerate(stage_sizes)]
    for ax, path in zip(axes[0], paths):
        ax.imshow(np.asarray(Image.open(path).convert("RGB")))
        ax.set_title(f"iteration {int(path.stem.split('_')[1])}", fontsize=9)
        ax.set_yticks([2 + r * (cell + 2) + cell / 2 for r in range(len(labels))], labels, fontsize=8)
        ax.set_xticks([])
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ image grids
def plot_grid(images: np.ndarray, row_labels: Sequence[str] = (), col_labels: Sequence[str] = (),
              title: str = "", cell: float = 1.4) -> plt.Figure:
    """(R, C, S, S, 3) uint8 images as an R x C grid, labels on the left and on top."""
    images = np.asarray(images)
    if images.ndim != 5:
        raise ValueError(f"expected (rows, columns, S, S, 3) images, got shape {images.shape}")
    r, c = images.shape[:2]
    fig, axes = plt.subplots(r, c, figsize=(cell * c + (1.6 if row_labels else 0), cell * r + 0.5),
                             squeeze=False)
    for i in range(r):
        for j in range(c):
            ax = axes[i, j]
            ax.imshow(images[i, j], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
            if j == 0 and i < len(row_labels):
                ax.set_ylabel(row_labels[i], fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_stages(stages: Sequence[np.ndarray], real: np.ndarray | None = None, title: str = "") -> plt.Figure:
    """One image per stage (each (S_i, S_i, 3)), shown at the same size without smoothing so that
    the resolutions can be compared; the real image first if given."""
    panels = ([(real, "real image")] if real is not None else []) + [
        (im, f"stage {i + 1}: {im.shape[0]} px") for i, im in enumerate(stages)]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.8))
    for ax, (im, label) in zip(np.atleast_1d(axes), panels):
        ax.imshow(im, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ interpolation
def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Spherical interpolation between the unit vectors ``a`` and ``b`` (D,) at fractions ``t``:
    (len(t), D), every row unit norm, the angle to ``a`` growing linearly with ``t``. Nearly equal
    vectors fall back to linear interpolation (then renormalised); opposite ones have no unique
    great circle and are an error."""
    a = torch.nn.functional.normalize(torch.as_tensor(a, dtype=torch.float64).flatten(), dim=0)
    b = torch.nn.functional.normalize(torch.as_tensor(b, dtype=torch.float64).flatten(), dim=0)
    t = torch.as_tensor(t, dtype=torch.float64)[:, None]
    omega = torch.arccos(torch.clamp(a @ b, -1.0, 1.0))
    if torch.pi - omega < 1e-6:
        raise ValueError("slerp between opposite vectors is undefined (no unique great circle)")
    if omega < 1e-6:
        out = (1 - t) * a + t * b
    else:
        out = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
    return torch.nn.functional.normalize(out, dim=1).float()


def interpolate(s2i, emb_a: torch.Tensor, emb_b: torch.Tensor, steps: int = 7, seed: int = 0,
                n: int = 1) -> np.ndarray:
    """Images along the great circle from ``emb_a`` to ``emb_b`` (two (D,) or (1, D) SEN
    embeddings), ``steps`` points including both ends, the same noise at every point:
    uint8 (steps, n, S, S, 3) from ``s2i`` (a ``SpeechToImage``)."""
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (the two ends), got {steps}")
    path = slerp(emb_a, emb_b, torch.linspace(0, 1, steps))
    return s2i.generate(path, n=n, seed=seed)


# ------------------------------------------------------------------------------ colour experiment
def _another_colour(colour: str) -> str:
    return "red" if colour != "red" else "blue"


def find_colour_caption(records: Sequence[ImageRecord],
                        attributes: Sequence[str] = ("wing_color", "belly_color", "crown_color"),
                        ) -> tuple[ImageRecord, str, dict[str, str], str]:
    """The first caption of ``records`` whose colour word for one of ``attributes`` (tried in this
    order) can be swapped unambiguously (``s2i_lib.data.captions.swap_colour``): returns (record,
    caption, its mentions, attribute). Records without mentions (real datasets) qualify with any
    colour word said once; their mentions are then ``{"colour": <that word>}``."""
    for attribute in attributes:
        for r in records:
            for caption, mention in zip(r.captions, r.mentions or ()):
                colour = mention.get(attribute)
                if colour and swap_colour(caption, mention, attribute, _another_colour(colour)):
                    return r, caption, mention, attribute
    for r in records:
        if r.mentions is None:
            for caption in r.captions:
                for colour in COLOR_NAMES:
                    if swap_colour(caption, {"colour": colour}, "colour", _another_colour(colour)):
                        return r, caption, {"colour": colour}, "colour"
    raise ValueError(f"no caption among {len(records)} records states {', '.join(attributes)} "
                     f"in a colour word said once")


def colour_experiment(s2i, caption: str, mentions: dict[str, str], attribute: str,
                      new_colours: Sequence[str], voice: str, seeds: Sequence[int]
                      ) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """``caption`` and its copies with the colour of ``attribute`` replaced by each of
    ``new_colours``, all spoken by ``voice`` at the same rate and pitch, embedded, and drawn with
    the same noise for each seed: (captions, waveforms, uint8 images (1 + len(new_colours),
    len(seeds), S, S, 3))."""
    captions = [caption]
    for colour in new_colours:
        swapped = swap_colour(caption, mentions, attribute, colour)
        if swapped is None:
            raise ValueError(f"cannot set {attribute} to {colour!r} in {caption!r} (not stated, the "
                             f"same colour, or its colour word said more than once)")
        captions.append(swapped)
    waves = [s2i.speak(caption, voice)] + [s2i.speak_with_prosody_of(c, voice, reference=caption)
                                           for c in captions[1:]]
    emb = s2i.embed([s2i.features(w) for w in waves])
    images = np.stack([s2i.generate(emb, n=1, seed=s)[:, 0] for s in seeds], axis=1)
    return captions, waves, images


def colour_change_table(labels: Sequence[str], images: np.ndarray) -> pd.DataFrame:
    """How much each caption's images differ from the first caption's with the same noise, next to
    how much the first caption's images differ from one noise to the next: mean absolute pixel
    difference (0-255) of ``images`` (captions, seeds, S, S, 3) as ``colour_experiment`` returns."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 5 or x.shape[0] != len(labels) or x.shape[1] < 2:
        raise ValueError(f"expected ({len(labels)} captions, >= 2 seeds, S, S, 3) images, got {x.shape}")
    rows = {f"{label} vs {labels[0]}, same noise": np.abs(x[i] - x[0]).mean()
            for i, label in enumerate(labels) if i > 0}
    rows[f"{labels[0]}: one seed vs the next"] = np.abs(x[0, 1:] - x[0, :-1]).mean()
    return pd.DataFrame({"mean |pixel difference| (0-255)": rows})
