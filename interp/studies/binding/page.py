"""The binding study's results page, ``report.html``, from the run folder's tables alone
(accuracy.csv, interchange.csv, knockout.csv, probes.csv, training.csv, summary.json,
config.json): no model is loaded and nothing is re-run."""

from __future__ import annotations

import math
from pathlib import Path

import plotly.graph_objects as go

from interp.io import read_json
from interp.pages import Code, Column, Page, Plot, Provenance, Section, Table, Text, write_page
from interp.studies.binding.figures import COLOURS, build_figures
from interp.studies.binding.report import claim_value
from interp.studies.binding.tables import (BRIEF, group, is_chosen, learned_threshold, not_learned, ordered, ratio,
                                           read_tables, slot_not_learned, summarise)

PAGE = "report.html"
ACCURACY_HEADER = {"regime", "seed", "set", "kind", "n", "acc"}

HEADLINE_COLUMNS = [
    Column("regime"), Column("id", "in distribution (%)", ".1f", interval=True),
    Column("ood", "OOD mean (%)", ".1f", interval=True), Column("brief_id", "brief, in distribution (%)"),
    Column("brief_ood", "brief, OOD (%)", ".1f"), Column("chance", "chance in episode (%)", ".1f"),
    Column("learned"), Column("seeds"),
]
ACCURACY_COLUMNS = [
    Column("regime"), Column("set", "evaluation set"), Column("kind"), Column("n", "objects"),
    Column("acc", "accuracy (%)", ".1f", interval=True), Column("chance", "chance in episode (%)", ".1f"),
    Column("logp", "mean log p(answer)", ".3f"), Column("seeds"),
]
INTERCHANGE_COLUMNS = [
    Column("regime"), Column("layer", "patched layer"), Column("ratio", "symbolic / positional", ".2f"),
    Column("sym_share", "symbolic share", ".2f"), Column("symbolic", "P(symbolic) (%)", ".1f", interval=True),
    Column("positional", "P(positional) (%)", ".1f", interval=True), Column("source", "P(source) (%)", ".1f"),
    Column("base", "P(base) (%)", ".1f"), Column("seeds"),
]
KNOCKOUT_COLUMNS = [Column("regime"), Column("route"), Column("layer"), Column("acc", "accuracy (%)", ".1f", interval=True),
                    Column("clean", "clean accuracy (%)", ".1f"), Column("seeds")]
PROBE_COLUMNS = [Column("regime"), Column("target"), Column("layer"), Column("acc", "held-out accuracy (%)", ".1f",
                                                                             interval=True),
                 Column("chance", "chance (%)", ".1f"), Column("seeds")]
CLAIM_COLUMNS = [Column("claim"), Column("brief"), Column("here", "here (mean ± 95% t-interval)"), Column("seeds"),
                 Column("verdict")]
TRAINING_COLUMNS = [Column("regime"), Column("seed"), Column("step", "last step"), Column("loss", "last loss", ".3f"),
                    Column("acc", "last batch accuracy (%)", ".1f"), Column("logged", "points logged")]
SELECTION_COLUMNS = [Column("regime"), Column("seed"), Column("lr", "continuation lr", "g"), Column("set", "validation set"),
                     Column("val_acc", "validation accuracy (%)", ".1f"), Column("chosen")]


def is_run_dir(out: Path) -> bool:
    """Whether ``out`` is a binding study's folder: accuracy.csv with the study's columns
    (regime, seed, set, kind, n, acc) beside a config.json whose config has a task section."""
    out = Path(out)
    if not (out / "accuracy.csv").is_file() or not (out / "config.json").is_file():
        return False
    with open(out / "accuracy.csv") as f:
        header = set(f.readline().strip().split(","))
    config = read_json(out / "config.json").get("config", {})
    return ACCURACY_HEADER <= header and isinstance(config, dict) and "n_objects" in config.get("task", {})


def _pct(stat: tuple) -> tuple[float, float, int]:
    m, h, n = stat
    return 100 * m, 100 * h, n


def _sets_key(s: str) -> tuple:
    kind, _, n = s.partition("@")
    return kind != "text", kind, int(n) if n.isdigit() else 0


