"""The look-inside study's results page, ``report.html``, from the run folder's tables alone
(probes.csv, directions.csv, steering.csv, lens_*.csv, image_lens*.csv, similarity.csv, umap.csv,
patching.csv, causal.csv, summary.json): no model is loaded."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import MISSING, fields
from pathlib import Path

from interp.diagnostics import learning_curve_figure
from interp.io import read_json
from interp.pages import Code, Column, Page, Plot, Provenance, Section, Table, Text, write_page
from interp.studies.inside.config import ANALYSES, InsideConfig
from interp.studies.inside.figures import build_figures
from interp.studies.inside.tables import PROBES, image_lens_summary, probe_rows, read_rows
from interp.studies.inside.report import answer_lines

PAGE = "report.html"

PROBE_COLUMNS = [
    Column("probe"), Column("best_layer", "best layer"), Column("best", "best balanced accuracy", ".3f", interval=True),
    Column("layer0", "layer 0", ".3f", interval=True), Column("last", "last layer", ".3f", interval=True),
    Column("chance", "chance", ".2f"), Column("n", "hypernyms"),
]

IMAGE_LENS_SUMMARY_COLUMNS = [
    Column("readout"), Column("modality", "states"), Column("n", "concepts"),
    Column("concept_share", "concept word named", ".0%"), Column("concept_median", "median first layer", "g"),
    Column("hypernym_share", "hypernym word named", ".0%"), Column("hypernym_median", "median first layer", "g"),
    Column("hypernym_only_share", "hypernym named where the concept is not", ".0%"),
]
IMAGE_LENS_FIRST_COLUMNS = [
    Column("concept"), Column("hypernym"), Column("modality", "states"), Column("readout"), Column("target"),
    Column("word"), Column("first_layer", "first layer named"), Column("best_rank", "best rank"),
    Column("top_k", "top-k"),
]


def is_run_dir(out: Path) -> bool:
    """Whether ``out`` is a look-inside folder: a summary.json naming a checkpoint and the
    analyses, and at least one analysis table."""
    out = Path(out)
    if not (out / "summary.json").is_file():
        return False
    summary = read_json(out / "summary.json")
    config = summary.get("config", {}) if isinstance(summary, dict) else {}
    return ("checkpoint" in config and "analyses" in config and "hypernyms" in summary
            and any((out / f"{name}.csv").exists() for name in ("probes", "directions", "steering", "lens_ranks",
                                                                 "image_lens", "similarity", "patching", "causal")))


def hypernym_rows(out: Path) -> tuple[list[dict], list[Column]]:
    """One row per hypernym: its member count, each probe's best balanced accuracy over layers
    (and where), the text/image direction cosine at its best layer, and the steering effect on
    its own question at the largest scale."""
    rows: dict[str, dict] = defaultdict(dict)
    cols = [Column("hypernym"), Column("n_members", "members")]
    if (probes := read_rows(out, "probes")) is not None:
        best: dict[tuple[str, str], tuple[float, int]] = {}
        for r in probes:
            rows[r["hypernym"]]["n_members"] = r["n_members"]
            key, v = (r["hypernym"], r["probe"]), float(r["balanced_accuracy"])
            if key not in best or v > best[key][0]:
                best[key] = (v, int(r["layer"]))
        present = sorted({p for _, p in best}, key=lambda p: (PROBES.index(p) if p in PROBES else len(PROBES), p))
        for (h, p), (v, layer) in best.items():
            rows[h][f"probe_{p}"], rows[h][f"layer_{p}"] = v, layer
        for p in present:
            cols += [Column(f"probe_{p}", f"{p} probe (best)", ".3f"), Column(f"layer_{p}", "at layer")]
    if (dirs := read_rows(out, "directions")) is not None:
        for r in dirs:
            h, c = r["hypernym"], float(r["cosine"])
            if c > rows[h].get("direction_cosine", float("-inf")):
                rows[h].update(direction_cosine=c, direction_layer=int(r["layer"]),
                               direction_shuffled=float(r["shuffled_cosine"]))
        cols += [Column("direction_cosine", "direction cosine (best)", ".3f"), Column("direction_layer", "at layer"),
                 Column("direction_shuffled", "shuffled there", ".3f")]
    if (steer := read_rows(out, "steering")) is not None:
        top = max(float(r["scale"]) for r in steer)
        sources = sorted({r.get("direction") or "image" for r in steer})
        for r in steer:
            if r["condition"] == "target" and float(r["scale"]) == top:
                rows[r["hypernym"]][f"steering_{r.get('direction') or 'image'}"] = float(r["delta_p_yes"])
        cols += [Column(f"steering_{s}", f"steering delta P(Yes), {s} direction, scale {top:g}", "+.3f")
                 for s in sources]
    return [{"hypernym": h, **v} for h, v in sorted(rows.items())], cols


def image_lens_blocks(out: Path) -> list:
    """The image_lens analysis: per readout and states, the share of concepts named (from
    :func:`image_lens_summary`), and the first-naming table (one row per concept, states,
    readout and target word; "-" where no layer names it)."""
    rows, first = read_rows(out, "image_lens"), read_rows(out, "image_lens_first")
    if rows is None or first is None:
        return []
    summary = [dict(s, concept_share=s["concept_named"] / s["n"], hypernym_share=s["hypernym_named"] / s["n"],
                    hypernym_only_share=s["hypernym_only"] / s["n"]) for s in image_lens_summary(rows, first) if s["n"]]
    k = summary[0]["top_k"] if summary else "?"
    return [Text([f"Each readout (logit lens, nearest input embedding, Patchscope on \"cat -> cat; key -> key; ? ->\") "
                  f"ranks the concept word and its most specific hypernym's word per layer; a rank below {k} names it. "
                  "The text states (the concept word in a sentence) are the positive control. Click a header to sort; "
                  "type to filter."]),
            Table("image_lens_summary", IMAGE_LENS_SUMMARY_COLUMNS, summary),
            Table("image_lens_first_naming", IMAGE_LENS_FIRST_COLUMNS,
                  [dict(r, first_layer=None if r["first_layer"] == "" else r["first_layer"]) for r in first],
                  filterable=True)]


def learning_blocks(summary: dict) -> list:
    """The learning curve of the run that trained the checkpoint, when its train.json is beside it."""
    train = Path(summary.get("config", {}).get("checkpoint", "")).parent / "train.json"
    if not train.is_file():
        return [Text([f"No learning curve: the checkpoint's train.json ({train}) is not here."])]
    t = read_json(train)
    return [Plot("learning_curve", learning_curve_figure(t.get("diagnostics") or [], t.get("losses") or [],
                                                         title=f"learning curve: {train.parent.name}"), height=420)]


def changed_settings(cfg: dict) -> dict[str, str]:
    """The settings of a recorded config that differ from :class:`InsideConfig`'s defaults, as
    ``--set`` values (tuples as comma lists)."""
    out = {}
    for f in fields(InsideConfig):
        if f.name in ("checkpoint", "out_dir", "study_config", "analyses") or f.name not in cfg:
            continue
        default = f.default if f.default is not MISSING else None
        value = cfg[f.name]
        if isinstance(value, (list, tuple)):
            if tuple(value) != tuple(default or ()):
                out[f.name] = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        elif value != default:
            out[f.name] = "none" if value is None else str(value)
    return out


def provenance(out: Path, summary: dict) -> Provenance:
    cfg, env = summary.get("config", {}), summary.get("environment", {})
    sets = " ".join(f"--set {k}={v}" for k, v in changed_settings(cfg).items())
    only = ",".join(cfg.get("analyses", ANALYSES))
    facts = {"study": "look inside a trained projector", "LM": str(summary.get("lm", "?")),
             "checkpoint": str(cfg.get("checkpoint", "?")), "concepts": str(summary.get("n_concepts", "?")),
             "hypernyms": str(len(summary.get("hypernyms", []))), "python": str(env.get("python", "?")),
             "interp code hash": str(env.get("interp_code", "?"))}
    return Provenance(cfg, [f"python -m interp.analyze {cfg.get('checkpoint')} --out {out} --only {only} "
                            f"--config {cfg.get('study_config')} {sets}".rstrip(),
                            f"python -m interp.report {out}   # this page, from the tables"],
                      [cfg["seed"]] if "seed" in cfg else [], dict(env.get("packages", {})), facts)


def build_page(out: Path, *, progress: bool = False) -> Page:
    out = Path(out)
    summary = read_json(out / "summary.json")
    sections = []
    answer = [line for line in answer_lines(out) if line.startswith("**Answer:**")]
    head: list = [Text([a.replace("**", "") for a in answer])] if answer else []
    head += [Text(["Where does an image of a robin start to look like 'bird' inside the LM? Linear probes "
                        "per layer for each hypernym (balanced accuracy, k-fold; chance 0.5) on the concept word's "
                        "text tokens, the image tokens and the last question token, and text-trained probes applied "
                        "to image tokens (and back). Means over hypernyms with 95% t-intervals."])]
    if (probes := read_rows(out, "probes")) is not None:
        head.append(Table("probes_summary", PROBE_COLUMNS, probe_rows(probes)))
    if "patching" in summary:
        a = summary["patching"]["agreement"]
        head.append(Text([f"Patching {summary['patching']['clean']} -> {summary['patching']['corrupt']}: attribution vs "
                          f"exact over {a['n_cells']} cells, Pearson {a['pearson']:.3f}, sign agreement "
                          f"{a['sign_agreement']:.2f}."]))
    sections.append(Section("Headline", head))
    figs = build_figures(out)
    sections.append(Section("Figures", [Plot(name, fig, height=560 if name.startswith("patching_") else 480)
                                        for name, fig in figs.items()]))
    rows, cols = hypernym_rows(out)
    if rows:
        sections.append(Section("Per hypernym", [
            Text(["One row per hypernym: the best layer of each probe, of the text/image direction cosine, and the "
                  "steering effect on the hypernym's own question. Click a header to sort; type to filter."]),
            Table("per_hypernym", cols, rows, filterable=True)]))
    if blocks := image_lens_blocks(out):
        sections.append(Section("Readouts of the image token", blocks))
    sections.append(Section("Learning curve of the checkpoint", learning_blocks(summary)))
    if (out / "report.md").exists():
        sections.append(Section("report.md", [Code((out / "report.md").read_text(), "the markdown findings")]))
    return Page(f"Looking inside {summary.get('lm', '?')}", sections, provenance(out, summary),
                subtitle=f"{summary.get('n_concepts', '?')} concepts, {len(summary.get('hypernyms', []))} hypernyms; "
                         f"checkpoint {summary.get('config', {}).get('checkpoint')}; folder {out}")


def write_report_page(out: Path, *, progress: bool = False) -> Path:
    """Write ``out/report.html`` and return its path."""
    out = Path(out)
    return write_page(build_page(out, progress=progress), out / PAGE, progress=progress)
