"""``python -m interp.evaluate CONFIG --run RUN_ID``: (re)score a trained run of a taxonomy
study config from its checkpoint (the batched scorer itself is :mod:`interp.scoring`)."""

from __future__ import annotations

import argparse

from interp.configfile import load_or_exit
from interp.studies.config import load_config
from interp.runlock import RunLocked
from interp.studies.taxonomy import evaluate_run_dir


def main(argv: list[str] | None = None) -> None:
    """`python -m interp.evaluate CONFIG --run RUN_ID`: (re)score a trained run's test questions."""
    ap = argparse.ArgumentParser(prog="python -m interp.evaluate", description="Evaluate one trained run.")
    ap.add_argument("config")
    ap.add_argument("--run", required=True, help="run id, e.g. lm-original-100pct-s42 (see <out_dir>/runs)")
    args = ap.parse_args(argv)
    cfg = load_or_exit(ap, load_config, args.config)
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