def headline_rows(tables: dict[str, list[dict]], summary: dict, task: dict) -> list[dict]:
    """One row per regime: text accuracy in distribution and the OOD mean (%, mean and 95%
    t-interval over seeds), the brief's numbers where it has one, the chance line, the flag."""
    acc = group(tables["accuracy"], ("regime", "set"), "acc")
    id_set = f"text@{task['n_objects']}"
    unlearned = set(not_learned(summary, task["n_objects"]))
    slot = slot_not_learned(summary, task["n_objects"])
    brief = {"text": (f"~{BRIEF['text_id']:.0f}", BRIEF["text_ood"]), "image-text": ("", BRIEF["image_text_ood"])}
    rows = []
    for regime in ordered(summary["accuracy"]):
        a = summary["accuracy"][regime]
        b = brief.get(regime, ("", None))
        rows.append({"regime": regime, "id": _pct(acc.get((regime, id_set), (math.nan,) * 3)),
                     "ood": (100 * a["ood_mean"], 100 * a["ood_ci"], a["seeds"]), "brief_id": b[0],
                     "brief_ood": b[1], "chance": 100 / task["n_objects"],
                     "learned": "not learned" if regime in unlearned else
                     f"{slot[regime][0]} not learned ({100 * slot[regime][1]:.1f}%)" if regime in slot else "yes",
                     "seeds": a["seeds"]})
    return rows


def headline_figure(rows: list[dict], task: dict) -> go.Figure:
    """Bars of in-distribution and OOD-mean accuracy per regime (95% CI over seeds), the brief's
    numbers as markers, the in-episode chance lines."""
    fig = go.Figure()
    regimes = [r["regime"] for r in rows]
    for key, label, opacity in (("id", f"in distribution ({task['n_objects']} objects)", 1.0),
                                ("ood", f"OOD mean ({', '.join(map(str, task['ood_objects']))} objects)", 0.55)):
        fig.add_trace(go.Bar(x=regimes, y=[r[key][0] for r in rows], name=label, opacity=opacity, offsetgroup=key,
                             marker_color=[COLOURS.get(g, "#444444") for g in regimes],
                             error_y=dict(type="data", array=[0 if r[key][1] != r[key][1] else r[key][1] for r in rows])))
    for key, points in (("id", [(g, BRIEF["text_id"]) for g in regimes if g == "text"]),
                        ("ood", [(g, BRIEF["text_ood" if g == "text" else "image_text_ood"]) for g in regimes
                                 if g in ("text", "image-text")])):
        if points:  # over the bar it is the brief's number for
            fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="markers+text",
                                     offsetgroup=key, name=f"brief, {'in distribution' if key == 'id' else 'OOD'}",
                                     text=[f"{p[1]:g}" for p in points], textposition="top center",
                                     marker=dict(symbol="diamond", size=12, color="black" if key == "id" else "#555555")))
    ood_chance = 100 * sum(1 / n for n in task["ood_objects"]) / max(1, len(task["ood_objects"]))
    fig.add_hline(y=100 / task["n_objects"], line_dash="dash", line_color="black",
                  annotation_text=f"chance in episode, in distribution ({100 / task['n_objects']:.1f}%)")
    if task["ood_objects"]:
        fig.add_hline(y=ood_chance, line_dash="dot", line_color="grey",
                      annotation_text=f"chance in episode, OOD mean ({ood_chance:.1f}%)",
                      annotation_position="bottom right")
    fig.add_hline(y=100 * learned_threshold(task["n_objects"]), line_dash="dashdot", line_color="#d62728",
                  annotation_text="learned threshold", annotation_position="top left")
    fig.update_layout(title="Text accuracy per training regime, in distribution and out of distribution",
                      xaxis_title="training regime", yaxis_title="accuracy (%)", yaxis_range=[0, 110], barmode="group",
                      scattermode="group")
    return fig


def accuracy_rows(tables: dict[str, list[dict]]) -> list[dict]:
    acc = group(tables["accuracy"], ("regime", "set"), "acc")
    logp = group(tables["accuracy"], ("regime", "set"), "logp") if any("logp" in r for r in tables["accuracy"]) else {}
    first = {(r["regime"], r["set"]): r for r in tables["accuracy"]}
    rows = []
    for regime in ordered({k[0] for k in acc}):
        for s in sorted((k[1] for k in acc if k[0] == regime), key=_sets_key):
            r = first[(regime, s)]
            rows.append({"regime": regime, "set": s, "kind": r.get("kind", ""), "n": r.get("n"),
                         "acc": _pct(acc[(regime, s)]), "chance": 100 * r["chance_in_episode"]
                         if isinstance(r.get("chance_in_episode"), (int, float)) else None,
                         "logp": logp.get((regime, s), (None,))[0], "seeds": acc[(regime, s)][2]})
    return rows


