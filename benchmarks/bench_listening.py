"""How fast are the listening tests spoken: in one process, or shared among worker processes?

    python benchmarks/bench_listening.py                          # default profile, its listening captions
    python benchmarks/bench_listening.py --captions 100 --rounds 2

The SEN step says its test captions once per listening group (``speech/listening.py``: other
accents, the natural voice, the degraded and rephrased copies) before it embeds them. This script
speaks every group of the profile on the profile's listening captions in both ways, alternating
over ``--rounds``: ``one process`` (the libraries' own thread counts: onnxruntime and torch on
every core) and ``workers`` (the speech step's ``speech.workers`` processes, one thread each). It
reports how closely both say the same, per group: the share of utterances of the same length and
the median correlation of their features (not bit for bit: the synthesizers vary a little from
run to run, ``tts.py``). It prints, per mode, the median wall time, the utterances per second and the
ratio, and saves them to ``outputs/benchmarks/bench_listening.json``.
Needs the profile's data step (built in ``--runs-dir`` if it is not there).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import cpu_description, load_average  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--captions", type=int, default=None, help="listening captions (default: the profile's)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--runs-dir", default=None, help="where the profile's data step is")
    args = parser.parse_args()
    if args.rounds < 1 or (args.captions is not None and args.captions < 2):
        parser.error("--rounds must be at least 1 and --captions at least 2")   # exit code 2

    import torch

    from s2i_lib import pipeline
    from s2i_lib.artifacts import atomic_write_json
    from s2i_lib.config import ConfigError, load_config
    from s2i_lib.data.layout import read_dataset
    from s2i_lib.device import cpu_count
    from s2i_lib.speech.listening import speak_groups
    from s2i_lib.steps.sen import listening_jobs

    try:
        cfg = load_config(args.profile, [f"sen.listening_captions={args.captions}"] if args.captions else None)
    except ConfigError as e:
        parser.error(str(e))
    test = read_dataset(pipeline.ensure("data", cfg, args.runs_dir)).split("test")
    _, _, jobs = listening_jobs(cfg, test)
    if not jobs:
        parser.error(f"{args.profile}: no listening groups (sen.listening_*)")
    n_utts = sum(len(t) for _, t in jobs)
    workers = min(cfg.speech.workers, cpu_count())
    if workers < 2:
        parser.error(f"{workers} worker process (speech.workers {cfg.speech.workers}, {cpu_count()} cores): "
                     "nothing to compare with one process")
    modes = {"one process": 1, f"{workers} workers": workers}
    print(f"{args.profile}: {len(jobs)} groups x {len(jobs[0][1])} captions = {n_utts} utterances; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    times: dict[str, list[float]] = {m: [] for m in modes}
    feats = {}
    for r in range(args.rounds):
        order = list(modes) if r % 2 == 0 else list(modes)[::-1]   # alternate who goes first
        for mode in order:
            t0 = time.perf_counter()
            feats[mode] = speak_groups(jobs, cfg.speech, cfg.seed, modes[mode], progress=False, min_parallel=0)
            times[mode].append(time.perf_counter() - t0)
            print(f"round {r + 1} {mode}: {times[mode][-1]:.1f} s", flush=True)
    # not bit for bit (Piper's noise is unseeded; eSpeak's output depends a little on what its process
    # said before: tts.py), so each group's agreement: same length, and the features' correlation
    a, b = feats.values()
    agreement = {}
    for (group, _), fa, fb in zip(jobs, a, b):
        n = [min(len(x), len(y)) for x, y in zip(fa, fb)]
        corr = [float(torch.corrcoef(torch.stack([x[:k].flatten(), y[:k].flatten()]))[0, 1])
                for x, y, k in zip(fa, fb, n)]
        agreement[group.name] = {"same_length": round(sum(len(x) == len(y) for x, y in zip(fa, fb)) / len(fa), 3),
                                 "median_correlation": round(statistics.median(corr), 4)}
    rows = {m: {"wall_s": round(statistics.median(t), 1), "utt_per_s": round(n_utts / statistics.median(t), 1)}
            for m, t in times.items()}
    base, par = (rows[m]["wall_s"] for m in modes)
    result = {"profile": args.profile, "groups": [g.name for g, _ in jobs], "utterances": n_utts,
              "rounds": args.rounds, "modes": rows, "speed_up": round(base / par, 2),
              "agreement": agreement, "machine": cpu_description(), "load_average": load_average()}
    print(json.dumps(result, indent=1))
    path = REPO / "outputs" / "benchmarks" / "bench_listening.json"
    atomic_write_json(path, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
