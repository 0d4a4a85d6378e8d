"""The study's tables: CSV files and their fields, reading them back, the results table and the
cosine summary of task vectors across sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from interp.analysis import task_vectors as tvs
from interp.io import load_tensors, read_csv
from interp.studies.task_vectors.config import LABELS, TARGETS


# ------------------------------------------------------------- tables, report
TABLE_ROWS = ("constant", "no_context", "prompting_text", "prompting_image", "text_examples", "instruction", "image_examples",
              "instruction+examples", "text_examples_vlm", "random", "fv_third", "fv_val")
CSV_FIELDS = {
    "test": ["task", "target", "method", "layer", "em", "set", "n", "n_examples", "answer"],
    "sweep": ["task", "target", "method", "layer", "split", "em", "set", "n"],
    "curve": ["task", "target", "method", "n_examples", "seed", "layer", "em", "set", "n"],
    "cosine": ["task", "a", "b", "layer", "cos"],
    "heads": ["task", "layer", "head", "aie", "top"],
}
CSV_FILES = {"test": "results.csv", "sweep": "sweep.csv", "curve": "curve.csv", "cosine": "cosine.csv",
             "heads": "heads.csv"}


TABLE_TYPES = {**{k: float for k in ("em", "set", "cos", "aie")},
               **{k: int for k in ("layer", "n", "n_examples", "seed", "head")}, "top": lambda v: v == "True"}


def read_tables(out: Path) -> dict[str, list[dict]]:
    """The tidy tables of a study folder, values parsed."""
    tables = {}
    for kind, name in CSV_FILES.items():
        path = Path(out) / name
        if not path.exists():
            tables[kind] = []
            continue
        tables[kind] = read_csv(path, TABLE_TYPES)
    return tables


def results_table(test_rows: list[dict]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(column names, rows of cells) of the brief's table: methods x (task, query modality)."""
    cols = sorted({(r["task"], r["target"]) for r in test_rows}, key=lambda c: (TARGETS.index(c[1]), c[0]))
    by = {(r["task"], r["target"], r["method"]): r for r in test_rows}
    header = [f"{t} ({tg})" for t, tg in cols] + ["mean text", "mean image"]
    body = []
    for m in TABLE_ROWS:
        if not any(key[2] == m for key in by):
            continue
        cells, means = [], {"text": [], "image": []}
        for t, tg in cols:
            r = by.get((t, tg, m))
            if r is None:
                cells.append("")
                continue
            means[tg].append(r["em"])
            lay = f" (L{r['layer']})" if r.get("layer") not in (None, "") else ""
            cells.append(f"{r['em']:.2f}{lay}")
        cells += [f"{np.mean(v):.2f}" if v else "" for v in (means["text"], means["image"])]
        body.append((LABELS[m], cells))
    return header, body


def table_markdown(test_rows: list[dict]) -> str:
    header, body = results_table(test_rows)
    lines = ["| method | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in body]
    return "\n".join(lines)


def cosine_summary(out: Path, tasks: Sequence[str], layers: Sequence[int]) -> dict[str, Any]:
    """Same-task cross-source cosines against a cross-task control, per layer (means over tasks).

    Raw residual cosines are high everywhere (a shared mean direction), so the control -
    text-example vector of task A vs the vector of task B - says what "high" means here."""
    vec = {}
    for t in tasks:
        path = out / "tasks" / f"{t}.safetensors"
        if path.exists():
            vec[t] = load_tensors(path)[0]
    out_rows = []
    pairs = [("text_examples", "image_examples"), ("text_examples", "instruction"), ("image_examples", "instruction"),
             ("text_examples", "text_examples_vlm")]
    for a, b in pairs:
        same = [tvs.cosine(v[a], v[b]) for v in vec.values() if a in v and b in v]
        cross = [tvs.cosine(vec[t1][a], vec[t2][b]) for t1 in vec for t2 in vec
                 if t1 != t2 and a in vec[t1] and b in vec[t2]]
        if not same:
            continue
        s, c = torch.stack(same).mean(0), torch.stack(cross).mean(0) if cross else None
        for li, l in enumerate(layers[: len(s)]):
            out_rows.append({"a": a, "b": b, "layer": l, "same_task": float(s[li]),
                             "other_task": float(c[li]) if c is not None else float("nan")})
    return {"rows": out_rows}
