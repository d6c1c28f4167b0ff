"""Small display helpers shared by the notebooks."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from .config import STEPS, Config
from .data.build import TOY_DATASETS
from .pipeline import state


def config_table(cfg: Config, section: str) -> pd.DataFrame:
    """The keys and values of one config section, as a table."""
    values = dataclasses.asdict(getattr(cfg, section))
    return pd.DataFrame({"value": [str(v) for v in values.values()]},
                        index=pd.Index([f"{section}.{k}" for k in values], name="key"))


def status_table(cfg: Config, runs_dir: str | Path | None = None) -> pd.DataFrame:
    """Status of every step of the profile: done / stale / partial / missing, and why."""
    rows = []
    for step in STEPS:
        st = state(step, cfg, runs_dir)
        m = st.metrics or {}
        rows.append({"step": step, "status": st.status, "reason": st.reason,
                     "wall time (s)": m.get("wall_time_s"), "folder": str(st.dir)})
    return pd.DataFrame(rows).set_index("step")


def has_attributes(cfg: Config, what: str) -> bool:
    """True on the toy datasets, whose images come with ground-truth attributes. On a real dataset
    (CUB, Oxford) prints that ``what`` needs them and returns False: the notebook cell skips it."""
    if cfg.data.dataset in TOY_DATASETS:
        return True
    print(f"{what}: toy datasets only ({cfg.data.dataset} images come without ground-truth attributes)")
    return False


def show_source(obj, lines: tuple[int, int] | None = None):
    """The library's own source of ``obj`` (a function, class or method), highlighted, for a
    notebook to show next to the equation it implements: the notebook reads the code from the
    library, so the two cannot drift apart. ``lines`` = (first, last), 1-based within the object,
    shows only part of it."""
    import inspect

    from IPython.display import Code

    obj = inspect.unwrap(obj)   # a method under @torch.no_grad(): its own code, not torch's wrapper
    source = inspect.getsource(obj)
    if lines is not None:
        first, last = lines
        source = "".join(source.splitlines(keepends=True)[first - 1:last])
    path = Path(inspect.getsourcefile(obj)).resolve()
    repo = Path(__file__).resolve().parent.parent
    where = path.relative_to(repo).as_posix() if path.is_relative_to(repo) else path.name
    return Code(f"# {where}\n{source}", language="python")


def held_out_voice_table(cfg: Config, what: str, path: str | Path | None = None) -> pd.DataFrame | None:
    """``benchmarks/bench_held_out_voice.py``'s comparison for this profile (the profile's model
    beside the same recipe trained without one voice), ``what`` = "P@10" (retrieval) or "drawn"
    (attribute accuracy of the generated images); None (and a line saying how to make it) when the
    benchmark has not been run for this profile. It is not part of ``make run``: it trains the
    speech, SEN and GAN steps again (~25 min on 2 cores)."""
    from .artifacts import read_json
    path = Path(path or Path(__file__).resolve().parent.parent / "outputs" / "benchmarks"
                / "bench_held_out_voice.json")
    if not path.exists():
        print(f"not run yet: `python benchmarks/bench_held_out_voice.py --profile {cfg.profile} --eval` "
              f"trains this profile again without a voice (~25 min on 2 cores) and writes {path.name}")
        return None
    result = read_json(path)
    if result.get("profile") != cfg.profile:
        print(f"{path.name} is for the {result.get('profile')!r} profile, not {cfg.profile!r}")
        return None
    table = pd.DataFrame.from_dict(result["rows"], orient="index")
    columns = [c for c in table.columns if c.startswith(f"{what},") or c.startswith(f"{what} gap,")]
    print(f"{result['voice']} in training (this profile's model) and held out entirely:")
    return table[columns].dropna(how="all").round(3)
