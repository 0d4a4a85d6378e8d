"""The SAE study's results page, ``report.html``, from the run folder's tables alone
(summary.csv, sharing.csv, latents.csv, top_images.csv, top_tokens.csv, train_curve.csv,
config.json, report.md): no model or SAE is loaded and nothing is re-run."""

from __future__ import annotations

import csv
from pathlib import Path

import plotly.graph_objects as go

from interp.io import parse_cell, read_json
from interp.pages import Card, Code, Column, Gallery, Page, Plot, Provenance, Section, Table, Text, thumbnail_uri, \
    write_page
from interp.studies.sae.data import TOKEN_GROUPS, has_group_measures
from interp.studies.sae.figures import build_figures, train_curve_figure
from interp.studies.sae.report import few

PAGE = "report.html"
SUMMARY_HEADER = {"layer", "hook_name", "d_sae", "k", "explained_variance", "l0", "dead_frac"}
SHARING_HEADER = {"layer", "hook_name", "shared", "shuffled_shared_mean", "shuffled_shared_lo", "shuffled_shared_hi"}
TEXT_COLUMNS = ("token", "prompt", "concept", "shared_concepts", "path", "hook_name", "class", "kind", "sae_folder")

HEADLINE_COLUMNS = [
    Column("layer"), Column("d_sae", "latents"), Column("explained_variance", "explained variance", ".3f"),
    Column("l0", "L0", ".1f"), Column("dead", "dead (%)", ".1f"), Column("loss_delta", "loss delta", "+.3f"),
    Column("loss_recovered", "loss recovered", ".3f"), Column("shared", "shared latents"),
    Column("shuffled", "shuffled (mean)", ".1f"), Column("range", "shuffled 95%"),
    Column("excess", "shared - shuffled", "+.1f"), Column("p_value", "p", ".3f"),
]
QUALITY_COLUMNS = [
    Column("layer"), Column("hook_name", "hook"), Column("d_in"), Column("d_sae"), Column("k"),
    Column("explained_variance", "explained variance", ".4f"), Column("mse", "MSE", ".4g"), Column("l0", "L0", ".2f"),
    Column("dead_frac", "dead fraction", ".4f"), Column("loss_clean", "loss clean", ".4f"),
    Column("loss_spliced", "loss spliced", ".4f"), Column("loss_delta", "loss delta", "+.4f"),
    Column("loss_ablated", "loss mean-ablated", ".4f"), Column("loss_recovered", "loss recovered", ".4f"),
    Column("n_tokens", "held-out tokens"), Column("n_answer_tokens", "answer tokens"),
    Column("train_tokens", "train tokens"), Column("final_train_fvu", "final train FVU", ".4f"),
    Column("train_seconds", "train seconds", ".1f"), Column("tokens_per_s", "tokens/s", ".0f"),
]
GROUP_COLUMNS = [
    Column("layer"), Column("train_sequences", "trained on"),
    *[Column(f"{m}_{g}", f"{label}: {what}", ".3f") for g, label in TOKEN_GROUPS.items()
      for m, what in (("ev", "EV"), ("relerr", "rel. error"))],
    Column("image_loss_clean", "image splice: loss clean", ".3f"), Column("image_loss_spliced", "spliced", ".3f"),
    Column("image_loss_ablated", "mean-ablated", ".3f"), Column("image_loss_recovered", "loss recovered", ".3f"),
]
SHARING_COLUMNS = [
    Column("layer"), Column("n_concepts", "concepts"), Column("shared"),
    Column("shuffled_shared_mean", "shuffled mean", ".2f"), Column("shuffled_shared_lo", "shuffled 2.5%", ".2f"),
    Column("shuffled_shared_hi", "shuffled 97.5%", ".2f"), Column("p_value", "p", ".4f"),
    Column("shuffles"), Column("image-only"), Column("text-only"), Column("both-unaligned", "both, unaligned"),
    Column("none", "fires for no concept"),
]
LATENT_COLUMNS = [
    Column("layer"), Column("latent"), Column("class"), Column("mass", "total activation", ".4g"),
    Column("n_tokens", "tokens fired"), Column("n_image_tokens", "image tokens fired"),
    Column("image_share", "image share", ".3f"), Column("n_concepts_image", "concepts (images)"),
    Column("n_concepts_text", "concepts (text)"), Column("shared_on", "shared on (first 5)"),
]
TOP_IMAGE_COLUMNS = [Column("layer"), Column("rank", "latent rank"), Column("latent"), Column("concept"),
                     Column("activation", "activation", ".3f"), Column("record", "image record"),
                     Column("path", "file")]
