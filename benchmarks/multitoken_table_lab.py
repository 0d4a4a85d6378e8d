"""Several image tokens per image, a prototype table learned for them (lab; no projector training).

One token carries one concept: a held-out image's token is its classifier's top concept, so leaf
recall is bounded by top-1 (62% val, 57.5% test), and superposing several prototypes in one token
is read as noise (superpose_lab.py, superpose_table_lab.py). Here an image becomes ``k`` tokens,
``t_j = u_j + D_{c_j}`` for the classifier's top-``k`` concepts ``c_1..c_k`` in rank order, each a
clean prototype the table already reads (perfect-vision leaf F1 ~93), with a format vector ``u_j``
per position. The cached table (``u``, ``D``) is continued with the LM loss on sets of ``k``
concepts as ``k`` tokens: asked about a member (Yes) or a concept outside the set (No). Leaf
questions only, no image, no hypernym word: the deprivation logic holds. ``--sets oof`` draws the
sets from the train images' out-of-fold top-``k`` lists instead of at random (leaf labels only).

If the LM answered "is the asked leaf in the set", the F1 on one true leaf and one random
distractor per image would follow from recall@k alone; the lab prints that bound beside what the
LM does. Readouts, before and after: the top-``k`` tokens of the classifier, and an oracle (own
prototype first, then the classifier's next ``k - 1``: perfect vision with ``k`` tokens).

    .venv/bin/python benchmarks/multitoken_table_lab.py [--k 5] [--steps 150] [--split val] [--quick]
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import leaf_readout, parser, save, yes_no_step  # noqa: E402

from readout_setup import readout_setup  # noqa: E402

from interp.projector import pool_tokens  # noqa: E402
from interp.warmstart import fit_classifier, out_of_fold_logits  # noqa: E402


def set_bound(recall: float, false_yes: float) -> float:
    """Macro F1 (Yes and No classes, one true and one distractor question per image) of the
    answer "the asked leaf is in the set": Yes on a true leaf with probability ``recall``, on a
    distractor with probability ``false_yes``."""
    tp, fn, fp, tn = recall, 1 - recall, false_yes, 1 - false_yes
    yes = 2 * tp / (2 * tp + fn + fp)
    no = 2 * tn / (2 * tn + fp + fn)
    return 100.0 * (yes + no) / 2


def random_sets(C: int, n: int, k: int, g: torch.Generator) -> tuple[torch.Tensor, list[int], list[int]]:
    """``[n, k]`` distinct concept rows per set, the asked member (Yes) and an outsider (No)."""
    rows = torch.stack([torch.randperm(C, generator=g)[:k + 1] for _ in range(n)])
    yes = rows[torch.arange(n), torch.randint(k, (n,), generator=g)]
    return rows[:, :k], yes.tolist(), rows[:, k].tolist()


def oof_sets(top: torch.Tensor, C: int, n: int, g: torch.Generator):
    """Sets from train images' out-of-fold top-k lists ``top [n_train, k]``: a random image, a
    random member asked (Yes) and a concept outside the list (No)."""
    pick = torch.randint(len(top), (n,), generator=g)
    sets = top[pick]
    k = sets.shape[1]
    yes = sets[torch.arange(n), torch.randint(k, (n,), generator=g)].tolist()
    no = []
    for s in sets.tolist():
        c = int(torch.randint(C, (1,), generator=g))
        while c in s:
            c = int(torch.randint(C, (1,), generator=g))
        no.append(c)
    return sets, yes, no


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--k", type=int, default=5, help="image tokens per image (the classifier's top k)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=64, help="sequences per step (half Yes, half No)")
    ap.add_argument("--sets", choices=("random", "oof"), default="random")
    ap.add_argument("--shared_u", action="store_true", help="one format vector for every position")
    ap.add_argument("--eval_every", type=int, default=50)
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--n_val", type=int, default=256, help="score this many images (seeded subset; 0: all)")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.k < 1:
        ap.error(f"--k {args.k}: must be >= 1")
    if args.quick:
        args.steps, args.eval_every, args.batch, args.k = 4, 2, 8, min(args.k, 3)
    t0 = time.perf_counter()
    st = readout_setup(args.quick)
    cfg, data, lm, concepts, protos, ask = st.cfg, st.data, st.lm, st.concepts, st.protos, st.ask
    C, k = len(concepts), args.k
    print("prototypes", protos.metrics, f"({time.perf_counter() - t0:.0f} s)", flush=True)
    x = pool_tokens(data.features.float(), 1, cfg.model.pool)[:, 0]
    W_cls, b_cls = fit_classifier(x[st.tr], st.ytr, C, l2=cfg.warm_start.l2, precision=cfg.warm_start.precision)
    if args.split == "val":
        ev, own_rows = st.ev, st.yev
    else:
        ev = data.splits["test"]
        own_rows = protos.index([data.records[i].concept for i in ev])
    rng = random.Random(0)
    own = [concepts[y] for y in own_rows.tolist()]
    dist = [rng.choice([c for c in concepts if c != o]) for o in own]
    if args.n_val and args.n_val < len(own):
        keep = torch.randperm(len(own), generator=torch.Generator().manual_seed(1))[:args.n_val].sort().values.tolist()
        ev, own_rows = [ev[i] for i in keep], own_rows[keep]
        own, dist = [own[i] for i in keep], [dist[i] for i in keep]
    L = x[ev] @ W_cls.T + b_cls
    top = L.topk(k, 1).indices  # [n, k] in rank order
    oracle = torch.cat([own_rows[:, None], L.scatter(1, own_rows[:, None], -float("inf")).topk(k - 1, 1).indices], 1)
    dist_rows = protos.index(dist)
    recall = float((top == own_rows[:, None]).any(1).float().mean())
    false_yes = float((top == dist_rows[:, None]).any(1).float().mean())
    bound = {"recall_at_k": 100 * recall, "distractor_in_top_k": 100 * false_yes,
             "top1": 100 * float((top[:, 0] == own_rows).float().mean()), "set_f1_bound": set_bound(recall, false_yes)}
    print(f"{args.split}: top-1 {bound['top1']:.1f}%  recall@{k} {bound['recall_at_k']:.1f}%  distractor in top-{k} "
          f"{bound['distractor_in_top_k']:.1f}%  -> F1 of 'asked in set' {bound['set_f1_bound']:.1f}", flush=True)
    readouts = {f"top-{k} tokens": top, f"oracle + {k - 1}": oracle, "top-1 token": top[:, :1]}

    u0 = protos.u.to(lm.device)
    U = (u0.expand(1 if args.shared_u else k, -1)).clone().requires_grad_(True)  # [k or 1, d]
    D = protos.D.clone().to(lm.device).requires_grad_(True)  # [C, d]
    tokens = lambda sets: U[: sets.shape[1]] + D[sets.to(D.device)] if not args.shared_u else U + D[sets.to(D.device)]
    rows, curve = [], []

    @torch.no_grad()
    def evaluate(step: int) -> None:
        for name, sets in readouts.items():
            r = {"step": step, "readout": name, **leaf_readout(ask, tokens(sets), own, dist)}
            rows.append(r)
            print(f"step {step:4d} {name:14s} F1 {r['leaf_f1']:5.1f}  pairwise {r['pairwise']:5.1f}  "
                  f"yes {r['yes_rate']:5.1f}  best F1 {r['best_f1']:5.1f}", flush=True)

    evaluate(0)
    g = torch.Generator().manual_seed(0)
    if args.sets == "oof":
        Loof = out_of_fold_logits(x[st.tr], st.ytr, C, folds=cfg.warm_start.folds, l2=cfg.warm_start.l2,
                                  precision=cfg.warm_start.precision)
        train_top = Loof.topk(k, 1).indices
    opt = torch.optim.Adam([U, D], lr=args.lr)
    half, t_train = args.batch // 2, time.perf_counter()
    for step in range(1, args.steps + 1):
        sets, yes, no = (random_sets(C, half, k, g) if args.sets == "random" else oof_sets(train_top, C, half, g))
        yes_no_step(ask, opt, tokens(sets), [concepts[i] for i in yes], [concepts[i] for i in no], curve, step, t_train)
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step)
    name = args.out or f"multitoken_k{k}_{args.sets}_{args.split}"
    save(name + ("_quick" if args.quick else ""),
         {"lm": lm.name, "n_concepts": C, "n_images": len(own), "args": vars(args), "bound": bound,
          "prototypes": protos.metrics, "rows": rows, "curve": curve, "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
