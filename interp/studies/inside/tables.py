"""Reading the look-inside tables back: one CSV per analysis, grouped into series for plots
and the report."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from interp.io import read_csv
from interp.metrics import mean_ci

PROBES = ("text", "image", "last", "text->image", "image->text")  # the probes' order in tables


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


def probe_rows(rows: list[dict]) -> list[dict]:
    """Per probe: the layer with the best mean balanced accuracy over hypernyms, and the means
    (with 95% intervals) there, at layer 0 and at the last layer; chance is 0.5."""
    acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        acc[r["probe"]][int(r["layer"])].append(float(r["balanced_accuracy"]))
    out = []
    for probe in sorted(acc, key=lambda p: (PROBES.index(p) if p in PROBES else len(PROBES), p)):
        by_layer = {k: mean_ci(v) for k, v in acc[probe].items()}
        best = max(by_layer, key=lambda k: by_layer[k][0])
        out.append({"probe": probe, "best_layer": best, "best": by_layer[best], "layer0": by_layer[min(by_layer)],
                    "last": by_layer[max(by_layer)], "chance": 0.5, "n": by_layer[best][2]})
    return out
