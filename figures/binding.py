"""Redraw the binding study's figures and report from its result tables.

`python -m interp.binding CONFIG` writes accuracy.csv, interchange.csv, knockout.csv,
probes.csv, training.csv and config.json to its out_dir; this script only reads them, so
figures can be restyled without re-running anything:

    .venv/bin/python figures/binding.py runs/binding-quick             # -> figures/out/binding/
    .venv/bin/python figures/binding.py runs/binding-quick --out /tmp/b --no-png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from interp.io import write_text
from interp.studies.binding.figures import write_figures
from interp.studies.binding.report import report_markdown
from interp.studies.binding.tables import read_tables, summarise


def load_tables(study_dir: Path) -> dict[str, list[dict]]:
    """The tidy tables of a finished study folder (a missing table is empty)."""
    if not (study_dir / "accuracy.csv").exists():
        raise SystemExit(f"no accuracy.csv in {study_dir}: run `python -m interp.binding CONFIG` first")
    return read_tables(study_dir)


def main(argv: list[str] | None = None) -> list[Path]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study_dir", type=Path, help="a binding study output folder")
    ap.add_argument("--out", type=Path, default=None, help="default: figures/out/binding")
    args = ap.parse_args(argv)
    tables = load_tables(args.study_dir)
    cfg = json.loads((args.study_dir / "config.json").read_text())["config"]
    out = args.out or Path(__file__).resolve().parent / "out" / "binding"
    summary = summarise(tables, cfg)
    seconds = None
    if (args.study_dir / "summary.json").exists():
        seconds = json.loads((args.study_dir / "summary.json").read_text()).get("seconds")
    write_text(out / "report.md", report_markdown(tables, summary, cfg, seconds))
    files = write_figures(tables, out)
    print("\n".join(str(f) for f in [out / "report.md", *files]))
    return files


if __name__ == "__main__":
    main()
