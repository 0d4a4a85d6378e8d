"""report.md of the SAE study, computed from its tables (CSV), and the figures."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from interp.io import read_csv, write_text
from interp.studies.sae.data import TOKEN_GROUPS, has_group_measures
from interp.studies.sae.evaluate import MIN_ABLATION_GAP
from interp.studies.sae.figures import write_figures


def _rows(out: Path, name: str) -> list[dict]:
    p = out / f"{name}.csv"
    return read_csv(p) if p.exists() and p.stat().st_size else []


def _f(v: Any, nd: int = 3) -> str:
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def quality_table(summary: list[dict]) -> list[str]:
    lines = ["| layer | d_sae | k | explained variance | L0 | dead latents | loss clean | loss spliced | "
             "delta | mean-ablated | loss recovered | train tokens/s |", "|" + "---|" * 12]
    for r in summary:
        lines.append(f"| {r['layer']} | {r['d_sae']} | {r['k']} | {_f(r['explained_variance'])} | {_f(r['l0'], 1)} | "
                     f"{_f(r['dead_frac'])} | {_f(r['loss_clean'])} | {_f(r['loss_spliced'])} | {_f(r['loss_delta'])} | "
                     f"{_f(r['loss_ablated'])} | {_f(r['loss_recovered'])} | {_f(r['tokens_per_s'], 0)} |")
    return lines


TRAINED_ON = {"all": "image questions and of text prompts naming each concept and its hypernym",
              "text": "text prompts naming each concept and its hypernym only (no image question: a text "
                      "dictionary, applied to image tokens)",
              "image": "image questions only"}


def group_table(summary: list[dict]) -> list[str]:
    """Reconstruction per token group (held out) and the splice at the image positions alone."""
    if not has_group_measures(summary):
        return []
    head = " | ".join(f"{label}: EV / rel. error" for label in TOKEN_GROUPS.values())
    lines = [f"| layer | trained on | {head} | image splice: loss clean / spliced / mean-ablated | loss recovered |",
             "|" + "---|" * (4 + len(TOKEN_GROUPS))]
    for r in summary:
        cells = " | ".join(f"{_f(r[f'ev_{g}'])} / {_f(r[f'relerr_{g}'])}" for g in TOKEN_GROUPS)
        lines.append(f"| {r['layer']} | {r.get('train_sequences', 'all')} | {cells} | {_f(r['image_loss_clean'])} / "
                     f"{_f(r['image_loss_spliced'])} / {_f(r['image_loss_ablated'])} | "
                     f"{_f(r['image_loss_recovered'])} |")
    return lines


def sharing_table(sharing: list[dict]) -> list[str]:
    lines = ["| layer | concepts | shared | shuffled shared (mean [95%]) | p | image-only | text-only | "
             "both, unaligned |", "|" + "---|" * 8]
    for r in sharing:
        lines.append(f"| {r['layer']} | {r['n_concepts']} | {r['shared']} | {_f(r['shuffled_shared_mean'], 1)} "
                     f"[{_f(r['shuffled_shared_lo'], 0)}, {_f(r['shuffled_shared_hi'], 0)}] | {_f(r['p_value'])} | "
                     f"{r['image-only']} | {r['text-only']} | {r['both-unaligned']} |")
    return lines


def top_latent_lines(latents: list[dict], images: list[dict], tokens: list[dict]) -> list[str]:
    cls = {(r["layer"], r["latent"]): r for r in latents}
    by_img, by_tok = defaultdict(list), defaultdict(list)
    for r in images:
        by_img[(r["layer"], r["latent"])].append(r)
    for r in tokens:
        by_tok[(r["layer"], r["latent"])].append(r)
    lines = ["| layer | latent | class | image share | shared on | top images (concept) | top text tokens |",
             "|" + "---|" * 7]
    for key in sorted(set(by_img) | set(by_tok), key=lambda k: (k[0], min(r["rank"] for r in by_img[k] + by_tok[k]))):
        c = cls.get(key, {})
        ims = ", ".join(f"{r['concept']} ({_f(r['activation'], 2)})" for r in by_img[key])
        tks = ", ".join(f"`{str(r['token']).strip() or repr(r['token'])}` ({r['concept']})" for r in by_tok[key])
        lines.append(f"| {key[0]} | {key[1]} | {c.get('class', '')} | {_f(c.get('image_share', ''), 2)} | "
                     f"{few(str(c.get('shared_concepts', '')))} | {ims} | {tks} |")
    return lines


def few(concepts: str, n: int = 5, sep: str = "|") -> str:
    """The first ``n`` of a ``sep``-joined concept list, and how many more (the CSV keeps them all)."""
    items = [c.strip() for c in concepts.split(sep) if c.strip()]
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def by_group_section(summary: list[dict]) -> list[str]:
    table = group_table(summary)
    if not table:
        return []
    return ["### By token group", "",
            "Explained variance about each group's own mean, and the squared error over the tokens' squared norm "
            "(held out). Image splice: the reconstruction (or the image tokens' training mean) at the image "
            "positions alone, the answer loss of the image questions.", "", *table, ""]


def write_outputs(out: Path, cfg) -> Path:
    """report.md (and the figures) from the tables in ``out``; returns the report's path."""
    out = Path(out)
    summary, sharing = _rows(out, "summary"), _rows(out, "sharing")
    lines = [f"# Sparse autoencoders on VLM residuals: {cfg.name}", "",
             f"One TopK SAE (EleutherAI `sparsify` SparseCoder, exported in SAELens's format under `saes/`) per "
             f"layer, trained on the residual stream (`hook_resid_post`) at the image, text and answer positions "
             f"of {TRAINED_ON[cfg.train.sequences]}. Reconstruction and "
             f"the answer loss are measured on held-out batches ({cfg.data.holdout_frac:.0%}); the spliced loss "
             f"replaces the residual at every trained-on position by its reconstruction, the mean-ablated loss "
             f"by the training mean (loss recovered = (ablated - spliced) / (ablated - clean); nan where the "
             f"mean-ablation raises the loss by less than {MIN_ABLATION_GAP} nats: positions the answer hardly "
             f"reads).", "",
             "## Reconstruction, sparsity and the spliced answer loss", "", *quality_table(summary), "",
             *by_group_section(summary),
             "## Latents shared across modalities", "",
             f"A latent fires for a concept in a modality when it is active on at least {cfg.eval.fire_frac:.0%} of "
             f"the concept's image questions (any image token) or text prompts (the concept's or its hypernym's "
             f"name tokens). Shared: some concept in both; the baseline permutes the concepts of the text side "
             f"({cfg.eval.shuffles} shuffles).", "", *sharing_table(sharing), "",
             f"## Top latents (by total activation, {cfg.eval.top_latents} per layer)", "",
             *top_latent_lines(_rows(out, "latents"), _rows(out, "top_images"), _rows(out, "top_tokens")), "",
             "Figures: `figures/quality.html`, `figures/groups.html`, `figures/sharing.html`, "
             "`figures/train_curve.html`, `figures/top_images_layer<L>.html` (PNG beside each).", ""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    write_figures(out)
    return path


def headline_text(summary: list[dict], sharing: list[dict]) -> str:
    """One line per layer: explained variance, loss delta, shared latents vs shuffled."""
    sh = {int(r["layer"]): r for r in sharing}
    return "\n".join(f"[sae] layer {r['layer']}: explained variance {float(r['explained_variance']):.3f}, L0 "
                     f"{float(r['l0']):.1f}, dead {float(r['dead_frac']):.1%}, spliced loss delta "
                     f"{float(r['loss_delta']):+.3f}; shared latents {sh[int(r['layer'])]['shared']} vs shuffled "
                     f"{float(sh[int(r['layer'])]['shuffled_shared_mean']):.1f}" for r in summary)