TOP_TOKEN_COLUMNS = [Column("layer"), Column("rank", "latent rank"), Column("latent"), Column("kind"),
                     Column("token"), Column("concept"), Column("activation", "activation", ".3f"), Column("prompt")]
CURVE_COLUMNS = [Column("layer"), Column("epoch"), Column("train_fvu", "train FVU", ".4f")]


def read_header(path: Path) -> set[str]:
    """The column names of a CSV file (an empty set when it is empty)."""
    with open(path, newline="") as f:
        return set(next(csv.reader(f), []))


def is_run_dir(out: Path) -> bool:
    """Whether ``out`` is an SAE study's folder: summary.csv (explained variance, L0, dead
    fraction per layer) and sharing.csv (shared latents vs shuffled) beside a config.json whose
    config has the study's train (k, expansion_factor) and eval (shuffles) sections."""
    out = Path(out)
    if not all((out / f).is_file() for f in ("summary.csv", "sharing.csv", "config.json")):
        return False
    config = read_json(out / "config.json").get("config", {})
    if not isinstance(config, dict):
        return False
    train, ev = config.get("train", {}), config.get("eval", {})
    return (isinstance(train, dict) and isinstance(ev, dict) and {"k", "expansion_factor"} <= set(train)
            and "shuffles" in ev and SUMMARY_HEADER <= read_header(out / "summary.csv")
            and SHARING_HEADER <= read_header(out / "sharing.csv"))


def read_table(out: Path, name: str) -> list[dict]:
    """``out/<name>.csv`` as dict rows, numbers parsed except in the text columns (a token
    ``"1"`` stays text); no file or an empty one gives no rows."""
    path = Path(out) / f"{name}.csv"
    if not path.is_file() or not path.stat().st_size:
        return []
    with open(path, newline="") as f:
        return [{k: v if k in TEXT_COLUMNS else parse_cell(v) for k, v in r.items()} for r in csv.DictReader(f)]


def headline_rows(summary: list[dict], sharing: list[dict]) -> list[dict]:
    """One row per layer: reconstruction and sparsity, the spliced answer loss, and the shared
    image/text latents against the shuffled-concepts control (its mean, 95% range and p)."""
    share = {int(r["layer"]): r for r in sharing}
    rows = []
    for r in summary:
        s = share.get(int(r["layer"]), {})
        mean = s.get("shuffled_shared_mean")
        rows.append({"layer": r["layer"], "d_sae": r.get("d_sae"), "k": r.get("k"),
                     "explained_variance": r["explained_variance"], "l0": r["l0"], "dead": 100 * r["dead_frac"],
                     "loss_delta": r.get("loss_delta"), "loss_recovered": r.get("loss_recovered"),
                     "shared": s.get("shared"), "shuffled": mean,
                     "range": f"[{s['shuffled_shared_lo']:g}, {s['shuffled_shared_hi']:g}]" if s else "",
                     "excess": s["shared"] - mean if s else None, "p_value": s.get("p_value"),
                     "n_concepts": s.get("n_concepts")})
    return rows


