"""The taxonomic study's results page, ``report.html``, from the run folder's tables alone
(results.csv, learning.csv, lm_only.csv, images.csv, config.json, summary.json, runs/*): no model
is loaded and nothing is recomputed but the aggregates of the tables."""

from __future__ import annotations

from pathlib import Path

from interp.diagnostics import learning_curve_figure, stage_history
from interp.io import read_csv, read_json
from interp.pages import Code, Column, Page, Plot, Provenance, Section, Table, Text, write_page
from interp.studies.taxonomy.figures import build_figures
from interp.studies.taxonomy.gallery import gallery
from interp.studies.taxonomy.tables import aggregate, condition_label, depth_table, headline_rows, read_results

PAGE = "report.html"

HEADLINE_COLUMNS = [
    Column("condition"), Column("ablation"),
    Column("unseen", "unseen F1", ".1f", interval=True), Column("chance", "chance line", ".1f", interval=True),
    Column("vs_chance", "F1 - chance", ".1f", interval=True), Column("vs_original", "F1 - original", ".1f", interval=True),
    Column("seen", "seen F1", ".1f", interval=True), Column("leaf", "leaf F1", ".1f", interval=True),
    Column("pairwise", "unseen pairwise % (chance 50)", ".1f", interval=True), Column("n"),
    Column("published", "published (Qwen3-0.6B)", ".1f"),
]
RESULT_TABLE_COLUMNS = [
    Column("run_id", "run"), Column("condition"), Column("ablation"), Column("seed"), Column("hypernym"),
    Column("split"), Column("depth"), Column("n"), Column("f1", "F1", ".1f"), Column("chance_f1", "chance F1", ".1f"),
    Column("yes_rate", "yes rate", ".2f"), Column("pairwise", "pairwise %", ".1f"),
    Column("coherence", "coherence", ".3f"),
]
LEARNING_COLUMNS = [
    Column("run_id", "run"), Column("readout_steps", "readout steps"), Column("steps", "fine-tune steps"),
    Column("init_heldout_leaf_f1", "held-out leaf F1 at init", ".1f"),
    Column("train_leaf_f1", "train leaf F1", ".1f"), Column("heldout_leaf_f1", "held-out leaf F1", ".1f"),
    Column("token_cosine", "token cosine", ".3f"), Column("centred_cosine", "centred cosine", ".3f"),
    Column("image_part", "image part", ".2f"), Column("norm_ratio", "norm ratio", ".2f"),
    Column("train_seconds", "train s", ".0f"), Column("calibrated", "answers calibrated"), Column("warnings"),
]
LM_ONLY_COLUMNS = [
    Column("lm", "LM"), Column("taxonomy"), Column("n_pairs", "pairs"), Column("macro_f1", "macro F1", ".1f"),
    Column("majority_f1", "majority F1", ".1f"), Column("yes_rate", "yes rate", ".2f"),
    Column("pairwise_acc", "pairwise acc", ".1f"), Column("cloze_acc", "cloze acc", ".1f"),
]


def is_run_dir(out: Path) -> bool:
    """Whether ``out`` is a taxonomic study's folder: results.csv beside a config.json whose study
    config has a grid of worlds."""
    out = Path(out)
    if not (out / "results.csv").is_file() or not (out / "config.json").is_file():
        return False
    config = read_json(out / "config.json").get("config", {})
    return isinstance(config, dict) and "worlds" in config.get("grid", {})


def headline_section(out: Path, rows: list[dict]) -> Section:
    summary = read_json(out / "summary.json") if (out / "summary.json").exists() else {}
    text = ["Macro F1 x100 on unseen hypernym pairs (hypernym questions never paired with an image of that leaf in "
            "training), mean over hypernyms x seeds with a 95% t-interval; the chance line is the run's own "
            "predictions permuted within each hypernym; F1 - chance and F1 - original are paired by hypernym and "
            "seed. Published: Qwen3-0.6B + DINOv2 on THINGS (brief, section A), not the same models or images."]
    vision = summary.get("vision_ceiling")
    if vision:
        text.append(f"Vision ceiling (no LM; a logistic regression on the pooled encoder features): top-1 "
                    f"{vision['test_top1']:.1f}% and leaf yes/no F1 {vision['test_leaf_f1']:.1f} on test images.")
    return Section("Headline", [Text(text), Table("headline", HEADLINE_COLUMNS, headline_rows(rows), sortable=True)])


