"""The taxonomic study's ``report.md`` and console summary, from its tidy rows (tables in
:mod:`~interp.studies.taxonomy.tables`, figures in :mod:`~interp.studies.taxonomy.figures`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interp.io import write_csv, write_text
from interp.studies.taxonomy.figures import write_figures
from interp.studies.taxonomy.tables import (PUBLISHED, RESULT_COLUMNS, aggregate, coherence_table, depth_table,
                                            learning_rows, paired_differences, read_results)


def _fmt(mean: float, half: float) -> str:
    if mean != mean:
        return "-"
    return f"{mean:.1f}" if half != half else f"{mean:.1f} ± {half:.1f}"


def grid_markdown(agg: dict[str, Any], metric: str = "unseen") -> str:
    cells, rates = agg["cells"], agg["rates"]
    cols = sorted(rates, key=lambda a: (not a.endswith("%"), rates[a], a))
    conds = [c for c in ("original", "within", "across", "random-init") if any(k[0] == c for k in cells)]
    lines = ["| condition | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for c in conds:
        vals = [_fmt(*cells[(c, a)][metric][:2]) if (c, a) in cells and metric in cells[(c, a)] else "" for a in cols]
        lines.append(f"| {c} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def published_markdown() -> str:
    cols = ["10%", "30%", "50%", "70%", "90%", "100%"]
    lines = ["| published | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, vals in PUBLISHED.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals[c]:.1f}" for c in cols) + " |")
    return "\n".join(lines)


def _num(v, fmt: str = ".1f") -> str:
    return "-" if v is None or v != v else format(v, fmt)


def recipe_line(cfg) -> str:
    """How the projectors were trained, in a few words: warm start, readout stage, fine-tuning."""
    ws, tr = cfg.warm_start, cfg.train
    parts = []
    if ws.kind != "none":
        parts.append(f"warm start `{ws.kind}`")
        if ws.mixture_epochs > 0:
            parts.append(f"readout stage {ws.mixture_epochs:g} epoch{'' if ws.mixture_epochs == 1 else 's'} "
                         f"(batch {ws.mixture_batch})")
    if tr.max_steps == 0:
        parts.append("no fine-tuning")
    else:
        steps = f", at most {tr.max_steps} steps" if tr.max_steps else ""
        parts.append(f"fine-tuning {tr.epochs:g} epoch{'' if tr.epochs == 1 else 's'} (batch {tr.batch_size}, "
                     f"lr {tr.lr:g}{steps})")
    return "; ".join(parts)


def learning_markdown(table: list[dict], rows: list[dict], vision: dict | None) -> list[str]:
    """The report's section on whether each model learned its task, with the ceilings."""
    test_leaf = {r["run_id"]: r["f1"] for r in rows if r["hypernym"] == "<leaf>"}
    md = ["## Did the models learn? (leaf task, image tokens)", "",
          "Train and held-out (val split) leaf F1 from the in-training monitor at the last step, test leaf F1 "
          "from the evaluation (at init: the classifier warm start, before the readout stage); image-token "
          "collapse = mean pairwise cosine of the projected tokens of images of different concepts (1 = one "
          "token for every image), the same for the image-dependent parts alone (centred), the size of that "
          "part relative to the shared token, and the token norm over the text-token norm. "
          "Learning curves (readout stage, then fine-tuning): `runs/<run>/learning_curve.html`.", "",
          "Answers calibrated: whether the Yes/No threshold was set on training leaf questions after training "
          "(only when the LM puts less than half its mass on \" Yes\"/\" No\", so the loss cannot set it: "
          "`interp/calibration.py`), with the LM's answer mass and the training Yes rate before and after.", "",
          "| run | readout steps | fine-tune steps | held-out leaf F1 at init | train leaf F1 | held-out leaf F1 | "
          "test leaf F1 | token cosine | centred cosine | image part | norm ratio | answers calibrated | warnings |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        md.append(f"| {t['run_id']} | {t.get('readout_steps', 0)} | {t['steps']} | {_num(t['init_heldout_leaf_f1'])} | "
                  f"{_num(t['train_leaf_f1'])} | {_num(t['heldout_leaf_f1'])} | {_num(test_leaf.get(t['run_id']))} | "
                  f"{_num(t['token_cosine'], '.3f')} | {_num(t['centred_cosine'], '.3f')} | {_num(t['image_part'], '.2f')} | "
                  f"{_num(t['norm_ratio'], '.2f')} | {t.get('calibrated') or '-'} | {t['warnings'] or 'none'} |")
    protos = {}
    for t in table:
        if t["prototype_leaf_f1"] is not None:
            protos.setdefault("random-init LM" if t["run_id"].startswith("randlm") else "pretrained LM", t)
    md += ["", "Ceilings measured on the same data:", ""]
    if vision:
        md.append(f"- Vision (no LM): a logistic regression on the pooled encoder features, train renderings -> "
                  f"held-out renderings: top-1 {vision['test_top1']:.1f}%, leaf yes/no "
                  f"F1 {vision['test_leaf_f1']:.1f} (pairwise {vision['test_leaf_pairwise']:.1f}%) on test; "
                  f"{vision['train_leaf_f1']:.1f} on train.")
    for name, t in protos.items():
        md.append(f"- The LM with perfect vision ({name}; each image replaced by its concept's prototype token, "
                  f"learned from leaf questions only): leaf F1 {_num(t['prototype_leaf_f1'])}, hypernym macro F1 "
                  f"{_num(t['prototype_hypernym_f1'])} (pairwise {_num(t['prototype_hypernym_pairwise'])}%). "
                  "An estimate of the hypernym ceiling: the LM's answers when each image is read as the best "
                  "leaf-trained token of its concept.")
    return md + [""]


