"""The eval step's results table, in the style of the paper's Table 1 (``table.md``, ``table.json``),
and its bar chart (``metrics.png``), as the step (``steps/eval.py``) writes them.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..artifacts import atomic_path, atomic_write_json

# column -> (key in a result, higher is better)
COLUMNS = {
    "IS": ("inception_score", True),
    "FID": ("fid", False),
    "KID x 1000": ("kid_mean", False),
    "mAP (paper)": ("mAP", True),
    "R-precision": ("R-precision", True),
    "attribute accuracy": ("attribute accuracy", True),
    "colour swap": ("colour swap", True),
}

# The paper's Table 1 (Wang et al., Interspeech 2020, arXiv 2005.06968): CUB-200 and
# Oxford-102 at 256 px. NOT comparable with ToyBirds at 64 px: other images, other judges.
PAPER_TABLE_1 = pd.DataFrame(
    [["S2IGAN w/o Dense", 8.66, 17.58, 4.19, 13.13, 64.37, 3.68],
     ["S2IGAN w/o RS", 8.54, 15.59, 4.14, 12.86, 53.24, 3.70],
     ["S2IGAN w/o SEN", 2.91, 19.56, 3.49, 7.38, 67.60, 2.77],
     ["S2IGAN end-to-end", 7.38, 21.54, 4.29, 12.47, 51.88, 3.55],
     ["S2IGAN", 9.04, 14.50, 4.29, 13.40, 48.64, 3.55]],
    columns=["model", "CUB mAP", "CUB FID", "CUB IS", "Oxford mAP", "Oxford FID", "Oxford IS"]).set_index("model")


def _value(figures: dict, key: str):
    v = figures.get(key)
    if isinstance(v, dict):   # colour swap: its success rate
        v = v.get("success")
    return v


def results_table(results: dict) -> pd.DataFrame:
    """One row per evaluated model and query group, the paper's metrics and ours as columns.
    mAP is a percentage as in the paper; the others as computed."""
    rows = {}
    for name, figures in results.items():
        row = {col: _value(figures, key) for col, (key, _) in COLUMNS.items()}
        if row["mAP (paper)"] is not None:
            row["mAP (paper)"] *= 100
        if row["KID x 1000"] is not None:
            row["KID x 1000"] *= 1000
        rows[name] = row
    return pd.DataFrame(rows).T.astype(float).round(3)


def to_markdown(table: pd.DataFrame) -> str:
    """A pipe table (``DataFrame.to_markdown`` needs the tabulate package, not a dependency)."""
    head = [table.index.name or ""] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in table.iterrows():
        cells = ["" if pd.isna(v) else (f"{v:.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v))
                 for v in row]
        lines.append("| " + " | ".join([str(name)] + cells) + " |")
    return "\n".join(lines)


def write_table(results: dict, out_dir: str | Path) -> pd.DataFrame:
    """``table.md`` and ``table.json`` (ours, then the paper's for reference) and ``metrics.png``."""
    out_dir = Path(out_dir)
    table = results_table(results)
    arrows = " ".join(f"{c} {'↑' if up else '↓'}" for c, (_, up) in COLUMNS.items())
    text = ("# Evaluation\n\n" + to_markdown(table) + f"\n\n{arrows}. Empty: does not apply.\n\n"
            "## For reference only: the paper's Table 1 (CUB-200 / Oxford-102, 256 px)\n\n"
            "Not comparable with the rows above (other images, resolution and judges).\n\n"
            + to_markdown(PAPER_TABLE_1) + "\n")
    with atomic_path(out_dir / "table.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    atomic_write_json(out_dir / "table.json", {"ours": table.to_dict(orient="index"),
                                               "paper_table_1": PAPER_TABLE_1.to_dict(orient="index")})
    fig = plot_metrics(table)
    with atomic_path(out_dir / "metrics.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return table


def plot_metrics(table: pd.DataFrame) -> plt.Figure:
    """One bar chart per metric, one bar per model/group (seaborn)."""
    long = table.reset_index(names="model").melt(id_vars="model", var_name="metric", value_name="value").dropna()
    metrics = [c for c in table.columns if c in set(long["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics), 3.6), squeeze=False)
    palette = dict(zip(table.index, sns.color_palette("tab10", len(table.index))))
    for ax, metric in zip(axes[0], metrics):
        part = long[long["metric"] == metric]
        sns.barplot(data=part, x="model", y="value", hue="model", palette=palette, legend=False, ax=ax)
        up = COLUMNS[metric][1]
        ax.set(title=f"{metric} {'↑' if up else '↓'}", xlabel="", ylabel="")
        ax.tick_params(axis="x", rotation=90, labelsize=7)
    fig.tight_layout()
    return fig
