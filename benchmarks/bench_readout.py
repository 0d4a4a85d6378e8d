"""How well can the frozen LM read one image token made from a classifier? (no projector training)

The quick study's projector is a classifier of the pooled image features followed by a map onto
the LM's concept prototypes (docs/training.md). This benchmark separates the two limits on
held-out (val) leaf questions, one true leaf and one random distractor leaf per image, with the
margin log P(" Yes") - log P(" No") thresholded at 0:

- perfect vision: each image's token is its own concept's prototype ``u + D_c``;
- the classifier's top-1 prototype (hard assignment): limited by the classifier's top-1;
- softmax mixtures ``u + sum_c p_c D_c`` at temperatures T (the ``mlp2x_softmax`` warm start);
- the ``mlp2x_gelu`` warm start's mixture (logits shifted so about ``active`` are positive);
- k tokens, the classifier's top-k prototypes side by side (does the LM answer "any of them"?);

for mean- and max-pooled features. "best F1" is the F1 at the best threshold (how much is
calibration). Results: ``benchmarks/results/readout[_quick].json``.

    .venv/bin/python benchmarks/bench_readout.py [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import leaf_readout, parser, save  # noqa: E402

from readout_setup import readout_setup  # noqa: E402

from interp.warmstart import fit_classifier  # noqa: E402


def main() -> None:
    args = parser(__doc__).parse_args()
    t0 = time.perf_counter()
    st = readout_setup(args.quick)
    cfg, data, lm, concepts, protos, ask = st.cfg, st.data, st.lm, st.concepts, st.protos, st.ask
    tr, ev, ytr, yev, own, dist = st.tr, st.ev, st.ytr, st.yev, st.own, st.dist
    u, D = protos.u, protos.D
    T = u + D  # [concepts, d_model]

    def score(V: torch.Tensor) -> dict:
        return leaf_readout(ask, V, own, dist)

    rows = [{"readout": "perfect vision (own prototype)", "pool": "-", **score(T[yev])}]
    for pool in ("mean", "max"):
        f = data.features.float()
        x = f.mean(1) if pool == "mean" else f.amax(1)
        W, b = fit_classifier(x[tr], ytr, len(concepts), l2=cfg.warm_start.l2)
        L, Ltr = x[ev] @ W.T + b, x[tr] @ W.T + b
        top1 = 100.0 * float((L.argmax(1) == yev).float().mean())
        base = {"pool": pool, "classifier_top1": top1}
        rows.append({"readout": "top-1 prototype", **base, **score(T[L.argmax(1)])})
        for temp in (0.25, 1.0):
            rows.append({"readout": f"softmax T={temp}", **base, **score(u + torch.softmax(L / temp, 1) @ D)})
        k = 4  # the gelu warm start, active 3, gain 1.67 (the previous preset)
        shift = float(Ltr.topk(k, 1).values[:, k - 1].median())
        top = float(nn.functional.gelu(Ltr - shift).max(1).values.median())
        rows.append({"readout": "gelu warm start (active 3)", **base,
                     **score(u + nn.functional.gelu(L - shift) * 1.67 / top @ D)})
        if pool == "max":
            for k in (2, 4):
                rows.append({"readout": f"top-{k} prototypes as {k} tokens", **base,
                             "topk_recall": 100.0 * float((L.topk(k, 1).indices == yev[:, None]).any(1).float().mean()),
                             **score(T[L.topk(k, 1).indices])})
    for r in rows:
        print(f"{r['readout']:34s} {r['pool']:5s} F1 {r['leaf_f1']:5.1f}  pairwise {r['pairwise']:5.1f}  "
              f"yes {r['yes_rate']:5.1f}  best F1 {r['best_f1']:5.1f}  top-1 {r.get('classifier_top1', float('nan')):5.1f}")
    save("readout_quick" if args.quick else "readout",
         {"lm": lm.name, "n_concepts": len(concepts), "n_val_images": len(ev), "prototypes": protos.metrics,
          "rows": rows, "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
