"""Can one image token carry a *set* of candidate concepts? (lab; no projector training)

The quick study's token is ``u + sum_c p_c D_c`` with ``p`` a sharp softmax of a classifier:
one concept per token, so leaf recall is bounded by the classifier's top-1 (57% on test),
while the same classifier read as a yes/no score reaches leaf F1 ~93. This lab reads held-out
(val) images through *superposed* tokens ``u + sum_c s_c D_c`` where ``s`` is not a
distribution: the top-k indicator, or a relative probability ``p_c / max p`` (each plausible
concept at full strength), and scores the frozen LM's leaf answers on them (one true leaf,
one random distractor per image; margin thresholded at 0), as benchmarks/bench_readout.py.

    .venv/bin/python benchmarks/superpose_lab.py [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import leaf_readout, parser, save  # noqa: E402

from readout_setup import readout_setup  # noqa: E402

from interp.projector import pool_tokens  # noqa: E402
from interp.warmstart import fit_classifier  # noqa: E402


def main() -> None:
    args = parser(__doc__).parse_args()
    t0 = time.perf_counter()
    st = readout_setup(args.quick)
    cfg, data, lm, concepts, protos, ask = st.cfg, st.data, st.lm, st.concepts, st.protos, st.ask
    tr, ev, ytr, yev, own, dist = st.tr, st.ev, st.ytr, st.yev, st.own, st.dist
    print("prototypes", protos.metrics, flush=True)
    u, D = protos.u, protos.D
    x = pool_tokens(data.features.float(), 1, cfg.model.pool)[:, 0]
    W, b = fit_classifier(x[tr], ytr, len(concepts), l2=cfg.warm_start.l2, precision=cfg.warm_start.precision)
    L = x[ev] @ W.T + b
    rank = (L > L.gather(1, yev[:, None])).sum(1)
    recall = {k: 100.0 * float((rank < k).float().mean()) for k in (1, 2, 3, 5, 10)}
    print("classifier top-k recall on val", recall, flush=True)
    rows = []

    def row(name: str, s: torch.Tensor) -> None:
        r = {"readout": name, **leaf_readout(ask, u + s @ D, own, dist)}
        rows.append(r)
        print(f"{name:36s} F1 {r['leaf_f1']:5.1f}  pairwise {r['pairwise']:5.1f}  yes {r['yes_rate']:5.1f}  "
              f"best F1 {r['best_f1']:5.1f}", flush=True)

    onehot = lambda idx: torch.zeros_like(L).scatter_(1, idx, 1.0)
    row("perfect vision", onehot(yev[:, None]))
    row("top-1", onehot(L.argmax(1, keepdim=True)))
    row("softmax T=0.25", torch.softmax(L / 0.25, 1))
    for k in (2, 3, 5):
        row(f"top-{k} summed", onehot(L.topk(k, 1).indices))
    for temp in (1.0, 0.5, 0.25):
        p = torch.softmax(L / temp, 1)
        row(f"p/max p, T={temp}", p / p.max(1, keepdim=True).values)
    for k in (3, 5):
        for g in (0.7, 0.5):
            row(f"top-{k} summed x{g}", g * onehot(L.topk(k, 1).indices))
    save("superpose_quick" if args.quick else "superpose",
         {"lm": lm.name, "n_concepts": len(concepts), "n_val_images": len(ev), "prototypes": protos.metrics,
          "recall": recall, "rows": rows, "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
