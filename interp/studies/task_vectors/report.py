"""The study's outputs: the chance line (best constant answer), the CSV tables, ``report.md``
with the findings against the brief's published numbers, and the figures."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from interp.analysis import task_vectors as tvs
from interp.data.tasks import load_task
from interp.io import write_csv, write_json, write_text
from interp.models.lm import ModelUnavailableError, load_tokenizer
from interp.studies.task_vectors.config import LABELS, SOURCES, TARGETS, TaskVectorConfig
from interp.studies.task_vectors.figures import write_figures
from interp.studies.task_vectors.tables import CSV_FIELDS, CSV_FILES, cosine_summary, read_tables, table_markdown


FIGURE_MODES = ("png", "html", "none")


def constant_rows(cfg: TaskVectorConfig, results: list[dict], rows: list[dict]) -> list[dict]:
    """The chance line of each (task, target): exact match of the best single answer token,
    i.e. the largest share of test items that one first token answers (a vector that makes
    the model say " animal" to everything scores this much). Model-free: tokenizer only."""

    if not results:
        return []
    lm = str(results[0].get("lm") or cfg.model.lm).split("+random")[0]
    try:
        tok = load_tokenizer(lm)
    except (KeyError, OSError, ModelUnavailableError):  # not registered / not available here: no chance line, still a report
        return []
    out = []
    for res in results:
        task = load_task(res["task"], cfg.data.task_dir or None)
        test = task.split("test")[: cfg.data.max_test or None]
        accepted = [set(tvs.answer_token_ids(tok, it.answers)) for it in test]
        counts: dict[int, int] = defaultdict(int)
        for a in accepted:
            for t in a:
                counts[t] += 1
        best = max(counts, key=lambda t: (counts[t], -t))
        for target in sorted({r["target"] for r in rows if r["kind"] == "test" and r["task"] == task.name}):
            out.append({"kind": "test", "task": task.name, "target": target, "method": "constant", "layer": None,
                        "em": counts[best] / len(test), "set": counts[best] / len(test), "n": len(test),
                        "answer": tok.decode([best])})
    return out


def write_outputs(cfg: TaskVectorConfig, results: list[dict], out: Path, source: str = "CONFIG",
                  figures: str = "png") -> dict[str, Any]:
    rows = [r for res in results for r in res["rows"]]
    rows += constant_rows(cfg, results, rows)
    for kind, name in CSV_FILES.items():
        write_csv(out / name, [r for r in rows if r["kind"] == kind], CSV_FIELDS[kind])
    tables = read_tables(out)
    layers = sorted({r["layer"] for r in tables["cosine"]}) or list(cfg.method.layers)
    cos = cosine_summary(out, [r["task"] for r in results], layers)
    write_json(out / "cosine_control.json", cos)
    report = report_markdown(cfg, results, tables, cos, source)
    write_text(out / "report.md", report)
    files = write_figures(tables, cos, out / "figures", png=figures == "png") if figures != "none" else []
    return {"table": table_markdown(tables["test"]), "chosen_layers": {r["task"]: r["chosen"] for r in results},
            "figures": [str(f) for f in files], "n_items": {r["task"]: r["n"] for r in results}}


def _mean_em(rows: list[dict], method: str, target: str) -> float:
    v = [r["em"] for r in rows if r["method"] == method and r["target"] == target]
    return float(np.mean(v)) if v else float("nan")


def findings(test_rows: list[dict], cos: dict[str, Any], curve: list[dict] | None = None) -> list[str]:
    """The brief's findings, each checked on the measured means (over tasks with that target)."""
    out = []
    e = lambda m, t: _mean_em(test_rows, m, t)  # noqa: E731

    def yn(ok: bool) -> str:
        return "yes" if ok else "no"

    nc_i, pr_i, tv_i, tv_t = e("no_context", "image"), e("prompting_text", "image"), e("text_examples", "image"), e("text_examples", "text")
    rnd_i, ch_i, ch_t, nc_t = e("random", "image"), e("constant", "image"), e("constant", "text"), e("no_context", "text")
    out.append(f"text task vector on text queries beats no context ({tv_t:.2f} vs {nc_t:.2f}): {yn(tv_t > nc_t)}; "
               f"and the best constant answer ({ch_t:.2f}): {yn(tv_t > ch_t)}; prompting with the same examples "
               f"gets {e('prompting_text', 'text'):.2f}")
    if tv_i == tv_i:
        out.append(f"text task vector on image queries beats no context ({tv_i:.2f} vs {nc_i:.2f}): {yn(tv_i > nc_i)}")
        out.append(f"... and beats text examples in the same prompt ({tv_i:.2f} vs {pr_i:.2f}): {yn(tv_i > pr_i)}")
        out.append(f"... and beats a random vector of the same norm ({tv_i:.2f} vs {rnd_i:.2f}): {yn(tv_i > rnd_i)}")
        out.append(f"... and beats the best constant answer ({tv_i:.2f} vs {ch_i:.2f}): {yn(tv_i > ch_i)}")
        tv_ti = _mean_em([r for r in test_rows if r["task"] in {q["task"] for q in test_rows if q["target"] == "image"}],
                         "text_examples", "text")
        out.append(f"text->text patch above text->image patch, on the same (image) tasks ({tv_ti:.2f} vs {tv_i:.2f}): "
                   f"{yn(tv_ti > tv_i)}")
        im_i = e("image_examples", "image")
        out.append(f"image-example vectors work on image queries (above no context: {im_i:.2f} vs {nc_i:.2f}): "
                   f"{yn(im_i > nc_i)}; above the best constant answer: {yn(im_i > ch_i)}")
        vlm_i = e("text_examples_vlm", "image")
        out.append(f"LM-only (text prompt) vs VLM-format (image first) text vectors on image queries: "
                   f"{tv_i:.2f} vs {vlm_i:.2f}")
    ins = e("instruction", "text")
    out.append(f"instruction vectors work on text queries (above no context: {ins:.2f} vs {nc_t:.2f}): "
               f"{yn(ins > nc_t)}; above the best constant answer: {yn(ins > ch_t)}")
    fv3, fvv = e("fv_third", "text"), e("fv_val", "text")
    if fv3 == fv3:
        out.append(f"function vectors on text queries (added at L/3: {fv3:.2f}, at the val layer: {fvv:.2f}) beat no "
                   f"context ({nc_t:.2f}): {yn(max(fv3, fvv) > nc_t)}")
    if curve:
        ks = sorted({r["n_examples"] for r in curve})
        for tg in TARGETS:
            def m(method: str, k: int) -> float:
                return _mean_em([r for r in curve if r["n_examples"] == k], method, tg)
            a, b = m("instruction+examples", ks[0]), m("text_examples", ks[0])
            if a == a and b == b:
                out.append(f"{tg} queries: averaging instruction and example vectors helps with few examples "
                           f"(k={ks[0]}: {a:.2f} vs examples alone {b:.2f}): {yn(a > b)}; at k={ks[-1]}: "
                           f"{m('instruction+examples', ks[-1]):.2f} vs {m('text_examples', ks[-1]):.2f}")
    pairs = defaultdict(list)
    for r in cos["rows"]:
        pairs[(r["a"], r["b"])].append(r)
    for (a, b), rs in pairs.items():
        best = max(rs, key=lambda r: r["same_task"] - r["other_task"])
        out.append(f"cosine {a} vs {b}: max over layers {max(r['same_task'] for r in rs):.2f}; at layer "
                   f"{best['layer']} (largest gap) same task {best['same_task']:.2f} vs other task "
                   f"{best['other_task']:.2f}")
    return out


