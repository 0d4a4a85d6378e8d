"""``python -m interp.evaluate CONFIG --run RUN_ID``: (re)score a trained run of a taxonomy
study config from its checkpoint (the batched scorer itself is :mod:`interp.scoring`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.configfile import add_dry_run, dry_run_exit, load_or_exit
from interp.studies.taxonomy.config import load_config
from interp.runlock import RunLocked
from interp.studies.taxonomy.run import evaluate_run_dir


def main(argv: list[str] | None = None) -> None:
    """`python -m interp.evaluate CONFIG --run RUN_ID`: (re)score a trained run's test questions."""
    ap = argparse.ArgumentParser(prog="python -m interp.evaluate", description="Evaluate one trained run.")
    ap.add_argument("config")
    ap.add_argument("--run", required=True, help="run id, e.g. lm-original-100pct-s42 (see <out_dir>/runs)")
    add_dry_run(ap)
    args = ap.parse_args(argv)
    cfg = load_or_exit(ap, load_config, args.config)
    if args.dry_run:
        if not (Path(cfg.out_dir) / "runs" / args.run / "projector.safetensors").exists():
            ap.exit(2, f"python -m interp.evaluate: error: no trained run {args.run!r} in {cfg.out_dir}/runs\n")
        dry_run_exit(ap, f"{args.config}, run {args.run}", cfg)
    try:
        rows = evaluate_run_dir(cfg, args.run)
    except (RunLocked, FileNotFoundError) as e:
        ap.exit(2, f"python -m interp.evaluate: error: {e}\n")
    unseen = [r["f1"] for r in rows if r["split"] == "unseen"]
    leaf = [r["f1"] for r in rows if r["hypernym"] == "<leaf>"]
    print(f"[evaluate] {args.run}: leaf F1 {sum(leaf) / max(1, len(leaf)):.1f}; unseen-hypernym macro F1 "
          f"{sum(unseen) / max(1, len(unseen)):.1f} over {len(unseen)} hypernyms")


if __name__ == "__main__":
    main()
