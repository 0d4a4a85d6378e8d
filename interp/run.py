"""`python -m interp.run CONFIG`: run a study config end to end.

Builds data if needed, caches encoder features, trains every run of the grid (finished
runs are skipped, interrupted ones resume), evaluates, writes the tidy table, the
report and the figures, and prints the results table.

Examples:
    python -m interp.run experiments/quick.toml
    python -m interp.run experiments/full.toml --set model.lm=smollm2-135m --out runs/full-smollm
"""

from __future__ import annotations

import argparse
import ast
import os

import torch


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="study TOML (experiments/quick.toml, full.toml, paper.toml)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config value, e.g. --set train.epochs=2 --set grid.seeds=[1,2]")
    ap.add_argument("--out", help="output folder (default: the config's out_dir)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    args = ap.parse_args(argv)
    if args.threads or os.cpu_count():
        torch.set_num_threads(args.threads or os.cpu_count() or 1)

    from interp.studies.config import load_config
    from interp.studies.taxonomy import run_study

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            ap.error(f"--set {item!r}: expected SECTION.KEY=VALUE")
        overrides[key] = _value(value)
    if args.out:
        overrides["out_dir"] = args.out
    cfg = load_config(args.config, overrides)
    result = run_study(cfg, progress=not args.no_progress, source=args.config)
    print(f"[study] done in {result['seconds'] / 60:.1f} min; results in {cfg.out_dir}")


if __name__ == "__main__":
    main()