def report_markdown(cfg: TaskVectorConfig, results: list[dict], tables: dict[str, list[dict]], cos: dict[str, Any],
                    source: str) -> str:
    lm = results[0].get("lm", "?") if results else "?"
    proj = (results[0].get("projector") or {}).get("description", f"`{cfg.model.checkpoint}`") if results else "?"
    lines = [f"# Task vectors and function vectors: `{cfg.name}`", "",
             f"Config `{source}` (hash {cfg.hash}); LM `{lm}`; projector: {proj}. "
             "Exact match of the first answer token (argmax over the whole vocabulary at the last "
             "position), test split, layer chosen on validation (in parentheses).", "",
             table_markdown(tables["test"]), "",
             "Published (Idefics2-8B, brief section B): no context 0.01, text examples in the prompt (image queries) "
             "0.18, text task vector on image queries 0.51, text-to-text patch 0.65; LLM-to-VLM transfer 0.52; "
             "LLM/VLM vector cosine >= 0.89.", "",
             "## What the brief's findings look like here", ""]
    lines += [f"- {f}" for f in findings(tables["test"], cos, tables["curve"])]
    lines += ["", "## Items per task", "", "| task | train | val | test | examples per prompt | seconds |",
              "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['task']} | {r['n']['train']} | {r['n']['val']} | {r['n']['test']} | {r['n_examples']} | "
                     f"{r.get('seconds', 0):.0f} |")
    fv = [(r["task"], r["fv"]) for r in results if r.get("fv")]
    if fv:
        lines += ["", "## Function vectors: top heads (layer, head) by average indirect effect", ""]
        lines += [f"- {t}: {', '.join(f'L{l}H{h}' for l, h in info['heads'])}" for t, info in fv]
    curve = tables["curve"]
    if curve:
        lines += ["", "## Accuracy against the number of examples (mean over seeds and tasks)", "",
                  "| target | method | " + " | ".join(f"k={k}" for k in sorted({r['n_examples'] for r in curve})) + " |",
                  "|---|---|" + "---|" * len({r['n_examples'] for r in curve})]
        ks = sorted({r["n_examples"] for r in curve})
        for tg in TARGETS:
            for m in ("prompting_text",) + SOURCES:
                cell = [[r["em"] for r in curve if r["target"] == tg and r["method"] == m and r["n_examples"] == k] for k in ks]
                if any(cell):
                    lines.append(f"| {tg} | {LABELS.get(m, m)} | " + " | ".join(f"{np.mean(c):.2f}" if c else "" for c in cell) + " |")
    return "\n".join(lines) + "\n"