def headline_text(out: Path) -> str:
    """The console's headline: the grid of unseen-hypernym macro F1 and its chance line, from
    ``out/results.csv``."""
    agg = aggregate(read_results(Path(out) / "results.csv"))
    return "\n".join(["Macro F1 x100, unseen hypernym pairs (mean ± 95% CI):", grid_markdown(agg, "unseen"), "",
                      "Chance line:", grid_markdown(agg, "chance_unseen")])


def _side(mean: float, half: float) -> str:
    if mean != mean or half != half:
        return "undetermined (too few hypernyms)"
    if mean - half > 0:
        return "above"
    return "below" if mean + half < 0 else "not distinguishable from"


def findings_markdown(rows: list[dict], coh: dict) -> list[str]:
    """The brief's four findings, each tested on this run's rows (paired differences with
    95% intervals), and the F1-coherence correlation: what holds here, in plain words."""
    diffs = paired_differences(rows)
    expect = {"original": "far above chance", "within": "close to original", "across": "at chance",
              "random-init": "at chance"}
    md = ["## The brief's findings, tested here", "",
          "Unseen-hypernym macro F1 minus the run's own chance line (paired by hypernym and seed), and the "
          "within/across worlds against the original world (paired likewise); 95% t-intervals.", "",
          "The pairwise columns are threshold-free: the % of unseen (image, hypernym) pairs whose true "
          "hypernym gets a higher Yes-No margin than its distractor (chance 50), so a run's Yes bias does not "
          "enter them.", "",
          "| condition | ablation | the brief expects | F1 - chance | here | F1 - original F1 | here | pairwise % | here |",
          "|---|---|---|---|---|---|---|---|---|"]
    cells = aggregate(rows)["cells"]
    for (c, a), (m, h, n) in sorted(diffs["vs_chance"].items()):
        o = diffs["vs_original"].get((c, a))
        pw = cells.get((c, a), {}).get("pairwise_unseen")
        md.append(f"| {c} | {a} | {expect.get(c, '')} | {_fmt(m, h)} | {_side(m, h)} chance | "
                  + (f"{_fmt(o[0], o[1])} | {_side(o[0], o[1])} original | " if o else "- | - | ")
                  + (f"{_fmt(pw[0], pw[1])} | {_side(pw[0] - 50, pw[1])} 50 |" if pw else "- | - |"))
    md += ["", "F1 against visual coherence (unseen hypernyms; the brief: more coherent hypernyms "
           "generalize better):", ""]
    md += [f"- {c} {a}: r = {v['r']:.2f} (p = {v['p']:.3f}, n = {v['n']})" for (c, a), v in coh.items()]
    return md + [""]


