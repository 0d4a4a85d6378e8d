"""Metrics of the taxonomic study: macro F1 per group, t-intervals, visual coherence."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy import stats


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str], labels: tuple[str, str] = ("Yes", "No")) -> float:
    """F1 averaged over the two classes (x100). A class absent from both truth and prediction
    contributes F1 = 0 only if it is in the truth; classes never true are skipped."""
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    f1s = []
    for lab in labels:
        tp = int(((yt == lab) & (yp == lab)).sum())
        fp = int(((yt != lab) & (yp == lab)).sum())
        fn = int(((yt == lab) & (yp != lab)).sum())
        if tp + fn == 0:
            continue
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return 100.0 * float(np.mean(f1s)) if f1s else float("nan")


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, int]:
    """(mean, half-width of the t-interval, n) ignoring NaNs; half-width NaN when n < 2."""
    v = np.asarray([x for x in values if not (isinstance(x, float) and math.isnan(x))], dtype=float)
    n = len(v)
    if n == 0:
        return float("nan"), float("nan"), 0
    if n == 1:
        return float(v[0]), float("nan"), 1
    half = stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n)
    return float(v.mean()), float(half), n


def coherence(features: torch.Tensor, groups: dict[str, Sequence[int]]) -> dict[str, float]:
    """Visual coherence per group: mean pairwise cosine of its members' features.

    ``features``: ``[n_images, tokens, d]`` (mean over tokens first, as in the brief) or
    ``[n_images, d]``; ``groups``: name -> image rows. Groups with < 2 images are skipped.
    """
    x = features.float().mean(1) if features.ndim == 3 else features.float()
    x = torch.nn.functional.normalize(x, dim=-1)
    out = {}
    for name, rows in groups.items():
        rows = list(rows)
        if len(rows) < 2:
            continue
        g = x[torch.tensor(rows)]
        sim = g @ g.T
        n = len(rows)
        out[name] = float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))
    return out


def pearson(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(r, p) over pairs where both are finite; NaNs when fewer than 3 pairs."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    if ok.sum() < 3 or np.ptp(xs[ok]) < 1e-12 or np.ptp(ys[ok]) < 1e-12:
        return float("nan"), float("nan")
    r, p = stats.pearsonr(xs[ok], ys[ok])
    return float(r), float(p)