def interchange_rows(rows_in: list[dict]) -> list[dict]:
    stats = {k: group(rows_in, ("regime", "layer"), k) for k in ("symbolic", "positional", "source", "base", "sym_share")}
    rows = []
    for regime in ordered({r["regime"] for r in rows_in}):
        for layer in sorted({k[1] for k in stats["symbolic"] if k[0] == regime}):
            g = {k: v.get((regime, layer), (math.nan, math.nan, 0)) for k, v in stats.items()}
            rows.append({"regime": regime, "layer": layer, "ratio": ratio(g["symbolic"][0], g["positional"][0]),
                         "sym_share": g["sym_share"][0], "symbolic": _pct(g["symbolic"]),
                         "positional": _pct(g["positional"]), "source": 100 * g["source"][0],
                         "base": 100 * g["base"][0], "seeds": g["symbolic"][2]})
    return rows


def knockout_rows(rows_in: list[dict]) -> list[dict]:
    acc = group(rows_in, ("regime", "route", "layer"), "acc")
    clean = group(rows_in, ("regime",), "acc_clean")
    return [{"regime": g, "route": route, "layer": layer, "acc": _pct(acc[(g, route, layer)]),
             "clean": 100 * clean[(g,)][0], "seeds": acc[(g, route, layer)][2]}
            for g in ordered({k[0] for k in acc}) for (gg, route, layer) in sorted(k for k in acc if k[0] == g)]


def probe_rows(rows_in: list[dict]) -> list[dict]:
    acc = group(rows_in, ("regime", "target", "layer"), "acc")
    chance = {r["target"]: r["chance"] for r in rows_in}
    return [{"regime": g, "target": target, "layer": layer, "acc": _pct(acc[(g, target, layer)]),
             "chance": 100 * chance[target], "seeds": acc[(g, target, layer)][2]}
            for g in ordered({k[0] for k in acc}) for (gg, target, layer) in sorted(k for k in acc if k[0] == g)]


def training_rows(rows_in: list[dict]) -> list[dict]:
    rows = []
    for regime in ordered({r["regime"] for r in rows_in}):
        for seed in sorted({r["seed"] for r in rows_in if r["regime"] == regime}):
            rs = sorted((r for r in rows_in if r["regime"] == regime and r["seed"] == seed), key=lambda r: r["step"])
            rows.append({"regime": regime, "seed": seed, "step": rs[-1]["step"], "loss": rs[-1]["loss"],
                         "acc": 100 * rs[-1]["acc"], "logged": len(rs)})
    return rows


def selection_rows(rows_in: list[dict]) -> list[dict]:
    """The candidate continuation rates (``train.continuation_lrs``) in regime, seed, rate order."""
    regimes = ordered({r["regime"] for r in rows_in})
    rows = sorted(rows_in, key=lambda r: (regimes.index(r["regime"]), r["seed"], float(r["lr"])))
    return [{**r, "lr": float(r["lr"]), "val_acc": 100 * float(r["val_acc"]),
             "chosen": "yes" if is_chosen(r) else ""} for r in rows]


def provenance(out: Path, rec: dict, seconds: float | None) -> Provenance:
    cfg, env = rec.get("config", {}), rec.get("environment", {})
    facts = {"study": "binding shortcuts and visual data (section C of the brief)",
             "config hash": str(rec.get("hash", "?")), "result hash": str(rec.get("result_hash", "?")),
             "image encoder": str(cfg.get("image", {}).get("encoder", "?")), "device": str(cfg.get("device", "?")),
             "wall time": "?" if seconds is None else f"{seconds / 60:.1f} min",
             "python": str(env.get("python", "?")), "interp code hash": str(env.get("interp_code", "?"))}
    return Provenance(cfg, [f"python -m interp.binding {rec.get('source', 'CONFIG')}   # the study (finished units "
                            "are skipped)", f"python -m interp.report {out}   # this page, from the tables"],
                      [int(s) for s in cfg.get("seeds", [])], dict(env.get("packages", {})), facts)