def headline_figure(sharing: list[dict]) -> go.Figure:
    """Shared image/text latents per layer, observed, beside the shuffled-concepts control
    (mean with its 95% range as the error bar)."""
    layers = [f"layer {r['layer']}" for r in sharing]
    mean = [float(r["shuffled_shared_mean"]) for r in sharing]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=layers, y=[float(r["shared"]) for r in sharing], name="shared (observed)",
                         marker_color="#1f77b4"))
    fig.add_trace(go.Bar(x=layers, y=mean, name="shuffled concepts (control, 95% range)", marker_color="#7f7f7f",
                         error_y=dict(type="data", symmetric=False,
                                      array=[float(r["shuffled_shared_hi"]) - m for r, m in zip(sharing, mean)],
                                      arrayminus=[m - float(r["shuffled_shared_lo"]) for r, m in zip(sharing, mean)])))
    fig.update_layout(title="Latents shared by a concept's images and its text, against the shuffled control",
                      xaxis_title="layer", yaxis_title="latents", barmode="group")
    return fig


def latent_rows(latents: list[dict]) -> list[dict]:
    """latents.csv's rows with the first five shared concepts spelled out (the CSV keeps all)."""
    return [dict(r, shared_on=few(str(r.get("shared_concepts", "")))) for r in latents]


def image_gallery(images: list[dict], size: int = 96) -> Gallery:
    """The top images of each top latent as cards (thumbnail, concept, activation), filterable
    by layer and latent; a file that is gone shows a placeholder."""
    cards = [Card(thumbnail_uri(r["path"], size) if r.get("path") else None,
                  f"layer {r['layer']}, latent {r['latent']}",
                  (f"{r['concept']}", f"activation {float(r['activation']):.2f}", f"latent rank {r['rank']}"),
                  (("layer", str(r["layer"])), ("latent", f"{r['layer']}:{r['latent']}")))
             for r in images]
    return Gallery("top_images_gallery", cards, {"layer": "layer", "latent": "layer:latent"},
                   "The top-activating images of each top latent (top_images.csv).")


def provenance(out: Path, rec: dict, summary: list[dict]) -> Provenance:
    """The config, the seeds (data, train, eval), the package versions with the SAE library,
    the commands that reproduce the run and this page, and the run's other facts."""
    cfg, env = rec.get("config", {}), rec.get("environment", {})
    seeds = rec.get("seeds", {}) if isinstance(rec.get("seeds"), dict) else {}
    packages = dict(env.get("packages", {})) | {k: v for k, v in rec.get("sae_library", {}).items()}
    data = cfg.get("data", {})
    seconds = sum(float(r.get("train_seconds", 0) or 0) for r in summary)
    facts = {"study": "sparse autoencoders on a VLM's residual stream (issue 16)",
             "config hash": str(rec.get("hash", "?")),
             "projector": str(data.get("checkpoint") or f"untrained (seed {data.get('seed', '?')})"),
             "LM": str(data.get("lm") or "the checkpoint's"), "study config": str(data.get("study_config", "?")),
             "layers": ", ".join(str(r["layer"]) for r in summary) or "?",
             "seeds": ", ".join(f"{k} {v}" for k, v in seeds.items()) or "?",
             "device": str(cfg.get("model", {}).get("device", "?")), "SAE training time": f"{seconds / 60:.1f} min",
             "python": str(env.get("python", "?")), "interp code hash": str(env.get("interp_code", "?"))}
    return Provenance(cfg, [f"python -m interp.sae {rec.get('source', 'CONFIG')}   # the study (finished pieces are "
                            "skipped)", f"python -m interp.report {out}   # this page, from the tables"],
                      [int(v) for v in seeds.values()], packages, facts)


