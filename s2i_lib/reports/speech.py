"""Tables and plots of the speech step, for notebook 01 (the notebook narrates, these compute)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..speech.features import frame_params, log_mel, read_audio
from ..speech.synthesis import ERRORS_FILE, MANIFEST_FILE, read_jsonl


def load_manifest(speech_dir: str | Path):
    """``manifest.jsonl`` as a DataFrame (one row per spoken utterance)."""
    import pandas as pd
    path = Path(speech_dir) / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the speech step first "
                                f"(python -m s2i_lib speech --profile P)")
    return pd.DataFrame(read_jsonl(path))


def load_errors(speech_dir: str | Path):
    """``errors.jsonl`` as a DataFrame (one row per refused utterance, with its reason)."""
    import pandas as pd
    path = Path(speech_dir) / ERRORS_FILE
    cols = ["id", "key", "split", "caption_index", "text", "voice", "heldout", "reason", "message"]
    rows = read_jsonl(path) if path.exists() else []
    return pd.DataFrame(rows, columns=cols)


def voice_table(speech_dir: str | Path):
    """One row per voice: backend, held-out or not, utterances per split, hours, mean duration."""
    df = load_manifest(speech_dir)
    per_split = df.pivot_table(index="voice", columns="split", values="id", aggfunc="count",
                               fill_value=0)
    table = df.groupby("voice").agg(backend=("backend", "first"), heldout=("heldout", "first"),
                                    utterances=("id", "count"), hours=("duration", "sum"),
                                    mean_duration_s=("duration", "mean"))
    table["hours"] = (table["hours"] / 3600).round(3)
    table["mean_duration_s"] = table["mean_duration_s"].round(2)
    for split in ("train", "test"):
        table[split] = per_split[split] if split in per_split else 0
    table = table[["backend", "heldout", "train", "test", "utterances", "hours", "mean_duration_s"]]
    return table.sort_values(["heldout", "backend", "voice"]).reset_index()


def plot_durations(speech_dir: str | Path, ax: Any = None):
    """Violin plot of utterance durations per voice (held-out voices in their own colour)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    df = load_manifest(speech_dir)
    df["kind"] = np.where(df["heldout"], "held-out voice", "training voice")
    order = voice_table(speech_dir)["voice"].tolist()
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.45 * len(order) + 1.5))
    sns.violinplot(data=df, y="voice", x="duration", hue="kind", order=order, ax=ax, cut=0,
                   inner="quartile", density_norm="width", dodge=False)
    ax.set_xlabel("duration (s)")
    ax.set_ylabel("")
    ax.set_title(f"{len(df)} spoken captions, {df['duration'].sum() / 3600:.2f} h")
    return ax


def plot_waveform_and_logmel(audio: str | Path | np.ndarray, sample_rate: int = 22050,
                             title: str | None = None, n_mels: int = 40):
    """Waveform, log-mel spectrogram and the CMVN-normalised features S2IGAN's encoder sees."""
    import matplotlib.pyplot as plt
    import torch
    if isinstance(audio, (str, Path)):
        title = title or Path(audio).name
        wave = read_audio(audio, sample_rate)
    else:
        wave = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    raw = log_mel(wave, sample_rate, n_mels, cmvn=False).numpy()
    norm = log_mel(wave, sample_rate, n_mels).numpy()
    _, hop = frame_params(sample_rate)
    seconds = wave.numel() / sample_rate
    fig, axes = plt.subplots(3, 1, figsize=(9, 6.5), sharex=True,
                             gridspec_kw={"height_ratios": [1, 1.3, 1.3]})
    axes[0].plot(np.arange(wave.numel()) / sample_rate, wave.numpy(), lw=0.4)
    axes[0].set_ylabel("amplitude")
    extent = (0, raw.shape[0] * hop / sample_rate, 0, n_mels)
    for ax, img, label in ((axes[1], raw, "log(mel + 1e-6)"), (axes[2], norm, "after CMVN")):
        im = ax.imshow(img.T, origin="lower", aspect="auto", extent=extent, cmap="magma")
        ax.set_ylabel("mel bin")
        fig.colorbar(im, ax=ax, pad=0.01, label=label)
    axes[2].set_xlabel("time (s)")
    axes[0].set_xlim(0, seconds)
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    return fig


def plot_logmel_grid(clips: dict[str, np.ndarray], sample_rate: int = 22050, n_mels: int = 40):
    """The CMVN log-mel features the encoder sees, one panel per clip (e.g. one caption clean and
    degraded), on one time axis and one colour scale (-3 to 3: each mel bin has unit variance over
    its utterance, so a panel's own scale would hide what CMVN does to a band without signal)."""
    import matplotlib.pyplot as plt
    _, hop = frame_params(sample_rate)
    fig, axes = plt.subplots(len(clips), 1, figsize=(9.5, 1.5 * len(clips) + 0.5), sharex=True, squeeze=False,
                             layout="constrained")
    for ax, (name, wave) in zip(axes[:, 0], clips.items()):
        feats = log_mel(np.asarray(wave, dtype=np.float32), sample_rate, n_mels).numpy()
        image = ax.imshow(feats.T, origin="lower", aspect="auto", cmap="magma", vmin=-3, vmax=3,
                          extent=(0, feats.shape[0] * hop / sample_rate, 0, n_mels))
        ax.set_ylabel("mel bin")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="normalised log-mel", shrink=0.8)
    return fig
