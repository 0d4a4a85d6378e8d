"""Batched activation patching vs TransformerLens's one-forward-per-cell helpers, same grid.

Grid: ``blocks.{l}.hook_resid_pre`` x every position of a text pair (TransformerLens's
``patching`` helpers take token ids, not embeddings, so the comparison is on text; our
image-token grids run through the same code): "... saw a robin in the garden. A robin is a kind
of" against the same with salmon. Metric: logit(" bird") - logit(" fish") at the last position.
Measured in one run:

- ``transformer_lens.patching.get_act_patch_resid_pre`` (full forward and full-vocabulary
  logits per cell) vs :func:`interp.analysis.patching.patch_grid`: identical values, speed
  ratio (target >= 20x, issue 4). Ours is timed in three variants so each idea's share is
  visible: ``batched`` (full-length patched copies batched per layer, started at the
  patched layer, two unembedding rows), ``+packed`` (each copy computes only the positions
  the patch can change, copies packed in one row over the corrupted run's keys/values),
  ``+skip`` (the default: also no pass for cells where clean equals corrupted, the shared
  prompt prefix here). Each of ours is the median of 3 runs; TransformerLens runs once;
- :func:`interp.analysis.attribution.attribution_grid` on the same grid: its time, and its
  agreement with the exact grid over every cell;
- AtP* (:mod:`interp.analysis.atp_star`: QK fix + GradDrop over every layer) beside plain AtP,
  by :func:`interp.analysis.atp_compare.compare_estimators` (exact patching timed again in
  the same call): correlations with the exact effects, recall of the true top-k cells (k = a
  tenth of the cells) and the false-negative rate, cells to verify before the true top-k are
  found, cost over exact patching. On the resid_pre grid (where only GradDrop applies) and on
  a query/key grid (``attn.hook_q`` + ``attn.hook_k`` at the same layers), where the QK fix
  applies and AtP with the QK fix alone is reported too.

With ``--checkpoint projector.safetensors`` (a trained projector, e.g. the quick study's
``runs/quick/runs/lm-original-100pct-s42/projector.safetensors``) the AtP / AtP* validation is
also run on an image pair through the VLM: the first embedded rendering of eagle against that
of shark, asked "Is there an eagle in the image?", every block's resid_pre and q/k over every
position (``patching_image.json``).

    .venv/bin/python benchmarks/bench_patching.py [--quick] [--checkpoint CHECKPOINT]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, save, timed  # noqa: E402

from interp.analysis.atp_compare import compare_estimators  # noqa: E402
from interp.analysis.attribution import attribution_grid, compare_to_exact  # noqa: E402
from interp.analysis.patching import PatchInput, logit_diff_metric, patch_grid  # noqa: E402
from interp.models.hooked import HookedLM  # noqa: E402
from interp.models.lm import load_lm  # noqa: E402
from interp.sequence import single_token_id, vlm_item  # noqa: E402
from interp.vlm import HookedVLM  # noqa: E402

# A pair the LM answers firmly and oppositely (gemma-3-270m: logit(" bird") - logit(" fish") +6.7 clean,
# -4.3 corrupted). The yes/no pair used before ("is a robin / salmon a kind of bird? ... Answer:", +1.93
# vs +1.71) was answered " yes" whichever animal: a grid of effects within 0.5 logits of noise.
CLEAN = "We looked out of the window and saw a robin in the garden. A robin is a kind of"
CORRUPT = "We looked out of the window and saw a salmon in the garden. A salmon is a kind of"
ANSWER, FOIL = " bird", " fish"


IMAGE_CLEAN, IMAGE_CORRUPT, IMAGE_QUESTION = "eagle", "shark", "Is there an eagle in the image?"


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="a trained projector: also validate AtP / AtP* on an image pair through it")
    args = ap.parse_args()
    if args.checkpoint is not None and not args.checkpoint.exists():
        ap.error(f"--checkpoint {args.checkpoint}: no such projector checkpoint")
    from transformer_lens import patching

    lm = HookedLM(load_lm("gemma-3-270m"))
    vlm = HookedVLM(lm, HookedVLM.new_projector(lm, "efficientnet-lite0", 1280, 1))
    tok = lm.tokenizer
    clean, corr = PatchInput(vlm.build([vlm_item(None, CLEAN)])), PatchInput(vlm.build([vlm_item(None, CORRUPT)]))
    if clean.batch.shape != corr.batch.shape:
        raise SystemExit(f"the prompts tokenize to different lengths: {clean.batch.shape} vs {corr.batch.shape}")
    answer, foil = single_token_id(tok, ANSWER), single_token_id(tok, FOIL)
    layers = [0, 6, 12, 17] if args.quick else list(range(lm.n_layers))
    hooks = [f"blocks.{layer}.hook_resid_pre" for layer in layers]
    n_pos = clean.batch.shape[1]

    # --- TransformerLens: one full forward (all-position, full-vocabulary logits) per cell
    bridge = lm.bridge
    bridge.eval()
    clean_ids, corr_ids = clean.batch.input_ids, corr.batch.input_ids

    def tl_metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[0, -1, answer] - logits[0, -1, foil]

    with torch.no_grad():
        _, clean_cache = bridge.run_with_cache(clean_ids, names_filter=lambda n: n.endswith("hook_resid_pre"))
        _, corr_cache_tl = bridge.run_with_cache(corr_ids, names_filter=lambda n: n.endswith("hook_resid_pre"))
        t = time.perf_counter()
        index_df = _index_df(layers, n_pos)
        # get_act_patch_resid_pre is this call with index_axis_names=("layer", "pos"); the explicit
        # index lets the quick mode patch a subset of layers with the same loop
        tl = patching.generic_activation_patch(bridge, corr_ids, clean_cache, tl_metric,
                                               patching.layer_pos_patch_setter, "resid_pre", index_df=index_df)
        t_tl = time.perf_counter() - t
    tl = tl.reshape(len(layers), n_pos).float().cpu()

    # --- ours, three variants (see the module docstring); the default is the last
    metric = logit_diff_metric(vlm, answer, foil)
    variants = {"batched": dict(packed=False, skip_identical=False), "packed": dict(packed=True, skip_identical=False),
                "packed_skip": dict(packed=True, skip_identical=True)}
    grids, secs = {}, {}
    for key, kw in variants.items():
        secs[key] = timed(lambda kw=kw: grids.__setitem__(key, patch_grid(vlm, clean, corr, metric, hooks=hooks,
                                                                          **kw)), repeats=3)
    ours, t_ours = grids["packed_skip"], secs["packed_skip"]

    # --- attribution patching over the same grid, checked against the exact grid
    t = time.perf_counter()
    att = attribution_grid(vlm, clean, corr, metric, hooks=hooks)
    t_att = time.perf_counter() - t
    agreement = compare_to_exact(att.grid, ours - att.corrupted)

    # --- AtP* beside AtP, against exact patching timed in the same call (atp_compare)
    atp_star = estimators_vs_exact(vlm, clean, corr, metric, layers)

    cells = len(layers) * n_pos
    save("patching_quick" if args.quick else "patching", {
        "lm": lm.name, "clean_prompt": CLEAN, "corrupted_prompt": CORRUPT,
        "metric": f"logit({ANSWER!r}) - logit({FOIL!r}) at the last position", "hook": "hook_resid_pre",
        "layers": len(layers), "positions": n_pos, "cells": cells,
        "tl_cells_per_s": cells / t_tl, "ours_cells_per_s": cells / t_ours, "speedup_vs_transformer_lens": t_tl / t_ours,
        "target_speedup": 20.0, "max_abs_diff_vs_transformer_lens": float((tl - ours).abs().max()),
        "variants_speedup_vs_transformer_lens": {k: t_tl / v for k, v in secs.items()},
        "variants_max_abs_diff_vs_transformer_lens": {k: float((tl - g).abs().max()) for k, g in grids.items()},
        "identical_cells_skipped": int(sum(bool(torch.equal(clean_cache[f"blocks.{l}.hook_resid_pre"][0, p],
                                                            corr_cache_tl[f"blocks.{l}.hook_resid_pre"][0, p]))
                                           for l in layers for p in range(n_pos))),
        "metric_range": float(ours.max() - ours.min()),
        "attribution_cells_per_s": cells / t_att, "attribution_speedup_vs_exact": t_ours / t_att,
        "attribution_vs_exact": agreement.as_dict(),
        "clean_metric": att.clean, "corrupted_metric": att.corrupted,
        "atp_star_vs_exact": atp_star, "atp_star_drop_layers": lm.n_layers,
    })
    if args.checkpoint is not None:
        image_pair(args.checkpoint, layers)


def image_pair(checkpoint: Path, layers: list[int]) -> None:
    """AtP, AtP with the QK fix and AtP* against exact patching on an image pair through a
    trained VLM (``patching_image.json``)."""
    from PIL import Image

    from interp.analysis.patching import metric_value
    from interp.data.images import embedded_image_root, load_image_set
    from interp.vlm import load_vlm

    vlm = load_vlm(checkpoint)
    image_set = load_image_set(embedded_image_root())
    first = {c: image_set.first_rendering(c) for c in (IMAGE_CLEAN, IMAGE_CORRUPT)}

    def item(concept: str) -> PatchInput:
        return PatchInput(vlm.build([vlm_item(0, IMAGE_QUESTION)]), vlm.encode([Image.open(first[concept].path)]))

    clean, corr = item(IMAGE_CLEAN), item(IMAGE_CORRUPT)
    tok = vlm.tokenizer
    metric = logit_diff_metric(vlm, single_token_id(tok, " Yes"), single_token_id(tok, " No"))
    atp_star = estimators_vs_exact(vlm, clean, corr, metric, layers)
    save("patching_image", {
        "lm": vlm.lm.name, "checkpoint": str(checkpoint), "question": IMAGE_QUESTION,
        "clean_image": first[IMAGE_CLEAN].key, "corrupted_image": first[IMAGE_CORRUPT].key,
        "metric": "logit(' Yes') - logit(' No') at the last question token",
        "clean_metric": metric_value(vlm, clean, metric), "corrupted_metric": metric_value(vlm, corr, metric),
        "layers": len(layers), "positions": clean.batch.shape[1],
        "atp_star_vs_exact": atp_star,
    })


def estimators_vs_exact(vlm: HookedVLM, clean: PatchInput, corr: PatchInput, metric, layers: list[int]) -> dict:
    """AtP and AtP* (and, on q/k, AtP with the QK fix alone) against exact patching on the
    ``layers``' resid_pre grid and their query/key grid: grid -> estimator -> its row of
    :func:`compare_estimators` (NaN, a magnitude's signed r, -> null)."""
    hooks = [f"blocks.{layer}.hook_resid_pre" for layer in layers]
    qk_hooks = [f"blocks.{layer}.attn.hook_{side}" for layer in layers for side in "qk"]
    by_grid = {"resid_pre": compare_estimators(vlm, clean, corr, metric, hooks=hooks, estimators=("atp", "atp_star")),
               "attn_qk": compare_estimators(vlm, clean, corr, metric, hooks=qk_hooks)}
    return {grid: {r["estimator"]: {k: None if v != v else v for k, v in r.items() if k != "estimator"}
                   for r in rows} for grid, rows in by_grid.items()}


def _index_df(layers: list[int], n_pos: int):
    """The (layer, pos) cells for TransformerLens's explicit-index mode."""
    import pandas as pd

    return pd.DataFrame([(l, p) for l in layers for p in range(n_pos)], columns=["layer", "pos"])


if __name__ == "__main__":
    main()