def headline_section(summary: list[dict], sharing: list[dict], cfg: dict) -> Section:
    ev = cfg.get("eval", {})
    blocks: list = [
        Text([f"One TopK SAE per layer on the residual stream (hook_resid_post) at the image, text and answer "
              f"positions. Explained variance, L0 and the spliced answer loss are measured on held-out batches "
              f"({cfg.get('data', {}).get('holdout_frac', 0):.0%}); dead latents never fire on them. A latent is "
              f"shared when it fires (on at least {ev.get('fire_frac', 0):.0%} of a concept's examples) for some "
              f"concept both on its image questions and on its text prompts. The control (chance line) permutes the "
              f"concepts of the text side ({ev.get('shuffles', '?')} shuffles): its mean and 95% range, and p = the "
              f"fraction of shuffles with at least as many shared latents as observed."]),
        Table("headline", HEADLINE_COLUMNS, headline_rows(summary, sharing))]
    if sharing:
        blocks.append(Plot("headline_sharing", headline_figure(sharing), height=440))
        above = [r for r in sharing if r["shared"] > r["shuffled_shared_hi"]]
        blocks.append(Text([f"Shared latents above the shuffled control's 95% range at layer(s) "
                            f"{', '.join(str(r['layer']) for r in above)}." if above else
                            "At no layer are the shared latents above the shuffled control's 95% range: no evidence "
                            "here of concept latents shared across modalities."]))
    return Section("Headline", blocks)


def top_latents_section(images: list[dict], tokens: list[dict]) -> Section | None:
    blocks: list = []
    if images:
        blocks += [image_gallery(images),
                   Table("top_images", TOP_IMAGE_COLUMNS, images, "top_images.csv", filterable=True)]
    if tokens:
        blocks += [Text(["The top-activating text tokens of each top latent (top_tokens.csv; kind: the prompt is an "
                         "image question or a text prompt)."]),
                   Table("top_tokens", TOP_TOKEN_COLUMNS, tokens, "top_tokens.csv", filterable=True)]
    return Section("Top latents", blocks) if blocks else None


def build_page(out: Path, *, progress: bool = False) -> Page:
    """The page's sections: headline, figures, top latents, tables, learning curves, report.md."""
    out = Path(out)
    rec = read_json(out / "config.json")
    cfg = rec["config"]
    summary, sharing = read_table(out, "summary"), read_table(out, "sharing")
    curve = read_table(out, "train_curve")
    sections = [headline_section(summary, sharing, cfg)]
    figs = build_figures(out)
    figs.pop("train_curve", None)
    if figs:
        sections.append(Section("Figures", [Plot(n, f, height=480) for n, f in figs.items()]))
    top = top_latents_section(read_table(out, "top_images"), read_table(out, "top_tokens"))
    if top is not None:
        sections.append(top)
    tables: list = [Text(["Every measure per layer (summary.csv)."]), Table("per_layer", QUALITY_COLUMNS, summary),
                    *([Text(["Reconstruction per token group, held out (explained variance about the group's own "
                             "mean; squared error over squared norm), and the answer loss of the image questions "
                             "with the image positions alone spliced or mean-ablated."]),
                       Table("per_group", GROUP_COLUMNS, summary)] if has_group_measures(summary) else []),
                    Text(["Latents by modality per layer (sharing.csv)."]),
                    Table("sharing_per_layer", SHARING_COLUMNS, sharing)]
    latents = read_table(out, "latents")
    if latents:
        tables += [Text(["Every latent that fired on the study's tokens (latents.csv): its class, total activation "
                         "and how many concepts it fires for per modality. Click a header to sort; type to filter."]),
                   Table("latents", LATENT_COLUMNS, latent_rows(latents), filterable=True)]
    sections.append(Section("Tables", tables))
    if curve:
        sections.append(Section("Learning curves", [
            Plot("train_curve", train_curve_figure(curve), height=430),
            Text(["The training fraction of variance unexplained of every trained SAE, per epoch (train_curve.csv)."]),
            Table("train_curve_points", CURVE_COLUMNS, curve)]))
    if (out / "report.md").exists():
        sections.append(Section("report.md", [Code((out / "report.md").read_text(), "the markdown report")]))
    return Page(f"SAE study: {cfg.get('name', out.name)}", sections, provenance(out, rec, summary),
                subtitle=f"layers {', '.join(str(r['layer']) for r in summary)}; k={cfg.get('train', {}).get('k')}; "
                         f"folder {out}")


def write_report_page(out: Path, *, progress: bool = False) -> Path:
    """Write ``out/report.html`` and return its path."""
    out = Path(out)
    return write_page(build_page(out, progress=progress), out / PAGE, progress=progress)
