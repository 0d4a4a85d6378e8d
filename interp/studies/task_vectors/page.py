"""The task-vector study's results page, ``report.html``, from the run folder's tables alone
(results.csv, sweep.csv, curve.csv, cosine.csv, heads.csv, cosine_control.json, config.json):
no model is loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from interp.io import read_json
from interp.pages import Code, Column, Page, Plot, Provenance, Section, Table, Text, write_page
from interp.studies.task_vectors.config import LABELS, PUBLISHED, TARGETS
from interp.studies.task_vectors.figures import build_figures
from interp.studies.task_vectors.report import findings
from interp.studies.task_vectors.tables import CSV_FIELDS, TABLE_ROWS, read_tables

PAGE = "report.html"

TEST_COLUMNS = [
    Column("task"), Column("target", "query"), Column("label", "method"), Column("layer"),
    Column("em", "exact match", ".3f"), Column("set", "set accuracy", ".3f"), Column("n"),
    Column("n_examples", "examples"), Column("answer", "constant answer"),
]
HEAD_COLUMNS = [Column("task"), Column("layer"), Column("head"), Column("aie", "average indirect effect", ".2e")]


def is_run_dir(out: Path) -> bool:
    """Whether ``out`` is a task-vector study's folder: a results.csv with its test columns
    beside the validation sweep (sweep.csv)."""
    out = Path(out)
    if not (out / "results.csv").is_file() or not (out / "sweep.csv").is_file():
        return False
    with open(out / "results.csv") as f:
        header = f.readline().strip().split(",")
    return header == CSV_FIELDS["test"]


def headline(test_rows: list[dict]) -> tuple[list[Column], list[dict]]:
    """The brief's table: one row per method, exact match per (task, query modality), the means
    per modality and the published number (Idefics2-8B) where the brief has one."""
    cols = sorted({(r["task"], r["target"]) for r in test_rows}, key=lambda c: (TARGETS.index(c[1]), c[0]))
    by = {(r["task"], r["target"], r["method"]): r for r in test_rows}
    columns = [Column("method")] + [Column(f"{t}|{tg}", f"{t} ({tg})", ".2f") for t, tg in cols]
    columns += [Column(f"mean_{tg}", f"mean {tg}", ".2f") for tg in TARGETS]
    columns += [Column(f"published_{tg}", f"published {tg}", ".2f") for tg in TARGETS]
    rows = []
    for m in TABLE_ROWS:
        if not any(key[2] == m for key in by):
            continue
        row: dict = {"method": LABELS.get(m, m)}
        for t, tg in cols:
            if (r := by.get((t, tg, m))) is not None:
                row[f"{t}|{tg}"] = r["em"]
        for tg in TARGETS:
            vals = [by[(t, g, m)]["em"] for t, g in cols if g == tg and (t, g, m) in by]
            row[f"mean_{tg}"] = float(np.mean(vals)) if vals else None
            row[f"published_{tg}"] = PUBLISHED.get((m, tg))
        rows.append(row)
    return columns, rows


def provenance(out: Path) -> Provenance:
    rec = read_json(out / "config.json") if (out / "config.json").exists() else {}
    cfg, env = rec.get("config", {}), rec.get("environment", {})
    facts = {"study": "cross-modal task vectors and function vectors", "config hash": str(rec.get("hash", "?")),
             "projector": str(rec.get("projector", {}).get("description", "?")),
             "python": str(env.get("python", "?")), "interp code hash": str(env.get("interp_code", "?"))}
    seeds = sorted({int(s) for s in cfg.get("curve", {}).get("seeds", [])} |
                   {int(cfg[k]["seed"]) for k in ("method",) if "seed" in cfg.get(k, {})})
    return Provenance(cfg, [f"python -m interp.task_vectors {rec.get('source', 'CONFIG')}   # the study "
                            "(finished tasks are skipped)",
                            f"python -m interp.report {out}   # this page, from the tables"],
                      seeds, dict(env.get("packages", {})), facts)


def build_page(out: Path, *, progress: bool = False) -> Page:
    out = Path(out)
    tables = read_tables(out)
    cos = read_json(out / "cosine_control.json") if (out / "cosine_control.json").exists() else {"rows": []}
    cols, rows = headline(tables["test"])
    sections = [Section("Headline", [
        Text(["Exact match of the first answer token (argmax over the whole vocabulary at the last position) on the "
              "test split; each patch at the layer chosen on validation (per-task table below). The best constant "
              "answer is the chance line. Published: Idefics2-8B (brief, section B)."]),
        Table("headline", cols, rows),
        Text(["The brief's findings, checked on these means:"]),
        Text(findings(tables["test"], cos, tables["curve"]), bullets=True)])]
    sections.append(Section("Figures", [Plot(name, fig) for name, fig in build_figures(tables, cos).items()]))
    test = [dict(r, label=LABELS.get(r["method"], r["method"])) for r in tables["test"]]
    sections.append(Section("Per task", [
        Text(["One row per task x query modality x method (results.csv). Click a header to sort; type to filter."]),
        Table("per_task", TEST_COLUMNS, test, filterable=True)]))
    top = [r for r in tables["heads"] if r.get("top")]
    if top:
        sections.append(Section("Function-vector heads", [
            Text(["The heads whose mean output, summed, makes each task's function vector: ranked by average "
                  "indirect effect on label-shuffled prompts (heads.csv, top only)."]),
            Table("heads", HEAD_COLUMNS, sorted(top, key=lambda r: (r["task"], -r["aie"])), filterable=True)]))
    if (out / "report.md").exists():
        sections.append(Section("report.md", [Code((out / "report.md").read_text(), "the markdown report")]))
    name = read_json(out / "config.json").get("config", {}).get("name", out.name) if (out / "config.json").exists() \
        else out.name
    return Page(f"Task vectors and function vectors: {name}", sections, provenance(out),
                subtitle=f"{len({r['task'] for r in tables['test']})} tasks; folder {out}")


def write_report_page(out: Path, *, progress: bool = False) -> Path:
    """Write ``out/report.html`` and return its path."""
    out = Path(out)
    return write_page(build_page(out, progress=progress), out / PAGE, progress=progress)
