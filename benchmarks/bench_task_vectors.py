"""Patched queries per second: batched task-vector patching vs a one-query-at-a-time loop.

A "patched query" is one zero-shot query (``Kenya :``, or ``<image> :``) with one vector
written into its last position at one layer, run to the end and scored (argmax over the
full vocabulary). The batched path (:func:`interp.analysis.task_vectors.patch_sweep`) runs
the queries once, caches their residual stream and restarts every (layer, vector) from the
cache at ``l + 1`` with all vectors x queries in one batch; the loop
(:func:`~interp.analysis.task_vectors.patch_one`) runs one full forward pass with a hook per
patched query, as a plain TransformerLens/nnsight script would. Same numbers are checked:
identical predictions and the largest difference of the final residuals.

Embedded gemma-3-270m, real task data (country -> capital text queries and hypernym image
queries; a fresh projector and random image features: speed does not depend on them), the
task vectors of text examples, of an instruction and a random vector, at every layer.

    .venv/bin/python benchmarks/bench_task_vectors.py [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, save  # noqa: E402

from interp.analysis import task_vectors as tv  # noqa: E402
from interp.data.tasks import load_task  # noqa: E402
from interp.models.hooked import HookedLM  # noqa: E402
from interp.models.lm import load_lm  # noqa: E402
from interp.vlm import HookedVLM  # noqa: E402


def main() -> None:
    args = parser(__doc__).parse_args()
    lm = HookedLM(load_lm("gemma-3-270m"))
    vlm = HookedVLM(lm, HookedVLM.new_projector(lm, "efficientnet-lite0", 1280, 49, pool_to=1))
    n_text, n_image = (5, 3) if args.quick else (24, 8)
    layers = list(range(lm.n_layers)) if not args.quick else list(range(0, lm.n_layers, 3))
    cap, hyp = load_task("country_capital"), load_task("hypernym")
    train = cap.split("train")
    feats = torch.randn(n_image, 49, 1280, generator=torch.Generator().manual_seed(0))
    specs = [tv.icl_prompt([(d.input, d.answer) for d in train[i:i + 5]], train[i + 5].input) for i in range(0, 24, 6)]
    t = time.perf_counter()
    vec = tv.task_vector(vlm, specs, layers=layers)
    inst = tv.task_vector(vlm, [tv.icl_prompt([], train[0].input, instruction=cap.instruction)], layers=layers)
    t_extract = time.perf_counter() - t
    vecs = torch.stack([vec, inst, tv.random_like(vec)], 1)  # [layers, 3, d_model]
    queries = ([tv.icl_prompt([], it.input) for it in cap.split("val")[:n_text]]
               + [tv.icl_prompt([], i) for i in range(n_image)])
    n_patched = len(layers) * vecs.shape[1] * len(queries)

    t = time.perf_counter()
    patched, _ = tv.patch_sweep(vlm, queries, feats, vecs, layers, batch_size=64)
    pred_batched = tv.top_tokens(vlm, patched)
    t_batched = time.perf_counter() - t

    t = time.perf_counter()
    loop = torch.empty_like(patched)
    for li, l in enumerate(layers):
        for j in range(vecs.shape[1]):
            for i, q in enumerate(queries):
                loop[li, j, i] = tv.patch_one(vlm, q, feats, vecs[li, j], l)
    pred_loop = tv.top_tokens(vlm, loop)
    t_loop = time.perf_counter() - t

    same = bool(torch.equal(pred_batched, pred_loop))
    result = {
        "lm": lm.name, "layers": len(layers), "vectors": int(vecs.shape[1]), "queries": len(queries),
        "image_queries": n_image, "patched_queries": n_patched, "extract_seconds": t_extract,
        "batched_patched_queries_per_s": n_patched / t_batched, "loop_patched_queries_per_s": n_patched / t_loop,
        "speedup": t_loop / t_batched, "identical_predictions": same,
        "prediction_agreement": float((pred_batched == pred_loop).float().mean()),
        "max_abs_resid_diff": float((patched - loop).abs().max()),
    }
    save("task_vectors_quick" if args.quick else "task_vectors", result)
    if not same:
        raise SystemExit("batched and one-at-a-time predictions differ")


if __name__ == "__main__":
    main()
