"""Redraw the visual-alignment study's report, tables and figures from a results folder.

`python -m interp.alignment CONFIG` writes results.csv, lm_only.csv, config.json and the
per-unit files (units/); this script only reads them, so the report and figures can be
restyled without re-running anything:

    .venv/bin/python figures/alignment.py runs/alignment-quick     # -> figures/out/alignment/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.studies.alignment import load_outputs, write_outputs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study_dir", type=Path, help="an alignment output folder holding results.csv and config.json")
    ap.add_argument("--out", type=Path, default=None, help="default: figures/out/alignment")
    args = ap.parse_args(argv)
    try:
        cfg, rows, lm_only, skipped = load_outputs(args.study_dir)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    out = args.out or Path(__file__).resolve().parent / "out" / "alignment"
    res = write_outputs(cfg, rows, lm_only, out, skipped, fig_dir=out, study_dir=args.study_dir)
    print("\n".join(res["figures"]))


if __name__ == "__main__":
    main()
