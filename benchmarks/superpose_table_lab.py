"""A prototype table learned for *superposed* tokens (lab; no projector training).

superpose_lab.py showed that the preset's table, learned for one concept per token, is not read
as "any of these" when several prototypes are summed: the yes rate and the pairwise accuracy
drop. This lab continues the cached table (``u``, ``D``) with a fourth stage in which every
training token carries a *set* of concepts, ``u + sum_{c in S} w_c D_c`` (``|S|`` uniform in
1..``max_set``, the first member at weight 1, the others at weights drawn uniformly from
[``min_weight``, 1]), and the LM loss asks about a member of the set (Yes) and a concept outside
it (No). Leaf questions only: no hypernym word, no image, so the deprivation logic holds.

Before and every ``--eval_every`` steps, the val images are read through the classifier's
superposed readouts (``p / max p`` at several temperatures, top-k summed) and perfect vision,
scored as superpose_lab.py (one true leaf, one random distractor each, margin at 0).

    .venv/bin/python benchmarks/superpose_table_lab.py [--steps 200] [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import leaf_readout, parser, save, yes_no_step  # noqa: E402

from readout_setup import readout_setup  # noqa: E402

from interp.projector import pool_tokens  # noqa: E402
from interp.warmstart import fit_classifier  # noqa: E402


MIDWAY = ("perfect vision", "top-2 summed", "p/max p T=1")
"""The readouts scored between the first and the last evaluation."""


def sample_sets(C: int, n: int, max_set: int, min_weight: float, g: torch.Generator):
    """``n`` token weight rows ``[n, C]`` (a set of 1..max_set concepts, first member at 1), the
    asked member of each (Yes) and a concept outside the set (No)."""
    size = torch.randint(1, max_set + 1, (n,), generator=g)
    W = torch.zeros(n, C)
    yes, no = [], []
    for i, k in enumerate(size.tolist()):
        members = torch.randperm(C, generator=g)[:k + 1]  # the last one is the No concept
        w = torch.cat([torch.ones(1), min_weight + (1 - min_weight) * torch.rand(k - 1, generator=g)])
        W[i, members[:k]] = w
        yes.append(int(members[torch.randint(k, (1,), generator=g)]))
        no.append(int(members[k]))
    return W, yes, no


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=64, help="sequences per step (half Yes, half No)")
    ap.add_argument("--max_set", type=int, default=4)
    ap.add_argument("--min_weight", type=float, default=0.3)
    ap.add_argument("--eval_every", type=int, default=50)
    ap.add_argument("--n_val", type=int, default=0, help="score this many val images (seeded subset; 0: all)")
    ap.add_argument("--readouts", default="", help="comma-separated readout names to score (default: all)")
    ap.add_argument("--out", default="superpose_table")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.eval_every, args.batch = 4, 2, 8
    t0 = time.perf_counter()
    st = readout_setup(args.quick)
    cfg, data, lm, concepts, protos, ask = st.cfg, st.data, st.lm, st.concepts, st.protos, st.ask
    print("prototypes", protos.metrics, f"({time.perf_counter() - t0:.0f} s)", flush=True)
    x = pool_tokens(data.features.float(), 1, cfg.model.pool)[:, 0]
    W_cls, b_cls = fit_classifier(x[st.tr], st.ytr, len(concepts), l2=cfg.warm_start.l2,
                                  precision=cfg.warm_start.precision)
    L = x[st.ev] @ W_cls.T + b_cls
    onehot = lambda idx: torch.zeros_like(L).scatter_(1, idx, 1.0)

    def relmax(temp: float) -> torch.Tensor:
        p = torch.softmax(L / temp, 1)
        return p / p.max(1, keepdim=True).values

    readouts = {"perfect vision": onehot(st.yev[:, None]), "top-1": onehot(L.argmax(1, keepdim=True)),
                "softmax T=0.25": torch.softmax(L / 0.25, 1), "top-2 summed": onehot(L.topk(2, 1).indices),
                "top-3 summed": onehot(L.topk(3, 1).indices), "p/max p T=0.5": relmax(0.5),
                "p/max p T=1": relmax(1.0), "p/max p T=2": relmax(2.0)}
    if args.quick:
        readouts = {k: readouts[k] for k in ("perfect vision", "p/max p T=1")}
    elif args.readouts:
        readouts = {k: readouts[k] for k in args.readouts.split(",")}
    own, dist = st.own, st.dist
    if args.n_val and args.n_val < len(own):
        keep = torch.randperm(len(own), generator=torch.Generator().manual_seed(1))[:args.n_val].sort().values
        readouts = {k: v[keep] for k, v in readouts.items()}
        own, dist = [own[i] for i in keep.tolist()], [dist[i] for i in keep.tolist()]
    u, D = protos.u.clone().to(lm.device).requires_grad_(True), protos.D.clone().to(lm.device).requires_grad_(True)
    rows, curve = [], []

    @torch.no_grad()
    def evaluate(step: int, names=None) -> None:
        for name, s in readouts.items():
            if names is not None and name not in names:
                continue
            r = {"step": step, "readout": name, **leaf_readout(ask, (u + s.to(u.device) @ D).detach(), own, dist)}
            rows.append(r)
            print(f"step {step:4d} {name:16s} F1 {r['leaf_f1']:5.1f}  pairwise {r['pairwise']:5.1f}  "
                  f"yes {r['yes_rate']:5.1f}  best F1 {r['best_f1']:5.1f}", flush=True)

    evaluate(0)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam([u, D], lr=args.lr)  # residual scale, as the refinement stage (0.02)
    half, t_train = args.batch // 2, time.perf_counter()
    for step in range(1, args.steps + 1):
        Wt, yes, no = sample_sets(len(concepts), half, args.max_set, args.min_weight, g)
        yes_no_step(ask, opt, u + Wt.to(u.device) @ D, [concepts[i] for i in yes], [concepts[i] for i in no], curve,
                    step, t_train)
        if step == args.steps:
            evaluate(step)
        elif step % args.eval_every == 0:  # a few readouts in between (each costs ~30 s)
            evaluate(step, MIDWAY)
    save(args.out + ("_quick" if args.quick else ""),
         {"lm": lm.name, "n_concepts": len(concepts), "n_val_images": len(own), "args": vars(args),
          "prototypes": protos.metrics, "rows": rows, "curve": curve, "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
