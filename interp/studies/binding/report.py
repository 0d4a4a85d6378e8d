"""The binding study's outputs: the tidy CSVs, the markdown report and the figures.

``report_markdown`` reads the tidy tables and the summary only, so ``figures/binding.py`` can
rewrite the report without re-running anything.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from interp.io import write_csv, write_text
from interp.studies.binding.figures import write_figures
from interp.studies.binding.tables import (BRIEF, group, is_chosen, learned_threshold, not_learned, ordered, ratio,
                                           slot_not_learned, summarise, tidy)


def _fmt(m: float, h: float, scale: float = 100.0, digits: int = 1) -> str:
    if m != m:
        return "-"
    return f"{m * scale:.{digits}f}" + ("" if h != h else f" ± {h * scale:.{digits}f}")


def report_markdown(tables: dict[str, list[dict]], summary: dict, cfg_dict: dict, seconds: float | None = None) -> str:
    t = cfg_dict["task"]
    id_set = f"text@{t['n_objects']}"
    sets = [id_set] + [f"text@{n}" for n in t["ood_objects"]]
    extra = sorted({r["set"] for r in tables["accuracy"]} - set(sets))
    acc = group(tables["accuracy"], ("regime", "set"), "acc")
    regimes = ordered({r["regime"] for r in tables["accuracy"]})
    seeds = sorted({r["seed"] for r in tables["accuracy"]})
    lines = [f"# Binding study: {cfg_dict['name']}", "",
             f"Decoder {cfg_dict['model']['n_layers']} layers x d_model {cfg_dict['model']['d_model']}, "
             f"{cfg_dict['model']['n_heads']} heads, FFN {cfg_dict['model']['d_ff']}, RoPE; pools "
             f"{t['n_colours']} colours / {t['n_shapes']} shapes / {t['n_items']} items; {t['n_objects']} objects "
             f"in distribution, OOD {list(t['ood_objects'])}; image pools {cfg_dict['image']['colours']} colours x "
             f"{cfg_dict['image']['shapes']} shapes ({cfg_dict['image']['encoder']}). Steps: text "
             f"{cfg_dict['train']['text_steps']}, image {cfg_dict['train']['image_steps']}, mix "
             f"{cfg_dict['train']['mix_steps']} ({cfg_dict['train']['mix_frac']:.0%} slot), batch "
             f"{cfg_dict['train']['batch_size']}. Seeds {seeds}." + (f" Wall time {seconds / 60:.1f} min." if seconds else ""),
             "", "## Accuracy (%, mean ± 95% t-interval over seeds)", "",
             "| regime | " + " | ".join(sets + ["OOD mean"] + extra) + " |",
             "|---" * (len(sets) + len(extra) + 2) + "|"]
    for regime in regimes:
        a = summary["accuracy"].get(regime, {})
        cells = [_fmt(*acc.get((regime, s), (float("nan"),) * 3)[:2]) for s in sets]
        cells.append(_fmt(a.get("ood_mean", float("nan")), a.get("ood_ci", float("nan"))))
        cells += [_fmt(*acc.get((regime, s), (float("nan"),) * 3)[:2]) for s in extra]
        lines.append(f"| {regime} | " + " | ".join(cells) + " |")
    lines += ["", "`phase1` is the shared text-only segment before the curriculum; `text` continues on text for the "
              "same number of steps as the other regimes' curriculum.", "",
              f"Chance: 1/{t['n_items']} over items (whole-vocabulary argmax is scored); a model that only learned to "
              f"pick one of the episode's items scores 1/n ({100 / t['n_objects']:.1f}% at n={t['n_objects']}).", "",
              "## Next to the brief", "",
              "| quantity | brief | here |", "|---|---|---|"]
    s = summary["accuracy"]
    if "text" in s:
        lines.append(f"| text-only, in distribution | ~{BRIEF['text_id']:.0f} | {_fmt(s['text']['id'], float('nan'))} |")
        lines.append(f"| text-only, OOD | {BRIEF['text_ood']} | {_fmt(s['text']['ood_mean'], s['text']['ood_ci'])} |")
    if "image-text" in s:
        lines.append(f"| after image training (image-text), text OOD | {BRIEF['image_text_ood']} | "
                     f"{_fmt(s['image-text']['ood_mean'], s['image-text']['ood_ci'])} |")
    lines += ["", "The brief's OOD numbers come from its own OOD object counts and full training; compare the "
              "direction (image-text above text) rather than the values when the training budget differs.", ""]
    lines += claims_markdown(summary.get("claims", []))
    chance = 1.0 / t["n_objects"]
    unlearned = not_learned(summary, t["n_objects"])
    if unlearned:
        lines += [f"**Not learned:** {', '.join(unlearned)} answer(s) in distribution below "
                  f"{100 * learned_threshold(t['n_objects']):.0f}% (chance among the episode's items: "
                  f"{100 * chance:.1f}%). These models have not learned the binding, so their OOD accuracies, "
                  "interchange ratios, knockout and probe results describe an untrained retrieval mechanism and "
                  "cannot be compared with the brief.", ""]
    slot = slot_not_learned(summary, t["n_objects"])
    if slot:
        lines += ["**Slot version not learned:** " + "; ".join(
            f"{r} answers its held-out {name} episodes at {100 * v:.1f}%" for r, (name, v) in slot.items()) +
            f" (below {100 * learned_threshold(t['n_objects']):.0f}%; chance among the episode's items "
            f"{100 * chance:.1f}%). Such a model has not read the images (or the noise version) it was trained on, "
            "so its text accuracies are not an effect of visual data.", ""]
    if tables.get("selection"):
        lines += selection_markdown(tables["selection"])
    # interchange
    if tables["interchange"]:
        sym = group(tables["interchange"], ("regime", "layer"), "symbolic")
        pos = group(tables["interchange"], ("regime", "layer"), "positional")
        src = group(tables["interchange"], ("regime", "layer"), "source")
        layers = sorted({r["layer"] for r in tables["interchange"]})
        regs = ordered({r["regime"] for r in tables["interchange"]})
        lines += ["## Interchange interventions (text, in distribution)", "",
                  "Per patch point (layer L = the residual entering block L; the last one is the output of the "
                  "last block): symbolic/positional ratio P(symbolic)/P(positional), then P(symbolic) / "
                  "P(positional) / P(source answer) in %. Mean over seeds.", "",
                  "| regime | " + " | ".join(f"L{l}" for l in layers) + " |", "|---" * (len(layers) + 1) + "|"]
        for regime in regs:
            cells = []
            for l in layers:
                r = ratio(sym[(regime, l)][0], pos[(regime, l)][0])
                cells.append("-" if r != r else ("inf" if math.isinf(r) else f"{r:.2f}"))
            lines.append(f"| {regime} ratio | " + " | ".join(cells) + " |")
        for regime in regs:
            cells = [f"{100 * sym[(regime, l)][0]:.0f}/{100 * pos[(regime, l)][0]:.0f}/{100 * src[(regime, l)][0]:.0f}"
                     for l in layers]
            lines.append(f"| {regime} sym/pos/src | " + " | ".join(cells) + " |")
        lines.append("")
    if tables["knockout"]:
        ko = group(tables["knockout"], ("regime", "route", "layer"), "acc")
        clean = group(tables["knockout"], ("regime",), "acc_clean")
        lines += ["## Attention knockout (text, in distribution)", "",
                  "Accuracy (%) with the route cut in one layer window; the layer where the cut hurts most, "
                  "and the clean accuracy.", "", "| regime | clean | " + " | ".join(
                      f"{route} (worst layer: acc)" for route in sorted({r['route'] for r in tables['knockout']})) + " |",
                  "|---" * (2 + len({r['route'] for r in tables['knockout']})) + "|"]
        for regime in ordered({r["regime"] for r in tables["knockout"]}):
            cells = [_fmt(clean[(regime,)][0], float("nan"))]
            for route in sorted({r["route"] for r in tables["knockout"]}):
                vals = {k[2]: v[0] for k, v in ko.items() if k[0] == regime and k[1] == route}
                worst = min(vals, key=vals.get)
                cells.append(f"L{worst}: {100 * vals[worst]:.1f}")
            lines.append(f"| {regime} | " + " | ".join(cells) + " |")
        lines.append("")
    if tables["probes"]:
        pr = group(tables["probes"], ("regime", "target", "layer"), "acc")
        targets = sorted({r["target"] for r in tables["probes"]})
        chance = {r["target"]: r["chance"] for r in tables["probes"]}
        lines += ["## Linear probes at the query position (held-out accuracy, %)", "",
                  "Best layer (0 = embeddings, k = output of block k-1) and its accuracy; chance in brackets.", "",
                  "| regime | " + " | ".join(f"{t_} [{100 * chance[t_]:.1f}]" for t_ in targets) + " |",
                  "|---" * (len(targets) + 1) + "|"]
        for regime in ordered({r["regime"] for r in tables["probes"]}):
            cells = []
            for t_ in targets:
                vals = {k[2]: v[0] for k, v in pr.items() if k[0] == regime and k[1] == t_}
                best = max(vals, key=vals.get)
                cells.append(f"L{best}: {100 * vals[best]:.1f}")
            lines.append(f"| {regime} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def selection_markdown(rows: list[dict]) -> list[str]:
    """The continuation rates tried per (regime, seed), their validation accuracy, the one kept."""
    lrs = sorted({float(r["lr"]) for r in rows})
    regimes = ordered({r["regime"] for r in rows})
    units = sorted({(r["regime"], int(r["seed"])) for r in rows}, key=lambda u: (regimes.index(u[0]), u[1]))
    val = {(r["regime"], int(r["seed"]), float(r["lr"])): r for r in rows}
    lines = ["## Continuation learning rate, chosen on validation", "",
             "Each regime's continuation was trained at every rate on the same batches; the one whose model "
             "answered the validation episodes of its own kind best (a held-out picture bank of its own, or text "
             "episodes of another seed; never the evaluation sets above) was kept (**bold**). Validation accuracy, %.",
             "", "| regime | seed | set | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
             "|---" * (len(lrs) + 3) + "|"]
    for regime, seed in units:
        cells = []
        for lr in lrs:
            r = val.get((regime, seed, lr))
            cells.append("-" if r is None else (f"**{100 * float(r['val_acc']):.1f}**" if is_chosen(r)
                                                else f"{100 * float(r['val_acc']):.1f}"))
        name = next(val[(regime, seed, lr)]["set"] for lr in lrs if (regime, seed, lr) in val)
        lines.append(f"| {regime} | {seed} | {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def claim_value(row: dict) -> str:
    """A claim's value as the report prints it: % and points scaled by 100, shares as is."""
    if row["unit"] == "share":
        return _fmt(row["here"], row["ci"], scale=1.0, digits=3)
    return _fmt(row["here"], row["ci"]) + (" points" if row["unit"] == "points" else "")


