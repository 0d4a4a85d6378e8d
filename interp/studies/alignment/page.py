"""The visual-alignment study's results page, ``report.html``, from the run folder's tables alone
(results.csv, summary.csv, scores.csv, differences.csv, lm_only.csv, correlation.json,
config.json, units/): no model is loaded."""

from __future__ import annotations

from pathlib import Path

from interp.io import read_json
from interp.pages import Code, Column, Page, Plot, Provenance, Section, Table, Text, write_page
from interp.studies.alignment.figures import build_figures, figure_size
from interp.studies.alignment.tables import LM_ONLY_NUMERIC, SUMMARY_NUMERIC, read_csv

PAGE = "report.html"
PUBLISHED_R = 0.768  # the brief's correlation of the alignment score with the LM's knowledge, over dozens of LMs

SCORE_COLUMNS = [
    Column("lm", "LM"), Column("split", "held out by"), Column("score_layer", "score layer"),
    Column("top1", "top-1 (%)", ".1f", interval=True), Column("top5", "top-5 (%)", ".1f", interval=True),
    Column("chance1", "chance top-1 (%)", ".2f"), Column("best_layer", "best layer"),
    Column("best_top1", "top-1 there (%)", ".1f", interval=True), Column("n_seeds", "seeds"),
]
SUMMARY_COLUMNS = [
    Column("lm", "LM"), Column("split", "held out by"), Column("layer"), Column("rel_depth", "relative depth", ".2f"),
    Column("top1", "top-1 (%)", ".1f", interval=True), Column("top5", "top-5 (%)", ".1f", interval=True),
    Column("chance1", "chance top-1 (%)", ".2f"), Column("train_top1", "train top-1 (%)", ".1f"),
    Column("same_group_top1", "same group top-1 (%)", ".1f"), Column("n_seeds", "seeds"),
]
DIFF_COLUMNS = [Column("split", "held out by"), Column("a", "LM a"), Column("b", "LM b"),
                Column("diff", "top-1 a - b", "+.1f", interval=True), Column("n_seeds", "seeds")]
CORR_COLUMNS = [Column("split", "held out by"), Column("score"), Column("lm_only_metric", "LM-only metric"),
                Column("r", "Pearson r", ".2f"), Column("p", "p", ".3f"), Column("n", "LM variants")]
LM_ONLY_COLUMNS = [Column("lm", "LM"), Column("macro_f1", "macro F1", ".1f"), Column("majority_f1", "majority F1", ".1f"),
                   Column("yes_rate", "yes rate", ".2f"), Column("pairwise_acc", "pairwise acc", ".1f"),
                   Column("cloze_acc", "cloze acc", ".1f")]


def is_run_dir(out: Path) -> bool:
    """Whether ``out`` is a visual-alignment folder: results.csv beside a config.json whose
    config has the study's ``split`` and ``head`` sections."""
    out = Path(out)
    if not (out / "results.csv").is_file() or not (out / "config.json").is_file():
        return False
    config = read_json(out / "config.json").get("config", {})
    return isinstance(config, dict) and "split" in config and "head" in config


def with_intervals(rows: list[dict], pairs: dict[str, tuple[str, str]]) -> list[dict]:
    """Rows with ``(mean, half-width)`` under each key of ``pairs`` (key -> (mean column, half column))."""
    return [dict(r, **{k: (r[m], r[h]) for k, (m, h) in pairs.items()}) for r in rows]


def build_page(out: Path, *, progress: bool = False) -> Page:
    out = Path(out)
    rec = read_json(out / "config.json")
    cfg = rec.get("config", {})
    models = cfg.get("models", {})
    numeric = {**SUMMARY_NUMERIC, "score_layer": int, "best_layer": int, "best_top1": float, "best_top1_ci": float}
    head: list = [Text(["Zero-shot classification of images of classes the alignment head never saw in training "
                        "(held out by concept or by whole hypernym): top-1 and top-5 at the score layer, mean ± 95% "
                        "t-interval over seeds (class split and head initialisation), beside chance and the best "
                        "layer (selected on the test classes: optimistic)."])]
    if (out / "scores.csv").exists():
        scores = with_intervals(read_csv(out / "scores.csv", numeric),
                                {"top1": ("top1", "top1_ci"), "top5": ("top5", "top5_ci"),
                                 "best_top1": ("best_top1", "best_top1_ci")})
        head.append(Table("headline", SCORE_COLUMNS, scores))
    if (out / "correlation.json").exists():
        head += [Text([f"Alignment score against the LM-only hypernym test, over LM variants (published: r = "
                       f"{PUBLISHED_R} over dozens of LMs; with a handful of variants here it is a description, not "
                       "evidence)."]),
                 Table("correlation", CORR_COLUMNS, read_json(out / "correlation.json"))]
    sections = [Section("Headline", head)]
    figs = build_figures(out, score_layer=models.get("score_layer", -1),
                         confusion_lm=cfg.get("eval", {}).get("confusion_lm", ""))
    sections.append(Section("Figures", [Plot(n, f, height=min(900, figure_size(n)[1])) for n, f in figs.items()]))
    per_layer: list = []
    if (out / "summary.csv").exists():
        per_layer += [Text(["Per LM variant x split x layer (summary.csv). Click a header to sort; type to filter."]),
                      Table("per_layer", SUMMARY_COLUMNS,
                            with_intervals(read_csv(out / "summary.csv", SUMMARY_NUMERIC),
                                           {"top1": ("top1", "top1_ci"), "top5": ("top5", "top5_ci")}),
                            filterable=True)]
    if (out / "differences.csv").exists():
        diffs = with_intervals(read_csv(out / "differences.csv", {"diff_top1": float, "diff_ci": float,
                                                                 "n_seeds": int}),
                               {"diff": ("diff_top1", "diff_ci")})
        per_layer += [Text(["Paired differences at the score layer (same seed = same class split), every pair of "
                            "pretrained LMs and each LM against its random-init control."]),
                      Table("differences", DIFF_COLUMNS, diffs)]
    if per_layer:
        sections.append(Section("Per layer and per LM", per_layer))
    if (out / "lm_only.csv").exists():
        sections.append(Section("LM-only hypernym test", [Table("lm_only", LM_ONLY_COLUMNS,
                                                                read_csv(out / "lm_only.csv", LM_ONLY_NUMERIC))]))
    if (out / "report.md").exists():
        sections.append(Section("report.md", [Code((out / "report.md").read_text(), "the markdown report")]))
    env = rec.get("environment", {})
    facts = {"study": "visual alignment of language models", "config hash": str(rec.get("hash", "?")),
             "LMs": ", ".join(rec.get("lms", [])) or "?",
             "skipped LMs": "; ".join(f"{a} ({b})" for a, b in rec.get("skipped_lms", [])) or "none",
             "encoder": str(models.get("encoder", "?")), "python": str(env.get("python", "?")),
             "interp code hash": str(env.get("interp_code", "?"))}
    prov = Provenance(cfg, [f"python -m interp.alignment {rec.get('source', 'CONFIG')}   # the study (finished units "
                            "are skipped)", f"python -m interp.report {out}   # this page, from the tables"],
                      list(cfg.get("split", {}).get("seeds", [])), dict(env.get("packages", {})), facts)
    return Page(f"Visual alignment of language models: {cfg.get('name', out.name)}", sections, prov,
                subtitle=f"encoder {models.get('encoder')}; folder {out}")


def write_report_page(out: Path, *, progress: bool = False) -> Path:
    """Write ``out/report.html`` and return its path."""
    out = Path(out)
    return write_page(build_page(out, progress=progress), out / PAGE, progress=progress)
