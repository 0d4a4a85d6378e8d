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
from pathlib import Path

from interp.configfile import add_study_args, load_study_config, run_source
from interp.features import UndecodableImages
from interp.pages import open_hint
from interp.runlock import RunLocked, run_lock
from interp.studies.taxonomy.config import load_config
from interp.studies.taxonomy.report import headline_text
from interp.studies.taxonomy.run import run_study


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_args(ap, "study TOML (experiments/quick.toml, full.toml, paper.toml)",
                   "--set train.epochs=2 --set grid.seeds=[1,2]")
    ap.add_argument("--strict-images", action="store_true",
                    help="stop (naming them) when image files do not decode; default: skip them with a warning")
    args = ap.parse_args(argv)
    cfg = load_study_config(ap, args, load_config)
    source = run_source(args)
    try:  # one writer per study folder, checked before anything loads
        with run_lock(cfg.out_dir):
            result = run_study(cfg, progress=not args.no_progress, source=source, strict_images=args.strict_images)
    except (RunLocked, UndecodableImages) as e:
        ap.exit(2, f"python -m interp.run: error: {e}\n")
    print(f"\n[study] done in {result['seconds'] / 60:.1f} min; results in {cfg.out_dir}")
    print(headline_text(Path(cfg.out_dir)))
    print(f"report: {Path(cfg.out_dir) / 'report.md'}")
    print("\n".join(open_hint(result["page"], cfg.out_dir)))


if __name__ == "__main__":
    main()
