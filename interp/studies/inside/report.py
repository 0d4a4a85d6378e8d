"""The look-inside study's ``report.md``: the findings, read from its tables."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from interp.io import read_json
from interp.metrics import mean_ci
from interp.studies.inside.tables import causal_summary, image_lens_summary, probe_rows, read_rows, series_by


def sha_note(summ: dict) -> str:
    """`` (sha256 1234abcd...)``: which weights the report read (the same path holds other
    weights after a study re-run on another CPU); empty for a summary that did not record it."""
    sha = summ.get("checkpoint_sha256")
    return f" (sha256 `{sha[:16]}`)" if sha else ""


def findings(out: Path) -> str:
    """A markdown report of what the tables show, each number computed from them."""
    out = Path(out)
    summ = read_json(out / "summary.json")
    lines = [f"# Looking inside {summ['lm']}: {summ['n_concepts']} concepts, {len(summ['hypernyms'])} hypernyms", "",
             f"Checkpoint `{summ['config']['checkpoint']}`{sha_note(summ)}; reproduce with `python -m interp.analyze "
             f"{summ['config']['checkpoint']} --out {out}`.", ""]
    lines += answer_lines(out)
    if (rows := read_rows(out, "probes")) is not None:
        s = series_by(rows, "layer", "probe", "balanced_accuracy")
        lines.append("## Probes (balanced accuracy, chance 0.5; mean over hypernyms, 95% CI)")
        for probe, (ks, m, e) in s.items():
            i = int(np.argmax(m))
            lines.append(f"- {probe}: best layer {ks[i]} ({m[i]:.3f} +/- {e[i]:.3f}); layer 0 {m[0]:.3f}; last {m[-1]:.3f}")
        if "text->image" in s:
            ks, m, e = s["text->image"]
            first = next((k for k, mm, ee in zip(ks, m, e) if mm - ee > 0.5 and mm >= 0.6), None)
            lines.append(f"- text-trained probes transfer to image tokens (mean >= 0.60 and CI above chance) from "
                         f"layer {first}" if first is not None else
                         "- text-trained probes never reach 0.60 with a CI above chance on image tokens")
        lines.append("")
    if (rows := read_rows(out, "directions")) is not None:
        s = series_by(rows, "layer", "hypernym", "cosine")
        per_layer = defaultdict(list)
        shuf = defaultdict(list)
        for r in rows:
            per_layer[int(r["layer"])].append(float(r["cosine"]))
            shuf[int(r["layer"])].append(float(r["shuffled_cosine"]))
        best = max(per_layer, key=lambda k: np.mean(per_layer[k]))
        lines += ["## Hypernym directions",
                  f"- cosine(text direction, image direction) peaks at layer {best}: {np.mean(per_layer[best]):.3f} "
                  f"(shuffled membership {np.mean(shuf[best]):.3f}); layer 0 {np.mean(per_layer[0]):.3f}", ""]
    if (rows := read_rows(out, "steering")) is not None:
        lines.append(f"## Steering at the image positions (layer {int(rows[0]['layer'])})")
        for source in sorted({r.get("direction") or "image" for r in rows}):
            for scale in sorted({float(r["scale"]) for r in rows}):
                if scale == 0:
                    continue
                parts = []
                for cond in ("target", "other-question", "random-direction"):
                    d = [float(r["delta_p_yes"]) for r in rows if float(r["scale"]) == scale and r["condition"] == cond
                         and (r.get("direction") or "image") == source]
                    if d:
                        parts.append(f"{cond} {np.mean(d):+.3f}")
                lines.append(f"- {source}-derived direction, scale {scale:g}: mean delta P(Yes): " + ", ".join(parts))
        lines.append("")
    if (rows := read_rows(out, "lens_ranks")) is not None:
        by_layer: dict[int, list[float]] = defaultdict(list)
        for r in rows:
            by_layer[int(r["layer"])].append(float(r["rank"]))
        best = min(by_layer, key=lambda k: np.median(by_layer[k]))
        top100 = {k: float(np.mean(np.array(v) < 100)) for k, v in by_layer.items()}
        lines += ["## Logit lens at the image position",
                  f"- median rank of the hypernym word is lowest at layer {best} ({np.median(by_layer[best]):.0f}); "
                  f"in the top 100 for {100 * top100[best]:.0f}% of (concept, hypernym) pairs there; "
                  f"last layer median {np.median(by_layer[max(by_layer)]):.0f}", ""]
    if (rows := read_rows(out, "image_lens")) is not None and (first := read_rows(out, "image_lens_first")) is not None:
        lines += image_lens_lines(image_lens_summary(rows, first))
    if (rows := read_rows(out, "similarity")) is not None:
        best = max(rows, key=lambda r: float(r["cka"]))
        lines += ["## Similarity of text and image representations",
                  f"- linear CKA peaks at layer {int(best['layer'])}: {float(best['cka']):.3f} (shuffled "
                  f"{float(best['cka_shuffled']):.3f}); RSA there {float(best['rsa']):.3f}", ""]
    if "patching" in summ:
        p = summ["patching"]
        a = p["agreement"]
        rows = read_rows(out, "patching") or []
        top = max(rows, key=lambda r: abs(float(r["exact_effect"]))) if rows else None
        lines += [f"## Patching {p['clean']} -> {p['corrupt']} (\"{p['question']}\")",
                  f"- logit(Yes) - logit(No): clean {p['clean_metric']:+.3f}, corrupted {p['corrupted_metric']:+.3f}"
                  + ("; the pair is the member the LM most firmly answers Yes and the non-member it most firmly "
                     "answers No" if p.get("chosen") == "auto" else "")]
        if p["clean_metric"] <= p["corrupted_metric"]:
            lines.append("- WARNING: the LM answers this pair the wrong way round (clean margin not above the "
                         "corrupted one), so the grid explains no right answer; use patch_clean=auto")
        if top:
            lines.append(f"- largest exact effect: layer {int(top['layer'])}, position {int(top['position'])} "
                         f"({top['modality']}): {float(top['exact_effect']):+.3f}")
        lines += [f"- attribution vs exact over all {a['n_cells']} cells: Pearson {a['pearson']:.3f}, Spearman "
                  f"{a['spearman']:.3f}, sign agreement {a['sign_agreement']:.2f}; exact grid {p['seconds_exact']:.1f} s, "
                  f"attribution {p['seconds_attribution']:.1f} s (one run)", ""]
    if (rows := read_rows(out, "causal")) is not None and rows:
        lines += causal_lines(rows, summ.get("causal", {}))
    lines.append("Figures: " + ", ".join(sorted(p.name for p in out.glob("*.html"))))
    return "\n".join(lines) + "\n"


def share(k: int, n: int) -> str:
    """``"40% (2/5)"``; ``"- (0/0)"`` without any."""
    return f"{100 * k / n:.0f}% ({k}/{n})" if n else "- (0/0)"


def layer_text(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def image_lens_lines(summary: list[dict]) -> list[str]:
    """The report section of the ``image_lens`` analysis from :func:`image_lens_summary`: a table
    per readout and states, text (the positive control) first, and which readouts pass it."""
    if not summary:
        return []
    k = summary[0]["top_k"]
    lines = ["## Readouts of the image token (logit lens, nearest embedding, Patchscope)",
             f"Each readout ranks the concept word (\"heel\" for a high heel) and the word of its most specific "
             f"hypernym, per layer; it names a word when the rank is below {k}. The text states (the concept word in "
             "\"This is a picture of ...\") are the positive control: a readout that does not name the word from its "
             "own text cannot be expected to from the image.", "",
             "| readout | states | concept word named | median first layer | hypernym word named | median first layer "
             "| hypernym named where the concept is not |", "|---|---|---|---|---|---|---|"]
    for s in summary:
        states = "text (control)" if s["modality"] == "text" else s["modality"]
        lines.append(f"| {s['readout']} | {states} | {share(s['concept_named'], s['n'])} | "
                     f"{layer_text(s['concept_median'])} | {share(s['hypernym_named'], s['n'])} | "
                     f"{layer_text(s['hypernym_median'])} | {share(s['hypernym_only'], s['n'])} |")
    text = [s for s in summary if s["modality"] == "text"]
    passing = [s["readout"] for s in text if s["n"] and 2 * s["concept_named"] >= s["n"]]
    failing = [s["readout"] for s in text if s["readout"] not in passing]
    lines.append("")
    if text:
        lines.append(f"- positive control (names the concept word from the text states for at least half the "
                     f"concepts): passed by {', '.join(passing) or 'none'}; failed by {', '.join(failing) or 'none'}")
    lines.append("")
    return lines


def headline_text(out: Path) -> str:
    """The console's headline: per probe, the best layer and its mean balanced accuracy (95% CI)
    beside layer 0 and the last layer (chance 0.5); empty when the probes did not run."""
    rows = read_rows(Path(out), "probes")
    if rows is None:
        return ""
    lines = ["| probe | best layer | balanced accuracy there | layer 0 | last layer |", "|---|---|---|---|---|"]
    for r in probe_rows(rows):
        lines.append(f"| {r['probe']} | {r['best_layer']} | {r['best'][0]:.3f} ± {r['best'][1]:.3f} | "
                     f"{r['layer0'][0]:.3f} | {r['last'][0]:.3f} |")
    return "Probes (balanced accuracy, chance 0.5; mean over hypernyms):\n" + "\n".join(lines)


def ci_text(stat: tuple[float, float, int], fmt: str = "+.2f") -> str:
    m, h, _ = stat
    return f"{m:{fmt}} +/- {h:.2f}" if h == h else f"{m:{fmt}}"


def causal_lines(rows: list[dict], summ: dict) -> list[str]:
    """The ``causal`` section: the restored share per layer and source, mean +/- 95% CI over pairs."""
    table = causal_summary(rows)
    n_pairs = table[0]["image"][2] if table else 0
    hyps = summ.get("hypernyms") or sorted({r["hypernym"] for r in rows})
    lines = [f"## Causal: a state written at the image position ({n_pairs} image pairs over {len(hyps)} hypernyms: "
             + ", ".join(hyps) + ")",
             "Each pair is a member image the LM most firmly answers Yes for and a non-member it most firmly answers No "
             "for, on the hypernym's question. At `blocks.{l}.hook_resid_pre` of the non-member's run, the image "
             "positions get the member image's own states (image), the member's word's text state from \"This is a "
             "picture of ...\" (word), or the non-member's own word's state (control word). Share of the "
             "clean - corrupted margin restored (1 = the member's answer, 0 = no change); mean +/- 95% CI over pairs.",
             "", "| layer | image | word | control word | word - control |", "|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['layer']} | {ci_text(r['image'])} | {ci_text(r['word'])} | {ci_text(r['control word'])} "
                     f"| {ci_text(r['word - control'])} |")
    return lines + [""]


def answer_lines(out: Path) -> list[str]:
    """The study's question answered from its tables: at which layers does an image's state
    look like (or act like) its hypernym's word? One line per measure, each with its baseline,
    and the layers where any measure says yes."""
    yes: dict[str, list[int]] = {}
    image_probe = ""
    lines = ["## The answer: where does an image of a robin start to look like the word \"bird\"?", ""]
    if (rows := read_rows(out, "probes")) is not None:
        series = series_by(rows, "layer", "probe", "balanced_accuracy")
        if "image" in series:
            ki, mi, ei = series["image"]
            j = int(np.argmax(mi))
            if mi[j] - ei[j] > 0.5:
                image_probe = (f" Probes trained on image states do find the hypernym there ({mi[j]:.3f} +/- "
                               f"{ei[j]:.3f} at layer {ki[j]}): it is present, in another form than the word's.")
        ks, m, e = series.get("text->image", ([], [], []))
        hits = [k for k, mm, ee in zip(ks, m, e) if mm - ee > 0.5 and mm >= 0.6]
        yes["text->image probes"] = hits
        i = int(np.argmax(m)) if m else 0
        lines.append(f"- Probes trained on the words' text states, applied to image states: best "
                     f"{m[i]:.3f} +/- {e[i]:.3f} at layer {ks[i]} (chance 0.5); above 0.60 with the CI above chance at "
                     f"{hits or 'no layer'}." if m else "- Probes: no text->image rows.")
    if (rows := read_rows(out, "directions")) is not None:
        gap: dict[int, list[float]] = defaultdict(list)
        for r in rows:
            gap[int(r["layer"])].append(float(r["cosine"]) - float(r["shuffled_cosine"]))
        stats = {k: mean_ci(v) for k, v in sorted(gap.items())}
        hits = [k for k, (mm, h, _) in stats.items() if mm - h > 0]
        yes["direction cosine"] = hits
        best = max(stats, key=lambda k: stats[k][0])
        lines.append(f"- Hypernym directions from text and from images: cosine minus its shuffled-membership "
                     f"baseline is at most {ci_text(stats[best], '+.3f')} (layer {best}); above the baseline with its "
                     f"CI at layers {hits or 'none'}. A cosine this small means different directions.")
    if (rows := read_rows(out, "image_lens")) is not None and (first := read_rows(out, "image_lens_first")) is not None:
        summary = image_lens_summary(rows, first)
        img = [s for s in summary if s["modality"] == "image"]
        txt = {s["readout"]: s for s in summary if s["modality"] == "text"}
        parts = [f"{s['readout']} {share(s['concept_named'], s['n'])} / {share(s['hypernym_named'], s['n'])}"
                 f" (text control {share(txt[s['readout']]['concept_named'], s['n'])})"
                 for s in img if s['readout'] in txt]
        # a readout counts when it names the hypernym word from the image for at least a tenth of the concepts
        yes["readouts"] = sorted({int(s["hypernym_median"]) for s in img if s["n"] and 10 * s["hypernym_named"] >= s["n"]
                                  and s["hypernym_median"] is not None})
        lines.append("- Readouts of the image state (concept word / hypernym word named at some layer): "
                     + "; ".join(parts)
                     + ".")
    if (rows := read_rows(out, "similarity")) is not None:
        best = max(rows, key=lambda r: float(r["cka"]))
        lines.append(f"- Geometry: linear CKA between the concepts' text and image states peaks at layer "
                     f"{int(best['layer'])} ({float(best['cka']):.2f}; shuffled {float(best['cka_shuffled']):.2f}).")
    if (rows := read_rows(out, "causal")) is not None and rows:
        table = causal_summary(rows)
        hits = [r["layer"] for r in table if r["word"][0] - r["word"][1] > 0 and
                r["word - control"][0] - r["word - control"][1] > 0]
        yes["word written at the image position"] = hits
        bw = max(table, key=lambda r: r["word - control"][0])
        carried = [r["layer"] for r in table if r["image"][0] >= 0.5]
        lines.append(f"- Causal, cross-modal: the member's word written at the image position restores "
                     f"{ci_text(bw['word'])} of the answer at layer {bw['layer']} (control word "
                     f"{ci_text(bw['control word'])}; difference {ci_text(bw['word - control'])}); the word beats its "
                     f"control with both CIs above 0 at layers {hits or 'none'}.")
        first = table[0]
        if first["control word"][0] - first["control word"][1] > 0.5:
            lines.append(f"- Any word does it: the non-member's own word written at the image position restores "
                         f"{ci_text(first['control word'])} at layer {first['layer']}, so a text state in the image "
                         f"slot "
                         f"moves the answer toward Yes whichever concept it names; what the word adds beyond its "
                         f"control is the concept.")
        lines.append(f"- Causal, within images: the member image's own states restore at least half of the answer at "
                     f"layers {carried or 'none'}"
                     + (f"; from layer {max(carried) + 1} on, the answer no longer reads the image position (it has "
                        f"moved to the text positions)." if carried and max(carried) + 1 < len(table) else "."))
    if (rows := read_rows(out, "steering")) is not None and any(r.get("direction") == "text" for r in rows):
        top = max(float(r["scale"]) for r in rows)
        sel = {(r["hypernym"], r["condition"]): float(r["delta_p_yes"]) for r in rows
               if r.get("direction") == "text" and float(r["scale"]) == top}
        diff = mean_ci([sel[(h, "target")] - sel[(h, "random-direction")] for h, c in sel if c == "target"
                        and (h, "random-direction") in sel])
        yes["text-derived steering"] = [int(rows[0]["layer"])] if diff[0] - diff[1] > 0 else []
        lines.append(f"- Steering with text-derived hypernym directions at the image position (layer "
                     f"{int(rows[0]['layer'])}, scale {top:g}): delta P(Yes) minus a random direction's "
                     f"{ci_text(diff, '+.3f')} over hypernyms.")
    found = sorted({k for v in yes.values() for k in v})
    lines += ["", "**Answer:** " + (
        f"evidence above its baseline at layers {found}, from: " + ", ".join(k for k, v in yes.items() if v)
        + " (sizes in the lines above); none from: " + (", ".join(k for k, v in yes.items() if not v) or "-") + "."
        if found else "at no layer, by any of these measures: " + ", ".join(yes) + " all stay at their baselines.")
        + image_probe, ""]
    return lines
