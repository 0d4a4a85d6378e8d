"""The visual-alignment study's tidy tables: the per-unit rows, their summary over seeds with
intervals, the per-LM scores and their correlation with the LM-only test."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from interp import io
from interp.metrics import mean_ci, pearson


LM_ONLY_METRICS = ("macro_f1", "pairwise_acc", "cloze_acc")



# ------------------------------------------------------------------- outputs
ROW_FIELDS = ["lm", "lm_base", "lm_init", "lm_seed", "layer", "n_layers", "rel_depth", "split", "seed",
              "n_train_classes", "n_test_classes", "n_dropped_classes", "n_test_images", "top1", "top5", "chance1",
              "chance5", "macro_top1", "train_top1", "same_group_top1", "same_group_chance", "loss_first", "loss_last", "seconds",
              "held_out_groups"]



NUMERIC = {"lm_seed": int, "layer": int, "n_layers": int, "rel_depth": float, "seed": int, "n_train_classes": int,
           "n_test_classes": int, "n_dropped_classes": int, "n_test_images": int, "top1": float, "top5": float,
           "chance1": float, "chance5": float, "macro_top1": float, "train_top1": float, "same_group_top1": float,
           "same_group_chance": float, "loss_first": float, "loss_last": float, "seconds": float}



def read_csv(path: Path, numeric: dict[str, type] | None = None) -> list[dict]:
    """A table of this study, its numeric columns (default :data:`NUMERIC`) parsed."""
    return io.read_csv(path, NUMERIC if numeric is None else numeric)



def summarize(rows: list[dict]) -> list[dict]:
    """Per (LM variant, split, layer): mean and 95% t-interval over seeds of top-1/top-5,
    mean chance and fit (training-class top-1)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["lm"], r["split"], int(r["layer"])), []).append(r)
    out = []
    for (lm, split, layer), rs in sorted(groups.items()):
        t1, h1, n = mean_ci([r["top1"] for r in rs])
        t5, h5, _ = mean_ci([r["top5"] for r in rs])
        out.append({"lm": lm, "lm_base": rs[0]["lm_base"], "lm_init": rs[0]["lm_init"], "split": split, "layer": layer,
                    "n_layers": rs[0]["n_layers"], "rel_depth": rs[0]["rel_depth"], "n_seeds": n,
                    "top1": t1, "top1_ci": h1, "top5": t5, "top5_ci": h5,
                    "chance1": float(np.mean([r["chance1"] for r in rs])),
                    "chance5": float(np.mean([r["chance5"] for r in rs])),
                    "train_top1": float(np.mean([r["train_top1"] for r in rs])),
                    "same_group_top1": float(np.mean([r["same_group_top1"] for r in rs])),
                    "same_group_chance": float(np.mean([r["same_group_chance"] for r in rs])),
                    "n_test_classes": float(np.mean([r["n_test_classes"] for r in rs]))})
    return out



SUMMARY_FIELDS = ["lm", "lm_base", "lm_init", "split", "layer", "n_layers", "rel_depth", "n_seeds", "top1", "top1_ci",
                  "top5", "top5_ci", "chance1", "chance5", "train_top1", "same_group_top1", "same_group_chance",
                  "n_test_classes"]



SUMMARY_NUMERIC = {"layer": int, "n_layers": int, "rel_depth": float, "n_seeds": int, "top1": float,
                   "top1_ci": float, "top5": float, "top5_ci": float, "chance1": float, "chance5": float,
                   "train_top1": float, "same_group_top1": float, "same_group_chance": float,
                   "n_test_classes": float}



def lm_scores(summary: list[dict], score_layer: int) -> list[dict]:
    """Per (LM variant, split): the score at ``score_layer`` (negative = from the end) and
    at the best layer (max of the seed means: optimistic, selected on the test classes)."""
    by: dict[tuple[str, str], list[dict]] = {}
    for s in summary:
        by.setdefault((s["lm"], s["split"]), []).append(s)
    out = []
    for (lm, split), ss in sorted(by.items()):
        n = ss[0]["n_layers"]
        want = score_layer % n
        at = [s for s in ss if s["layer"] == want]
        best = max(ss, key=lambda s: s["top1"])
        sc = at[0] if at else {"top1": float("nan"), "top1_ci": float("nan"), "top5": float("nan"),
                               "top5_ci": float("nan"), "chance1": best["chance1"], "n_seeds": 0}
        out.append({"lm": lm, "lm_base": ss[0]["lm_base"], "lm_init": ss[0]["lm_init"], "split": split,
                    "score_layer": want, "n_layers": n, "n_test_classes": sc.get("n_test_classes", float("nan")),
                    "top1": sc["top1"], "top1_ci": sc["top1_ci"],
                    "top5": sc["top5"], "top5_ci": sc["top5_ci"], "chance1": sc["chance1"],
                    "n_seeds": sc["n_seeds"], "best_layer": best["layer"], "best_top1": best["top1"],
                    "best_top1_ci": best["top1_ci"]})
    return out



def correlations(scores: list[dict], lm_only: list[dict]) -> list[dict]:
    """Pearson r of the alignment score (at the score layer, and at the best layer) with each
    LM-only metric, over LM variants, per split; n is the number of LM variants."""
    by_lm = {r["lm"]: r for r in lm_only}
    out = []
    for split in sorted({s["split"] for s in scores}):
        ss = [s for s in scores if s["split"] == split and s["lm"] in by_lm]
        for which in ("top1", "best_top1"):
            for m in LM_ONLY_METRICS:
                x = [by_lm[s["lm"]][m] for s in ss]
                y = [s[which] for s in ss]
                r, p = pearson(x, y)
                out.append({"split": split, "score": which, "lm_only_metric": m, "r": r, "p": p, "n": len(ss),
                            "lms": [s["lm"] for s in ss]})
    return out



LM_ONLY_NUMERIC = {"n_pairs": int, "n_hypernyms": int, "macro_f1": float, "majority_f1": float, "yes_rate": float,
                   "pairwise_acc": float, "cloze_acc": float}
