"""Reading the look-inside tables back: one CSV per analysis, grouped into series for plots
and the report."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from interp.io import read_csv
from interp.metrics import mean_ci


def read_rows(out: Path, name: str) -> list[dict] | None:
    """The rows of ``out/<name>.csv``, or None when that analysis has not run."""
    p = out / f"{name}.csv"
    return read_csv(p) if p.exists() else None


def series_by(rows: list[dict], key: str, group: str, value: str) -> dict[str, tuple[list[int], list[float], list[float]]]:
    """{group: (sorted keys, mean, 95% half-width over the other rows)}."""
    acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        acc[str(r[group])][int(r[key])].append(float(r[value]))
    out = {}
    for g, d in acc.items():
        ks = sorted(d)
        stats = [mean_ci(d[k]) for k in ks]
        out[g] = (ks, [s[0] for s in stats], [s[1] for s in stats])
    return out
