"""The look-inside study's driver: build the context once, run the chosen analyses, write
their tables, ``summary.json``, the figures and ``report.md`` into ``out_dir``."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from interp.io import environment, read_json, write_csv, write_json, write_text
from interp.studies.inside.analyses import (Context, best_transfer_layer, build_context, causal, directions, image_lens,
                                            lens, patching, probes, similarity, steering)
from interp.studies.inside.config import InsideConfig
from interp.studies.inside.figures import figures
from interp.studies.inside.page import write_report_page
from interp.studies.inside.report import findings
from interp.studies.inside.tables import clear_outputs


def run(cfg: InsideConfig, progress: bool = True) -> dict[str, Any]:
    """Run the chosen analyses; write tables, figures and report.md to ``cfg.out_dir``."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ctx = build_context(cfg, progress)
    summary: dict[str, Any] = {"config": asdict(cfg), "environment": environment(), "lm": ctx.vlm.lm.name,
                               "checkpoint_sha256": ctx.checkpoint_sha256,
                               "n_concepts": len(ctx.concepts), "hypernyms": ctx.hypernyms}
    if same_weights(out / "summary.json", summary) is None:
        # the folder may hold another checkpoint's analyses: a report must not mix them with this one's
        if gone := clear_outputs(out):
            print(f"[inside] {out} held the analyses of other weights: {len(gone)} of their tables and figures "
                  "removed", flush=True)
        write_json(out / "summary.json", {**summary, "config": {**summary["config"], "analyses": []},
                                          "seconds_by_analysis": {}})  # an interrupted run resumes as the same weights
    seconds: dict[str, float] = {"context": time.perf_counter() - t0}
    summary["seconds_by_analysis"] = seconds

    def timed(name: str, t: float) -> None:
        seconds[name] = time.perf_counter() - t

    probe_rows: list[dict] = []
    if "probes" in cfg.analyses or ("steering" in cfg.analyses and cfg.steering_layer is None):
        t = time.perf_counter()
        probe_rows = probes(ctx, cfg)
        write_csv(out / "probes.csv", probe_rows)
        timed("probes", t)
    if "directions" in cfg.analyses:
        t = time.perf_counter()
        write_csv(out / "directions.csv", directions(ctx, cfg))
        timed("directions", t)
    if "steering" in cfg.analyses:
        t = time.perf_counter()
        layer = (cfg.steering_layer if cfg.steering_layer is not None
                 else best_transfer_layer(probe_rows, ctx.vlm.lm.n_layers))
        ctx.vlm.lm.check_layer(layer)
        summary["steering_layer"] = layer
        write_csv(out / "steering.csv", steering(ctx, cfg, layer))
        timed("steering", t)
    if "lens" in cfg.analyses:
        t = time.perf_counter()
        ranks, top = lens(ctx, cfg)
        write_csv(out / "lens_ranks.csv", ranks)
        write_csv(out / "lens_top.csv", top)
        timed("lens", t)
    if "image_lens" in cfg.analyses:
        t = time.perf_counter()
        rows, first = image_lens(ctx, cfg)
        write_csv(out / "image_lens.csv", rows)
        write_csv(out / "image_lens_first.csv", first)
        timed("image_lens", t)
    if "similarity" in cfg.analyses:
        t = time.perf_counter()
        write_csv(out / "similarity.csv", similarity(ctx, cfg))
        _umap_table(ctx, out, cfg.seed)
        timed("similarity", t)
    if "patching" in cfg.analyses:
        t = time.perf_counter()
        rows, psum = patching(ctx, cfg)
        write_csv(out / "patching.csv", rows)
        summary["patching"] = psum
        timed("patching", t)
    if "causal" in cfg.analyses:
        t = time.perf_counter()
        rows, csum = causal(ctx, cfg, progress)
        write_csv(out / "causal.csv", rows)
        summary["causal"] = csum
        timed("causal", t)
    summary["seconds"] = time.perf_counter() - t0
    write_json(out / "summary.json", merge_summary(out / "summary.json", summary))
    figures(out)
    write_text(out / "report.md", findings(out))
    summary["page"] = str(write_report_page(out, progress=progress))
    return summary


def _umap_table(ctx: Context, out: Path, seed: int, layer: int | None = None) -> None:
    """2-D UMAP of text and image concept representations at ``layer`` (default: last), one table."""
    import umap  # deferred: umap-learn costs ~10 s (numba); only the UMAP figure needs it

    a = ctx.acts
    layer = a.text.shape[0] - 1 if layer is None else layer
    x = torch.cat([a.text[layer], a.image[layer]]).float().numpy()
    emb = umap.UMAP(n_neighbors=10, random_state=seed).fit_transform(x)
    n = len(ctx.concepts)
    tax = ctx.taxonomy
    top = [min(tax.hypernyms_of(c), key=lambda h: (tax.depth(h), h)) if tax.hypernyms_of(c) else "-" for c in ctx.concepts]
    rows = [{"concept": c, "modality": m, "top_hypernym": t, "layer": layer, "x": float(emb[i + k * n, 0]),
             "y": float(emb[i + k * n, 1])} for k, m in enumerate(("text", "image")) for i, (c, t) in
            enumerate(zip(ctx.concepts, top))]
    write_csv(out / "umap.csv", rows)


def same_weights(path: Path, new: dict[str, Any]) -> dict[str, Any] | None:
    """The summary at ``path`` when it exists and was written for the same LM and checkpoint
    bytes (``checkpoint_sha256``) as ``new``, else None."""
    if not path.exists():
        return None
    old = read_json(path)
    return old if old.get("checkpoint_sha256") == new["checkpoint_sha256"] and old.get("lm") == new["lm"] else None


def merge_summary(path: Path, new: dict[str, Any]) -> dict[str, Any]:
    """A partial re-run (``--only lens``) of the same checkpoint keeps what earlier runs of the
    other analyses recorded (their tables stay in the folder too); another checkpoint starts over.
    "The same" is the same bytes (``checkpoint_sha256``), not the same path: a study re-run on
    another machine writes other weights to the same path (docs/training.md)."""
    old = same_weights(path, new)
    if old is None:
        return new
    merged = {**old, **new}
    merged["seconds_by_analysis"] = {**old.get("seconds_by_analysis", {}), **new["seconds_by_analysis"]}
    merged["config"] = {**new["config"], "analyses": sorted(set(old["config"].get("analyses", ())) |
                                                            set(new["config"]["analyses"]))}
    return merged
