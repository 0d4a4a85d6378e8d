"""The visual-alignment study's report: markdown, tables and figures written from the rows (also
from a finished run's folder, ``load_outputs``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from interp.io import read_json, write_csv, write_json, write_text
from interp.metrics import mean_ci
from interp.studies.alignment.config import AlignmentConfig, config_from_dict
from interp.studies.alignment.figures import write_figures
from interp.studies.alignment.tables import (LM_ONLY_NUMERIC, ROW_FIELDS, SUMMARY_FIELDS, correlations, lm_scores,
                                             read_csv, summarize)


def _fmt(m: float, h: float) -> str:
    if m != m:
        return "-"
    return f"{m:.1f}" if h != h else f"{m:.1f} ± {h:.1f}"



def paired_differences(rows: list[dict], score_layer: int) -> list[dict]:
    """Top-1 at the score layer of LM ``a`` minus LM ``b``, paired over seeds (the same seed
    is the same class split and head initialisation for every LM), per split: every pair
    of pretrained LMs and every LM against its random-init control. Mean and 95%
    t-interval of the per-seed differences."""
    at: dict[tuple[str, str], dict[int, float]] = {}
    meta: dict[str, dict] = {}
    for r in rows:
        if int(r["layer"]) == score_layer % int(r["n_layers"]):
            at.setdefault((r["lm"], r["split"]), {})[int(r["seed"])] = float(r["top1"])
            meta[r["lm"]] = r
    lms = sorted(meta)
    pre = [m for m in lms if meta[m]["lm_init"] == "pretrained"]
    pairs = [(a, b) for i, a in enumerate(pre) for b in pre[i + 1:]]
    pairs += [(a, b) for a in pre for b in lms if meta[b]["lm_init"] == "random" and meta[b]["lm_base"] ==
              meta[a]["lm_base"]]
    out = []
    for split in sorted({r["split"] for r in rows}):
        for a, b in pairs:
            xa, xb = at.get((a, split), {}), at.get((b, split), {})
            seeds = sorted(set(xa) & set(xb))
            m, h, n = mean_ci([xa[s] - xb[s] for s in seeds])
            out.append({"split": split, "a": a, "b": b, "diff_top1": m, "diff_ci": h, "n_seeds": n})
    return out



def report_markdown(cfg: AlignmentConfig, summary: list[dict], scores: list[dict], lm_only: list[dict],
                    corr: list[dict], skipped: Sequence[tuple[str, str]] = (),
                    diffs: Sequence[dict] = ()) -> str:
    """The study's report; every number comes from the tables passed in."""
    h = cfg.head
    lines = [f"# Visual alignment of language models: `{cfg.name}`", "",
             f"Class prompt `{cfg.data.template}` ({cfg.data.pool} token, `blocks.{{i}}.hook_resid_post`), image "
             f"encoder `{cfg.models.encoder}` (mean-pooled), images `{cfg.data.images}`, taxonomy "
             f"`{cfg.data.taxonomy}`. Head: {h.text_layers}-layer text MLP (width {h.text_hidden}, BatchNorm, ReLU, "
             f"dropout {h.dropout}, L2 norm), image side {h.image_side}, InfoNCE with fixed logit scale "
             f"{h.logit_scale:.2f}, AdamW lr {h.lr}, wd {h.weight_decay}, {h.steps} steps of {h.batch_size} distinct "
             f"classes, warmup {h.warmup_frac:.0%} then cosine. Held out: about {cfg.split.test_frac:.0%} of the "
             f"classes per seed (seeds {list(cfg.split.seeds)}), never seen in training; the **alignment score** is "
             f"zero-shot top-1 (%) among the held-out classes at the score layer, mean ± 95% t-interval over seeds.",
             ""]
    if skipped:
        lines += ["Skipped (not available here): " + ", ".join(n for n, _ in skipped), ""]
    for split in sorted({s["split"] for s in scores}):
        what = ("random classes held out" if split == "concept" else
                "whole top-level hypernyms held out; classes straddling held-out and training hypernyms dropped")
        lines += [f"## Split by {split} ({what})", "",
                  "| LM | init | layer | held-out classes | top-1 | top-5 | chance top-1 | best layer* | top-1 there |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s in [s for s in scores if s["split"] == split]:
            lines.append(f"| {s['lm_base']} | {s['lm_init']} | {s['score_layer']}/{s['n_layers'] - 1} | "
                         f"{s['n_test_classes']:.0f} | {_fmt(s['top1'], s['top1_ci'])} | "
                         f"{_fmt(s['top5'], s['top5_ci'])} | {s['chance1']:.1f} | {s['best_layer']} | "
                         f"{_fmt(s['best_top1'], s['best_top1_ci'])} |")
        lines += ["", "*best layer: chosen on the held-out classes themselves, so optimistic; the score layer is "
                  "fixed in advance.", ""]
        dd = [d for d in diffs if d["split"] == split]
        if dd:
            lines += ["Paired differences at the score layer (same seed = same split and head init):", "",
                      "| LM a | LM b | top-1 a − b | seeds |", "|---|---|---|---|"]
            lines += [f"| {d['a']} | {d['b']} | {_fmt(d['diff_top1'], d['diff_ci'])} | {d['n_seeds']} |" for d in dd]
            lines.append("")
        lines += ["Per layer (mean ± 95% CI over seeds; fit = top-1 among the training classes on their own "
                  "images; same-group = share of top-1 predictions sharing a top-level hypernym with the truth, "
                  "vs its chance):", "",
                  "| LM | layer | top-1 | top-5 | fit | same-group (chance) |", "|---|---|---|---|---|---|"]
        for s in [s for s in summary if s["split"] == split]:
            lines.append(f"| {s['lm']} | {s['layer']} | {_fmt(s['top1'], s['top1_ci'])} | "
                         f"{_fmt(s['top5'], s['top5_ci'])} | {s['train_top1']:.1f} | "
                         f"{s['same_group_top1']:.1f} ({s['same_group_chance']:.1f}) |")
        lines.append("")
    if lm_only:
        lines += ["## LM-only hypernym test (the taxonomic study's, same taxonomy)", "",
                  "Macro F1 of Yes/No answers to \"Is it true that X is a Y?\" (a base LM that says Yes to "
                  "everything sits at the majority F1), and two bias-free variants: pairwise (true hypernym vs its "
                  "distractor by Yes−No margin) and cloze (\"X is a kind of\" + hypernym vs distractor).", "",
                  "| LM | macro F1 | majority F1 | yes rate | pairwise acc | cloze acc |", "|---|---|---|---|---|---|"]
        for r in lm_only:
            lines.append(f"| {r['lm']} | {r['macro_f1']:.1f} | {r['majority_f1']:.1f} | {r['yes_rate']:.2f} | "
                         f"{r['pairwise_acc']:.1f} | {r['cloze_acc']:.1f} |")
        lines += ["", "## Alignment score vs LM-only test (Pearson over LM variants)", "",
                  "| split | score | LM-only metric | r | p | n |", "|---|---|---|---|---|---|"]
        for c in corr:
            r = "-" if c["r"] != c["r"] else f"{c['r']:.2f}"
            p = "-" if c["p"] != c["p"] else f"{c['p']:.3f}"
            lines.append(f"| {c['split']} | {c['score']} | {c['lm_only_metric']} | {r} | {p} | {c['n']} |")
        lines += ["", "With so few LM variants (n above, pretrained and random-init together) a correlation is a "
                  "description, not evidence; the published one (r = 0.768) is over dozens of LMs."]
    return "\n".join(lines) + "\n"



def headline_text(scores: Sequence[dict]) -> str:
    """The console's headline: per LM variant and split, zero-shot top-1 at the score layer
    (mean ± 95% CI over seeds) beside chance and the best layer."""
    lines = ["Zero-shot top-1 on held-out classes (%), at the score layer:",
             "| LM | held out by | layer | top-1 | chance | best layer (top-1) |", "|---|---|---|---|---|---|"]
    lines += [f"| {s['lm']} | {s['split']} | {s['score_layer']} | {_fmt(s['top1'], s['top1_ci'])} | "
              f"{s['chance1']:.2f} | {s['best_layer']} ({_fmt(s['best_top1'], s['best_top1_ci'])}) |" for s in scores]
    return "\n".join(lines)


def tables(cfg: AlignmentConfig, rows: list[dict], lm_only: list[dict]) -> dict[str, Any]:
    """Summary, scores, paired differences and correlations from the per-unit rows."""
    summary = summarize(rows)
    scores = lm_scores(summary, cfg.models.score_layer)
    return {"summary": summary, "scores": scores, "diffs": paired_differences(rows, cfg.models.score_layer),
            "correlation": correlations(scores, lm_only) if lm_only else []}



def write_outputs(cfg: AlignmentConfig, rows: list[dict], lm_only: list[dict], out: Path,
                  skipped: Sequence[tuple[str, str]] = (), *, fig_dir: Path | None = None,
                  study_dir: Path | None = None, echo: bool = True) -> dict[str, Any]:
    """Tables (CSV/JSON), report.md and figures into ``out`` (figures into ``fig_dir``,
    default ``out/figures``); ``study_dir`` (default ``out``) holds the per-unit files the
    confusion figures read."""
    out = Path(out)
    t = tables(cfg, rows, lm_only)
    write_csv(out / "results.csv", rows, ROW_FIELDS)
    write_csv(out / "summary.csv", t["summary"], SUMMARY_FIELDS)
    write_csv(out / "scores.csv", t["scores"], list(t["scores"][0]) if t["scores"] else [])
    write_csv(out / "differences.csv", t["diffs"], ["split", "a", "b", "diff_top1", "diff_ci", "n_seeds"])
    if lm_only:
        write_csv(out / "lm_only.csv", lm_only, list(lm_only[0]))
    write_json(out / "correlation.json", t["correlation"])
    text = report_markdown(cfg, t["summary"], t["scores"], lm_only, t["correlation"], skipped, t["diffs"])
    write_text(out / "report.md", text)
    files = write_figures(study_dir or out, fig_dir or out / "figures", score_layer=cfg.models.score_layer,
                          confusion_lm=cfg.eval.confusion_lm)
    if echo:
        print(text)
    return {"scores": t["scores"], "differences": t["diffs"], "correlation": t["correlation"], "n_units": len(rows),
            "figures": [str(f) for f in files]}



def load_outputs(study_dir: Path) -> tuple[AlignmentConfig, list[dict], list[dict], list[tuple[str, str]]]:
    """(config, per-unit rows, LM-only rows, skipped LMs) of a finished study folder."""
    study_dir = Path(study_dir)
    if not (study_dir / "results.csv").exists():
        raise FileNotFoundError(f"no results.csv in {study_dir}: run `python -m interp.alignment CONFIG` first")
    meta = read_json(study_dir / "config.json")
    lm_path = study_dir / "lm_only.csv"
    lm_only = read_csv(lm_path, LM_ONLY_NUMERIC) if lm_path.exists() else []
    return (config_from_dict(meta["config"]), read_csv(study_dir / "results.csv"), lm_only,
            [tuple(s) for s in meta.get("skipped_lms", [])])
