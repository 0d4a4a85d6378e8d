"""Redraw the taxonomic study's figures and report from its tidy results file.

The experiment (`python -m interp.run CONFIG`) writes `results.csv`; this script only
reads it, so figures can be restyled without re-running anything. It also copies the run's
`report.md`, `results.csv`, `learning.csv`, `lm_only.csv`, `config.json` (config, seeds, versions),
`summary.json` and each trained run's learning curve
(`learning_curve_<run>.png`) beside the figures:

    .venv/bin/python figures/taxonomy.py runs/quick            # -> figures/out/quick/*.html|png
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from interp.studies.taxonomy.figures import write_figures
from interp.studies.taxonomy.report import grid_markdown
from interp.studies.taxonomy.tables import aggregate, depth_table, read_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study_dir", type=Path, help="a study output folder holding results.csv")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    results = args.study_dir / "results.csv"
    if not results.exists():
        raise SystemExit(f"no results.csv in {args.study_dir}: run `python -m interp.run CONFIG` first")
    rows = read_results(results)
    out = args.out or Path(__file__).resolve().parent / "out" / args.study_dir.name
    agg = aggregate(rows)
    files = write_figures(agg, depth_table(rows), rows, out)
    for name in ("report.md", "results.csv", "learning.csv", "lm_only.csv", "config.json", "summary.json"):
        if (args.study_dir / name).exists():
            shutil.copyfile(args.study_dir / name, out / name)
            files.append(out / name)
    for curve in sorted(args.study_dir.glob("runs/*/learning_curve.png")):
        files.append(out / f"learning_curve_{curve.parent.name}.png")
        shutil.copyfile(curve, files[-1])
    print(grid_markdown(agg, "unseen"))
    print("\n".join(str(f) for f in files))


if __name__ == "__main__":
    main()
