"""Redraw the task-vector study's figures and report table from its results folder.

The study (`python -m interp.task_vectors CONFIG`) writes tidy tables (results.csv,
sweep.csv, curve.csv, cosine.csv, heads.csv) and per-task vectors; this script only reads
them, so figures can be restyled without re-running anything:

    .venv/bin/python figures/task_vectors.py runs/task_vectors_quick     # -> figures/out/task_vectors/
    .venv/bin/python figures/task_vectors.py runs/task_vectors_quick --out /tmp/tv --html-only

It also copies the small outputs worth committing (report.md, the CSVs, cosine_control.json)
next to the figures.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from interp.io import read_json
from interp.studies.task_vectors import CSV_FILES, cosine_summary, read_tables, table_markdown, write_figures

SMALL = tuple(CSV_FILES.values()) + ("report.md", "cosine_control.json", "summary.json")


def main(argv: list[str] | None = None) -> list[Path]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study_dir", type=Path, help="a task-vector study output folder (holding results.csv)")
    ap.add_argument("--out", type=Path, default=None, help="default: figures/out/task_vectors")
    ap.add_argument("--html-only", action="store_true", help="skip the PNG export (needs Chromium)")
    args = ap.parse_args(argv)
    if not (args.study_dir / "results.csv").exists():
        raise SystemExit(f"no results.csv in {args.study_dir}: run `python -m interp.task_vectors CONFIG` first")
    out = args.out or Path(__file__).resolve().parent / "out" / "task_vectors"
    out.mkdir(parents=True, exist_ok=True)
    tables = read_tables(args.study_dir)
    cos_path = args.study_dir / "cosine_control.json"
    if cos_path.exists():
        cos = read_json(cos_path)
    else:  # recompute from the saved vectors
        tasks = sorted({r["task"] for r in tables["test"]})
        cos = cosine_summary(args.study_dir, tasks, sorted({r["layer"] for r in tables["cosine"]}))
    files = write_figures(tables, cos, out / "figures", png=not args.html_only)
    for name in SMALL:
        src = args.study_dir / name
        if src.exists() and src.resolve() != (out / name).resolve():
            shutil.copyfile(src, out / name)
    print(table_markdown(tables["test"]))
    print("\n".join(str(f) for f in files))
    return files


if __name__ == "__main__":
    main()
