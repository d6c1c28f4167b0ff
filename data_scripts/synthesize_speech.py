"""Speak the captions of any dataset folder (the shared layout) and compute their features.

The pipeline does this for a profile's own data (``python -m s2i_lib speech --profile P``); this
script does it for a folder of your choice, e.g. CUB-200 prepared by ``prepare_cub.py``, into a
folder of your choice, with the speech settings of a profile and any overrides:

    python data_scripts/synthesize_speech.py --data data/cub --out data/cub_speech --profile paper_cub \\
        --set speech.workers=8 --set 'speech.heldout_voices=[]'

The output folder has the layout of a speech step folder (wavs/, manifest.jsonl, errors.jsonl,
features/, metrics.json). It is resumable: run the same command again after an interruption and it
finishes the rest; with other settings it starts over.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s2i_lib.artifacts import run_step  # noqa: E402
from s2i_lib.config import ConfigError, load_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="dataset folder (with dataset.json)")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--profile", default="default", help="profile whose speech settings to use")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. speech.captions_per_image=10 (repeatable)")
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = ap.parse_args(argv)

    try:
        cfg = load_config(args.profile, args.set)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not (args.data / "dataset.json").exists():
        print(f"error: {args.data} is not a dataset folder (no dataset.json)", file=sys.stderr)
        return 2
    from s2i_lib.steps.speech import build_speech_step

    data = args.data.resolve()
    section = {"seed": cfg.seed, "speech": cfg.to_dict()["speech"], "data": str(data)}
    from s2i_lib.artifacts import stable_hash
    config_hash = stable_hash({"seed": cfg.seed, "speech": cfg.to_dict()["speech"], "data": str(data)})
    metrics = run_step(args.out, "speech", config_hash, section, upstream_runs={},
                       work=lambda d: build_speech_step(cfg, d, {"data": data}), force=args.force)
    f = metrics["figures"]
    print(json.dumps({k: f[k] for k in ("utterances", "per_split", "heldout", "errors",
                                        "audio_hours", "synthesis_time_s", "features_time_s")},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
