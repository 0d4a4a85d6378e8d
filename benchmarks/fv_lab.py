"""Why do function vectors score ~0.04 on gemma-3-270m's text tasks where task vectors reach
0.41? A diagnosis (issue 16), on the task-vector study's own data, prompts and code paths.

Per text task (the study's ``experiments/task_vectors_quick.toml`` settings: 8-example ICL
prompts for the mean head outputs, 12 label-shuffled prompts for the indirect effects):

1. the heads: the largest average indirect effects (AIE) and the corrupted answer probability
   they start from (a ranking of heads whose AIEs are all ~0 is noise);
2. the size: the function vector's norm against the residual norm at the last token of the
   zero-shot queries, per layer (a vector 1% of the residual cannot move the output);
3. the no-op test: the share of test queries whose top-1 token changes when the vector is added
   at L/3, scale 1 (the study's setting);
4. the sweep of Todd et al.: every layer x scales (1/16 .. 8) for the top-k heads' vector
   (k = 6, the study's; 10) and for vectors of k random heads (2 draws each); the layer and
   scale chosen on validation, exact match (whole-vocabulary argmax) reported on test, beside
   zero-shot, the best constant answer, prompting with 5 examples and the study's text task
   vector (replace at its validation layer).

    OMP_NUM_THREADS=1 python benchmarks/fv_lab.py --tasks hypernym,country_capital,antonym   # -> benchmarks/results/fv_lab.json
    OMP_NUM_THREADS=1 python benchmarks/fv_lab.py --tasks antonym --quick
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, save  # noqa: E402

from interp.analysis import function_vectors as fvs  # noqa: E402
from interp.analysis import task_vectors as tvs  # noqa: E402
from interp.data.tasks import load_task  # noqa: E402
from interp.studies.task_vectors.config import load_config  # noqa: E402
from interp.studies.task_vectors.context import load_context  # noqa: E402
from interp.studies.task_vectors.prompts import prompting_prompts, query_prompts, source_vectors  # noqa: E402
from interp.studies.task_vectors.run import Scorer, choose_layer, rank_heads  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCALES = (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
ONE = SCALES.index(1.0)
TOP_KS = (6, 10)
RANDOM_DRAWS = 2


def em_of(scorer: Scorer, resid: torch.Tensor) -> np.ndarray:
    """Exact match ``[..., n]`` -> mean over queries ``[...]``."""
    return scorer(resid)["em"].float().mean(-1).numpy()


def best_on_val(val_em: np.ndarray, layers: list[int]) -> tuple[int, int]:
    """(layer index, scale index) with the best validation exact match (ties: smaller scale, earlier layer)."""
    n_l, n_s = val_em.shape
    return max(((li, si) for li in range(n_l) for si in range(n_s)),
               key=lambda t: (round(float(val_em[t]), 9), -t[1], -t[0]))


def diagnose(task, cfg, ctx, quick: bool) -> dict:
    vlm, m = ctx.vlm, cfg.method
    L = vlm.lm.n_layers
    layers = list(range(L))
    train = task.split("train")
    val = task.split("val")[: cfg.data.max_val or None]
    test = task.split("test")[: cfg.data.max_test or None]
    seed = [task.name, m.seed]
    val_s, test_s = Scorer.for_items(vlm, task, val), Scorer.for_items(vlm, task, test)
    qv, qt = query_prompts(val, "text", ctx), query_prompts(test, "text", ctx)
    t0 = time.perf_counter()

    # baselines: zero-shot, prompting, the text task vector at its validation layer, the best constant
    k = min(m.n_examples, len(train) - 1)
    tv = source_vectors(task, train, ["text_examples"], k, m.n_prompts, seed, ctx, m.batch_size)["text_examples"]
    pv, clean_v = tvs.patch_sweep(vlm, qv, None, tv, layers, batch_size=m.batch_size)
    tv_layer = choose_layer(em_of(val_s, pv)[:, 0], np.zeros(L), layers)
    pt, clean_t = tvs.patch_sweep(vlm, qt, None, tv[tv_layer][None], [tv_layer], batch_size=m.batch_size)
    prompting = tvs.run_last(vlm, prompting_prompts(test, train, "text", "text", k, seed, ctx), None,
                             batch_size=max(1, m.batch_size // 4))
    answers = [it.answers[0] for it in test]
    constant = max(answers.count(a) for a in set(answers)) / len(answers)
    base = {"zero_shot": float(em_of(test_s, clean_t)), "prompting_5": float(em_of(test_s, prompting)),
            "task_vector": float(em_of(test_s, pt)[0, 0]), "task_vector_layer": tv_layer, "best_constant": constant}

    # the heads, as the study ranks them
    _, mean_out, aie, corrupted = rank_heads(vlm, train, cfg, seed)
    order = aie.flatten().sort(descending=True).values
    heads_info = {"corrupted_p": float(corrupted.mean()), "aie_top": [float(x) for x in order[:10]],
                  "aie_median": float(order.median()), "aie_min": float(order[-1]),
                  "top_heads": fvs.top_heads(aie, 10)}

    # the vectors: top-k heads and k random heads
    n_heads = aie.shape[1]
    g = torch.Generator().manual_seed(0)
    variants: dict[str, torch.Tensor] = {}
    for kk in TOP_KS[:1] if quick else TOP_KS:
        variants[f"top{kk}"] = fvs.function_vector(mean_out, fvs.top_heads(aie, kk))
        for d in range(1 if quick else RANDOM_DRAWS):
            idx = torch.randperm(L * n_heads, generator=g)[:kk]
            variants[f"random{kk}_{d}"] = fvs.function_vector(mean_out, [(int(i) // n_heads, int(i) % n_heads) for i in idx])

    # size against the residual at the queries' last token
    resid = tvs.last_resid(vlm, qt, None, layers=layers, batch_size=m.batch_size)  # [n, L, d]
    resid_norm = resid.norm(dim=-1).median(0).values  # [L]
    norms = {name: float(v.norm()) for name, v in variants.items()}

    # the no-op test at the study's setting (L/3, scale 1): does the top-1 token change at all?
    third = fvs.default_layer(L)
    top_clean = tvs.top_tokens(vlm, clean_t)
    names = list(variants)
    stack = torch.stack([variants[n] * s for n in names for s in SCALES])  # [n_variants * n_scales, d]
    out: dict[str, dict] = {}
    pv_all, _ = tvs.patch_sweep(vlm, qv, None, stack[None].expand(L, -1, -1), layers, mode="add",
                                batch_size=m.batch_size)
    pt_all, _ = tvs.patch_sweep(vlm, qt, None, stack[None].expand(L, -1, -1), layers, mode="add",
                                batch_size=m.batch_size)
    val_em, test_em = em_of(val_s, pv_all), em_of(test_s, pt_all)  # [L, n_variants * n_scales]
    changed = (tvs.top_tokens(vlm, pt_all) != top_clean).float().mean(-1).numpy()
    for vi, name in enumerate(names):
        cols = slice(vi * len(SCALES), (vi + 1) * len(SCALES))
        li, si = best_on_val(val_em[:, cols], layers)
        out[name] = {"norm": norms[name], "norm_over_resid_at_third": norms[name] / float(resid_norm[third]),
                     "changed_at_third_scale1": float(changed[third, cols][ONE]),
                     "em_at_third_scale1": float(test_em[third, cols][ONE]),
                     "best_layer": layers[li], "best_scale": SCALES[si], "em_test_at_val_best": float(test_em[li, cols][si]),
                     "em_val_best": float(val_em[li, cols][si]),
                     "changed_at_val_best": float(changed[li, cols][si]),
                     "em_test_max_over_grid": float(test_em[:, cols].max())}
    return {"task": task.name, "n": {"train": len(train), "val": len(val), "test": len(test)}, "baselines": base,
            "heads": heads_info, "resid_norm_median": [float(x) for x in resid_norm], "vectors": out,
            "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--tasks", default="hypernym,country_capital,antonym,food_colour,animal_young,object_material")
    args = ap.parse_args()
    cfg = load_config(ROOT / "experiments" / "task_vectors_quick.toml")
    tasks = [load_task(t) for t in args.tasks.split(",")]
    ctx = load_context(cfg, [])  # text tasks only: no image features needed
    results = []
    for task in tasks:
        r = diagnose(task, cfg, ctx, args.quick)
        results.append(r)
        b, v = r["baselines"], r["vectors"]
        print(f"[{task.name}] zero-shot {b['zero_shot']:.2f}, prompting {b['prompting_5']:.2f}, task vector "
              f"{b['task_vector']:.2f} (L{b['task_vector_layer']}), constant {b['best_constant']:.2f}; corrupted p "
              f"{r['heads']['corrupted_p']:.3f}, top AIE {r['heads']['aie_top'][:3]}; ({r['seconds']:.0f} s)")
        for name, x in v.items():
            print(f"   {name}: |fv|/|resid| at L/3 {x['norm_over_resid_at_third']:.3f}, changed at L/3 x1 "
                  f"{x['changed_at_third_scale1']:.2f}, em there {x['em_at_third_scale1']:.2f}; val-best L{x['best_layer']} "
                  f"x{x['best_scale']:g}: test em {x['em_test_at_val_best']:.2f} (changed {x['changed_at_val_best']:.2f}); "
                  f"grid max {x['em_test_max_over_grid']:.2f}")
    save("fv_lab_quick" if args.quick else "fv_lab", {"config": str(ROOT / "experiments" / "task_vectors_quick.toml"),
                                                      "scales": list(SCALES), "top_ks": list(TOP_KS), "tasks": results})


if __name__ == "__main__":
    main()
