"""Command line: ``python -m s2i_lib {data,speech,sen,gan,eval,all,status,notebooks,generate} --profile P``.

Each step first builds whatever earlier step is missing or stale; a step that is up to date is
skipped (``--force`` re-runs it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import pipeline
from .artifacts import BadFileError
from .config import STEPS, ConfigError, available_profiles, load_config
from .notebooks import run_notebooks


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m s2i_lib", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", default="default",
                        help=f"a profile name ({', '.join(available_profiles())}) or a YAML path")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set gan.batch_size=32 (repeatable)")
    common.add_argument("--runs-dir", type=Path, default=None,
                        help="where runs/<profile>/<step>/ go (default: runs/ at the repository root)")
    for step in STEPS:
        sp = sub.add_parser(step, parents=[common], help=f"run the {step} step (and what it needs)")
        sp.add_argument("--force", action="store_true", help="re-run even if up to date")
        if step == "eval":
            sp.add_argument("--ablations", action="store_true",
                            help="also train and evaluate the ablated models (= --set eval.ablations=true)")
    sp = sub.add_parser("all", parents=[common], help="run every step")
    sp.add_argument("--force", action="store_true", help="re-run every step")
    sub.add_parser("status", parents=[common], help="show which steps are done, stale or missing")
    sp = sub.add_parser("notebooks", parents=[common],
                        help="run every notebook with papermill into outputs/notebooks/, then summarise")
    sp.add_argument("--output-dir", type=Path, default=Path("outputs"))
    sp.add_argument("--only", nargs="*", default=None, help="notebook names to run (default: all)")
    sp = sub.add_parser("generate", parents=[common],
                        help="draw images from a recording or a typed caption (needs the gan step)")
    source = sp.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", type=Path, metavar="FILE",
                        help="a recording: WAV, FLAC, OGG or MP3, at most 30 s")
    source.add_argument("--text", metavar="CAPTION", help="a caption, spoken by --voice")
    sp.add_argument("--voice", default=None,
                    help="with --text: a training or held-out voice of the profile (default: the first)")
    sp.add_argument("--seed", type=int, default=0,
                    help="noise seed, 0 to 2**63 - 1 (the same seed, the same noise)")
    sp.add_argument("--n", type=int, default=1, help="how many images (1-64)")
    sp.add_argument("--out", type=Path, required=True, metavar="DIR",
                    help="where image_<i>.png (and caption.wav with --text) go")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "ablations", False):
        args.overrides.append("eval.ablations=true")
    try:
        cfg = load_config(args.profile, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    if args.command == "status":
        for step in STEPS:
            st = pipeline.state(step, cfg, args.runs_dir)
            print(f"{step:7s} {st.status:8s} {st.reason}  ({st.dir})")
        return 0
    if args.command == "generate":
        from .demo import run_generate   # imports torch: not at the top, so that --help is instant
        return run_generate(cfg, args.out, args.wav, args.text, args.voice, args.seed, args.n,
                            args.runs_dir)
    if args.command == "notebooks":
        return run_notebooks(args.profile, args.overrides, args.output_dir, args.only, args.runs_dir)

    from .device import select_device   # imports torch: not at the top, so that --help is instant
    try:
        select_device(cfg.device, cfg.precision)
        steps = STEPS if args.command == "all" else (args.command,)
        for step in steps:
            pipeline.ensure(step, cfg, args.runs_dir, force=args.force)
    except BadFileError as e:   # a damaged file in the runs folder: the message names it
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished files are kept; run the same command again to resume.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