def claims_markdown(rows: list[dict]) -> list[str]:
    """The "brief's claims, here" section (rows of :func:`~interp.studies.binding.tables.claims`)."""
    if not rows:
        return []
    lines = ["## The brief's claims, here", "",
             "Differences are paired by seed (the same text-only segment continued two ways), mean ± 95% "
             "t-interval; a verdict reads only whether that interval excludes 0.", "",
             "| claim | brief | here | seeds | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {r['claim']} | {r['brief']} | {claim_value(r)} | {r['seeds']} | {r['verdict']} |" for r in rows]
    return lines + [""]


def headline_text(summary: dict, cfg_dict: dict) -> str:
    """The console's headline: per regime, text accuracy in distribution and the OOD mean (%,
    mean ± 95% t-interval over seeds) beside the brief's numbers, and the "not learned" flag."""
    t = cfg_dict["task"]
    brief = {"text": (f"~{BRIEF['text_id']:.0f}", f"{BRIEF['text_ood']}"),
             "image-text": ("", f"{BRIEF['image_text_ood']}")}
    lines = [f"Text accuracy (%, mean ± 95% t-interval over seeds), in distribution ({t['n_objects']} objects) and "
             f"OOD mean ({list(t['ood_objects'])}); chance among the episode's items {100 / t['n_objects']:.1f}%:",
             "| regime | in distribution | OOD mean | brief (in distribution / OOD) |", "|---|---|---|---|"]
    for regime, a in ((r, summary["accuracy"][r]) for r in ordered(summary["accuracy"])):
        b = brief.get(regime)
        lines.append(f"| {regime} | {_fmt(a.get('id', float('nan')), a.get('id_ci', float('nan')))} | "
                     f"{_fmt(a.get('ood_mean', float('nan')), a.get('ood_ci', float('nan')))} | "
                     f"{' / '.join(x or '-' for x in b) if b else '-'} |")
    unlearned = not_learned(summary, t["n_objects"])
    if unlearned:
        lines.append(f"Not learned (in distribution below {100 * learned_threshold(t['n_objects']):.0f}%): "
                     f"{', '.join(unlearned)}")
    for regime, (name, v) in slot_not_learned(summary, t["n_objects"]).items():
        lines.append(f"Slot version not learned: {regime} answers its held-out {name} episodes at {100 * v:.1f}%")
    return "\n".join(lines)


def write_outputs(cfg, results: list[dict], out: Path, seconds: float | None = None,
                  figures: bool = True) -> dict[str, Any]:
    """Write the tidy CSVs, ``report.md`` and ``figures/``; return the summary dict."""
    cfg_dict = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
    tables = tidy(results)
    for name, rows in tables.items():
        write_csv(out / f"{name}.csv", rows)
    summary = summarise(tables, cfg_dict)
    write_text(out / "report.md", report_markdown(tables, summary, cfg_dict, seconds))
    summary["figures"] = [str(p) for p in write_figures(tables, out / "figures")] if figures else []
    return summary