def build_page(out: Path, *, progress: bool = False) -> Page:
    out = Path(out)
    rec = read_json(out / "config.json")
    cfg = rec["config"]
    task = cfg["task"]
    tables = read_tables(out)
    summary = summarise(tables, cfg)
    seconds = read_json(out / "summary.json").get("seconds") if (out / "summary.json").exists() else None
    rows = headline_rows(tables, summary, task)
    unlearned = not_learned(summary, task["n_objects"])
    head: list = [
        Text([f"Whole-vocabulary argmax accuracy on the two-hop retrieval task, text episodes: in distribution "
              f"({task['n_objects']} objects) and the mean over the out-of-distribution object counts "
              f"{list(task['ood_objects'])}; mean ± 95% t-interval over seeds. The brief (section C): text-only "
              f"~{BRIEF['text_id']:.0f}% in distribution and {BRIEF['text_ood']}% OOD, {BRIEF['image_text_ood']}% OOD "
              f"after the image-text continuation. A model that only learned to pick one of the episode's items "
              f"scores 1/n ({100 / task['n_objects']:.1f}% at n={task['n_objects']}); chance over items is "
              f"1/{task['n_items']}."]),
        Table("headline", HEADLINE_COLUMNS, rows),
        Plot("headline_accuracy", headline_figure(rows, task), height=480)]
    if unlearned:
        head.append(Text([f"Not learned: {', '.join(unlearned)} answer(s) in distribution below "
                          f"{100 * learned_threshold(task['n_objects']):.0f}% (chance among the episode's items: "
                          f"{100 / task['n_objects']:.1f}%). These models have not learned the binding, so their OOD "
                          "accuracies, interchange ratios, knockout and probe results describe an untrained retrieval "
                          "mechanism and cannot be compared with the brief."]))
    if summary.get("claims"):
        head += [Text(["The brief's claims checked here. Differences are paired by seed (the same text-only segment "
                       "continued two ways), mean ± 95% t-interval; a verdict reads only whether that interval "
                       "excludes 0, and says nothing about a model that did not learn."]),
                 Table("claims", CLAIM_COLUMNS, [{**r, "here": claim_value(r)} for r in summary["claims"]])]
    head.append(Text(["The brief's OOD numbers come from its own OOD object counts and full training; compare the "
                      "direction (image-text above text) rather than the values when the training budget differs. "
                      "phase1 is the shared text-only segment before the curriculum; text continues on text for the "
                      "same number of steps as the other regimes' curriculum."]))
    sections = [Section("Headline", head)]
    figs = build_figures(tables)
    training = figs.pop("training", None)
    if figs:
        sections.append(Section("Figures", [Plot(n, f, height=int(f.layout.height or 480)) for n, f in figs.items()]))
    per = [Text(["Accuracy per regime x evaluation set (kind@objects; image and noise versions in distribution), "
                 "% with the 95% t-interval over seeds (accuracy.csv). Click a header to sort; type to filter."]),
           Table("per_set", ACCURACY_COLUMNS, accuracy_rows(tables), filterable=True)]
    if tables["interchange"]:
        per += [Text(["Interchange interventions per regime x patched layer (layer L = the residual entering block "
                      "L): P(symbolic) / P(positional) and the symbolic share P(sym) / (P(sym) + P(pos)), means "
                      "over seeds (interchange.csv)."]),
                Table("interchange_per_layer", INTERCHANGE_COLUMNS, interchange_rows(tables["interchange"]), filterable=True)]
    if tables["knockout"]:
        per += [Text(["Attention knockout: accuracy with one route cut in one layer window (knockout.csv)."]),
                Table("knockout_per_layer", KNOCKOUT_COLUMNS, knockout_rows(tables["knockout"]), filterable=True)]
    if tables["probes"]:
        per += [Text(["Linear probes at the query position, held-out accuracy per layer (0 = embeddings, k = output "
                      "of block k-1) (probes.csv)."]),
                Table("probes_per_layer", PROBE_COLUMNS, probe_rows(tables["probes"]), filterable=True)]
    if tables.get("selection"):
        per += [Text(["Continuation learning rate chosen on validation (train.continuation_lrs): every candidate "
                      "was trained on the same batches and scored on validation episodes of the regime's own kind "
                      "(never the evaluation sets); the best was kept (selection.csv)."]),
                Table("selection", SELECTION_COLUMNS, selection_rows(tables["selection"]))]
    sections.append(Section("Tables", per))
    if tables["training"]:
        learn: list = []
        if training is not None:
            learn.append(Plot("training", training, height=int(training.layout.height or 430)))
        learn += [Text(["The last logged point of each training segment (training.csv; phase1 is segment 1, each "
                        "regime's curriculum segment 2; batch accuracy is on the training batch)."]),
                  Table("training_last", TRAINING_COLUMNS, training_rows(tables["training"]))]
        sections.append(Section("Learning curves", learn))
    if (out / "report.md").exists():
        sections.append(Section("report.md", [Code((out / "report.md").read_text(), "the markdown report")]))
    m = cfg.get("model", {})
    return Page(f"Binding study: {cfg.get('name', out.name)}", sections, provenance(out, rec, seconds),
                subtitle=f"decoder {m.get('n_layers')} layers x d_model {m.get('d_model')}; regimes "
                         f"{', '.join(ordered(summary['accuracy']))}; folder {out}")


def write_report_page(out: Path, *, progress: bool = False) -> Path:
    """Write ``out/report.html`` and return its path."""
    out = Path(out)
    return write_page(build_page(out, progress=progress), out / PAGE, progress=progress)
