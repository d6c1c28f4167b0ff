"""Run the course notebooks headless (papermill) and summarise every step's ``metrics.json``."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .artifacts import atomic_write_text
from .config import STEPS, _flatten_overrides, load_config
from .pipeline import state

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO / "notebooks"


def notebook_paths(only: list[str] | None = None) -> list[Path]:
    paths = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {Path(n).stem for n in only}
        missing = wanted - {p.stem for p in paths}
        if missing:
            raise SystemExit(f"error: no notebook named {', '.join(sorted(missing))} in {NOTEBOOKS_DIR}")
        paths = [p for p in paths if p.stem in wanted]
    return paths


def run_notebooks(profile: str, overrides: list[str], output_dir: Path,
                  only: list[str] | None = None, runs_dir: Path | None = None) -> int:
    """Execute the notebooks in order into ``output_dir/notebooks``; stop at the first failure."""
    import papermill as pm   # here: it takes seconds to import, and only this command needs it

    # the kernels inherit this environment: text progress lines instead of silent widgets
    os.environ.setdefault("S2I_TEXT_PROGRESS", "1")
    os.environ.setdefault("TQDM_MININTERVAL", "5")
    output_dir = Path(output_dir).resolve()
    (output_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    params = {"profile": profile, "overrides": _as_dict(overrides)}
    if runs_dir is not None:
        params["runs_dir"] = str(Path(runs_dir).resolve())
    for path in notebook_paths(only):
        out = output_dir / "notebooks" / path.name
        print(f"=== {path.name} (profile {profile}) -> {out}", flush=True)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(path), str(out), parameters=params, kernel_name="python3",
                                cwd=str(path.parent), progress_bar=False, log_output=True)
        except pm.PapermillExecutionError as e:
            print(f"error: {path.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                  f"       the executed notebook with the error is {out}", file=sys.stderr)
            return 1
        print(f"=== {path.name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    summary = write_summary(profile, output_dir / "summary.md", runs_dir, overrides)
    print(f"summary of the steps: {summary}")
    return 0


def _as_dict(overrides: list[str]) -> dict:
    return _flatten_overrides(overrides)


def write_summary(profile: str, path: Path, runs_dir: Path | None = None,
                  overrides: list[str] | None = None) -> Path:
    """A markdown table of every step of the profile: status, time, memory, top-level figures."""
    cfg = load_config(profile, overrides)
    lines = [f"# Summary: profile `{cfg.profile}`", "",
             "| step | status | wall time (s) | peak RSS (MB) | figures |", "|---|---|---|---|---|"]
    for step in STEPS:
        st = state(step, cfg, runs_dir)
        m = st.metrics or {}
        figures = ", ".join(f"{k}: {_short(v)}" for k, v in (m.get("figures") or {}).items()).replace("|", "/")
        lines.append(f"| {step} | {st.status} | {m.get('wall_time_s', '')} | "
                     f"{m.get('peak_rss_mb', '')} | {figures} |")
    lines += ["", f"Runs folder: `{state('data', cfg, runs_dir).dir.parent}`", ""]
    atomic_write_text(path, "\n".join(lines))
    return path


def _short(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):  # curves and histories: their length, not their values
        return f"[{len(v)} values]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_short(x)}" for k, x in list(v.items())[:6]) + \
               (", ..." if len(v) > 6 else "") + "}"
    return str(v)

