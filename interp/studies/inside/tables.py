"""Reading the look-inside tables back: one CSV per analysis, grouped into series for plots
and the report."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import median

from interp.io import read_csv
from interp.metrics import mean_ci

PROBES = ("text", "image", "last", "text->image", "image->text")  # the probes' order in tables


# The files each analysis writes to its folder (tables, and the figures drawn from them), as globs.
ANALYSIS_OUTPUTS = {
    "probes": ("probes.*",),
    "directions": ("directions.*",),
    "steering": ("steering.*",),
    "lens": ("lens_ranks.*", "lens_top.*"),
    "image_lens": ("image_lens.*", "image_lens_first.*", "image_lens_ranks_*"),
    "similarity": ("similarity.*", "umap.*"),
    "patching": ("patching.*", "patching_*"),
    "causal": ("causal.*",),
}


def clear_outputs(out: Path) -> list[Path]:
    """Delete every analysis's tables and figures in ``out`` (the files of
    :data:`ANALYSIS_OUTPUTS`, nothing else); returns the deleted paths."""
    gone = sorted({f for globs in ANALYSIS_OUTPUTS.values() for g in globs for f in Path(out).glob(g) if f.is_file()})
    for f in gone:
        f.unlink()
    return gone


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


def median_or_none(values: list[int]) -> float | None:
    return float(median(values)) if values else None


def image_lens_summary(rows: list[dict], first: list[dict]) -> list[dict]:
    """Per (readout, modality) of the ``image_lens`` tables (``rows``: image_lens.csv, ``first``:
    image_lens_first.csv), in first-seen readout order, text (the positive control) before image:
    ``n`` concepts; for the concept word and the hypernym word, how many concepts the readout names
    (rank < top_k) at some layer (``*_named``) and the median of their first layers (``*_median``,
    None if none); ``hypernym_only``: concepts whose hypernym word is named at a layer where the
    concept word is not; ``top_k``."""
    named: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[tuple[str, str], set[str]] = defaultdict(set)
    top_k = 0
    for r in first:
        key = (r["readout"], r["modality"])
        counts[key].add(r["concept"])
        top_k = int(r["top_k"])
        if r["first_layer"] not in (None, ""):
            named[key][r["target"]].append(int(r["first_layer"]))
    ranks: dict[tuple[str, str, str, int], dict[str, int]] = defaultdict(dict)
    for r in rows:
        ranks[(r["readout"], r["modality"], r["concept"], int(r["layer"]))][r["target"]] = int(r["rank"])
    only: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (readout, modality, concept, _), rk in ranks.items():
        if rk.get("hypernym", top_k) < top_k <= rk.get("concept", top_k):
            only[(readout, modality)].add(concept)
    readouts = list(dict.fromkeys(r["readout"] for r in first))
    modalities = sorted({r["modality"] for r in first}, key=lambda m: (m != "text", m))
    return [{"readout": ro, "modality": m, "n": len(counts[(ro, m)]), "top_k": top_k,
             "concept_named": len(named[(ro, m)]["concept"]),
             "concept_median": median_or_none(named[(ro, m)]["concept"]),
             "hypernym_named": len(named[(ro, m)]["hypernym"]),
             "hypernym_median": median_or_none(named[(ro, m)]["hypernym"]), "hypernym_only": len(only[(ro, m)])}
            for ro in readouts for m in modalities if (ro, m) in counts]


def causal_summary(rows: list[dict]) -> list[dict]:
    """Per layer: the mean restored share (95% t-interval over pairs) of each source of the
    ``causal`` analysis, and the paired difference word - control word (same pair, same layer)."""
    by: dict[tuple[str, int], dict[tuple[str, str, str], float]] = defaultdict(dict)
    for r in rows:
        by[(r["source"], int(r["layer"]))][(r["hypernym"], r["clean"], r["corrupt"])] = float(r["restored"])
    layers = sorted({k for _, k in by})
    out = []
    for layer in layers:
        row: dict = {"layer": layer}
        for src in ("image", "word", "control word"):
            row[src] = mean_ci(list(by[(src, layer)].values()))
        word, ctrl = by[("word", layer)], by[("control word", layer)]
        row["word - control"] = mean_ci([word[p] - ctrl[p] for p in word if p in ctrl])
        out.append(row)
    return out