def figure_section(rows: list[dict]) -> Section:
    figs = build_figures(aggregate(rows), depth_table(rows), rows)
    return Section("Figures", [Plot(name, fig) for name, fig in figs.items()])


def hypernym_section(rows: list[dict]) -> Section:
    shown = [dict(r, condition=condition_label(r)) for r in rows]
    return Section("Per hypernym", [
        Text(["One row per run x hypernym x seen/unseen (results.csv; <leaf> is the leaf task). Click a header to "
              "sort; type to filter (e.g. a hypernym, 'unseen' or a run)."]),
        Table("per_hypernym", RESULT_TABLE_COLUMNS, shown, filterable=True)])


def learning_section(out: Path) -> Section | None:
    blocks: list = []
    if (out / "learning.csv").exists():
        blocks += [Text(["Did each trained run learn its leaf task? The in-training monitor at the last step "
                         "(learning.csv)."]),
                   Table("learning", LEARNING_COLUMNS, read_csv(out / "learning.csv"))]
    for train in sorted(out.glob("runs/*/train.json")):
        history, losses = stage_history(read_json(train))
        if history or losses:
            run = train.parent.name
            blocks.append(Plot(f"learning_{run}", learning_curve_figure(history, losses, title=f"learning curve: {run}"),
                               height=420))
    return Section("Learning curves", blocks) if blocks else None


def provenance(out: Path) -> Provenance:
    rec = read_json(out / "config.json")
    cfg, env = rec.get("config", {}), rec.get("environment", {})
    source = rec.get("source", "CONFIG")
    facts = {"study": "taxonomic generalization", "config name": str(cfg.get("name", "?")),
             "config hash": str(rec.get("hash", "?")), "interp code hash": str(env.get("interp_code", "?")),
             "LM / encoder / projector": f"{cfg.get('model', {}).get('lm')} / {cfg.get('model', {}).get('encoder')} / "
                                         f"{cfg.get('model', {}).get('projector')}",
             "python": str(env.get("python", "?")), "platform": str(env.get("platform", "?"))}
    seeds = list(cfg.get("grid", {}).get("seeds", []))
    return Provenance(cfg, [f"python -m interp.run {source}   # the study (finished runs are skipped)",
                            f"python -m interp.report {out}   # this page, from the tables"],
                      seeds, dict(env.get("packages", {})), facts)


def build_page(out: Path, *, progress: bool = False) -> Page:
    """The page of the study run in ``out``."""
    out = Path(out)
    rows = read_results(out / "results.csv")
    cfg = read_json(out / "config.json").get("config", {})
    model = cfg.get("model", {})
    sections = [headline_section(out, rows), figure_section(rows), hypernym_section(rows)]
    if (learning := learning_section(out)) is not None:
        sections.append(learning)
    if (out / "lm_only.csv").exists():
        sections.append(Section("LM-only text test", [
            Text(["The LM alone, in text: 'Is it true that a robin is a bird?' over every (leaf, hypernym) pair, "
                  "against a distractor hypernym (pairwise: true beats distractor by the Yes-No margin; cloze: "
                  "'A robin is a kind of' + hypernym vs distractor)."]),
            Table("lm_only", LM_ONLY_COLUMNS, read_csv(out / "lm_only.csv"))]))
    g = gallery(out, progress=progress)
    sections.append(Section("Gallery", [Text([g])] if isinstance(g, str) else [g]))
    if (out / "report.md").exists():
        sections.append(Section("report.md", [Code((out / "report.md").read_text(), "the markdown report of the "
                                                   "same run (findings, depth, coherence)")]))
    return Page(f"Taxonomic generalization: {cfg.get('name', out.name)}", sections, provenance(out),
                subtitle=f"LM {model.get('lm')}, encoder {model.get('encoder')}, projector {model.get('projector')}; "
                         f"{len({r['run_id'] for r in rows})} runs; folder {out}")


def write_report_page(out: Path, *, progress: bool = False) -> Path:
    """Write ``out/report.html`` and return its path."""
    out = Path(out)
    return write_page(build_page(out, progress=progress), out / PAGE, progress=progress)