def write_outputs(cfg, rows: list[dict], lm_only: list[dict], out: Path, source: str = "CONFIG",
                  vision: dict | None = None) -> dict[str, Any]:
    """results.csv, lm_only.csv, learning.csv, report.md, figures/*.html|png; prints the leaf grid and
    whether each run learned (the headline grid ends the console: :func:`headline_text`)."""
    out = Path(out)
    # a fixed column order: rows read back from finished runs (rows.json) have sorted keys
    extra = sorted({k for r in rows for k in r} - set(RESULT_COLUMNS))
    write_csv(out / "results.csv", rows, list(RESULT_COLUMNS) + extra)
    write_csv(out / "lm_only.csv", lm_only)
    run_ids = sorted({r["run_id"] for r in rows})
    learning = learning_rows(out, run_ids)
    if learning:
        write_csv(out / "learning.csv", learning)
    agg = aggregate(rows)
    depth = depth_table(rows)
    coh = coherence_table(rows)
    figs = write_figures(agg, depth, rows, out / "figures")

    md = [f"# Taxonomic generalization: `{cfg.name}`", "",
          f"LM `{cfg.model.lm}`, encoder `{cfg.model.encoder}`, projector `{cfg.model.projector}`"
          f" (image tokens pooled to {cfg.model.pool_to or 'all'}), images `{cfg.data.images}`, taxonomy "
          f"`{cfg.data.taxonomy}`; seeds {list(cfg.grid.seeds)}; {recipe_line(cfg)}.",
          "", "Macro F1 x100 on **unseen** hypernym pairs (mean over hypernyms x seeds, 95% t-interval):", "",
          grid_markdown(agg, "unseen"), "", "Chance line (the run's own predictions permuted within each hypernym):",
          "", grid_markdown(agg, "chance_unseen"), "", "Leaf F1 (sanity):", "", grid_markdown(agg, "leaf"), "",
          "Unseen hypernym pairs, pairwise % (threshold-free: the true hypernym's Yes-No margin above its "
          "distractor's for the same image; chance 50):", "", grid_markdown(agg, "pairwise_unseen"), ""]
    if any("seen" in v for v in agg["cells"].values()):
        md += ["Seen hypernym pairs:", "", grid_markdown(agg, "seen"), ""]
    md += findings_markdown(rows, coh) + learning_markdown(learning, rows, vision)
    md += ["Published for reference (Qwen3-0.6B + DINOv2 on THINGS; not the same models or images):", "",
           published_markdown(), "", "## By hypernym depth (unseen)", "", "| condition | ablation | depth | F1 | n |",
           "|---|---|---|---|---|"]
    md += [f"| {c} | {a} | {d} | {_fmt(m, h)} | {n} |" for (c, a, d), (m, h, n) in depth.items()]
    md += ["", "## Visual coherence and F1 (unseen, per hypernym)", "",
           "| condition | ablation | mean coherence (sd) | r(F1, coherence) | p | n |", "|---|---|---|---|---|---|"]
    md += [f"| {c} | {a} | {v['mean_coherence']:.3f} ({v['sd_coherence']:.3f}) | {v['r']:.2f} | {v['p']:.3f} | {v['n']} |"
           for (c, a), v in coh.items()]
    if lm_only:
        md += ["", "## LM-only text test", "",
               "| LM | taxonomy | pairs | macro F1 | majority F1 | yes rate | pairwise acc | cloze acc |",
               "|---|---|---|---|---|---|---|---|"]
        md += [f"| {r['lm']} | {r['taxonomy']} | {r['n_pairs']} | {r['macro_f1']:.1f} | {r['majority_f1']:.1f} | "
               f"{r['yes_rate']:.2f} | {r['pairwise_acc']:.1f} | {r['cloze_acc']:.1f} |" for r in lm_only]
    md += ["", "## Figures", ""] + [f"- [{p.name}](figures/{p.name})" for p in figs if p.suffix == ".html"]
    md += ["", f"Reproduce: `python -m interp.run {source}` (config hash `{cfg.hash}`)."]
    write_text(out / "report.md", "\n".join(md) + "\n")
    print("\nLeaf F1:")
    print(grid_markdown(agg, "leaf"))
    for r in lm_only:
        print(f"LM-only {r['lm']} on {r['taxonomy']}: macro F1 {r['macro_f1']:.1f} (majority {r['majority_f1']:.1f}), "
              f"pairwise {r['pairwise_acc']:.1f}%, cloze {r['cloze_acc']:.1f}%")
    for t in learning:
        print(f"[learned?] {t['run_id']}: train leaf F1 {_num(t['train_leaf_f1'])}, held-out {_num(t['heldout_leaf_f1'])}, "
              f"token cosine {_num(t['token_cosine'], '.3f')}" + (f"  WARNING: {t['warnings']}" if t["warnings"] else ""))
    print(f"\nwritten: {out / 'report.md'}")
    return {"grid_unseen": {f"{c}|{a}": v.get("unseen") for (c, a), v in agg["cells"].items()},
            "grid_leaf": {f"{c}|{a}": v.get("leaf") for (c, a), v in agg["cells"].items()},
            "coherence": {f"{c}|{a}": v for (c, a), v in coh.items()}, "lm_only": lm_only, "learning": learning,
            "vision_ceiling": vision}


