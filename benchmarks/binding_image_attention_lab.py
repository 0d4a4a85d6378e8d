"""Where a binding image model's query looks in the picture (lab; no training).

For a trained image-text model of the binding study, image episodes (single main query, the
evaluation layout) are drawn from the training bank and from the held-out bank; at the query
position, per block and head, the attention on the picture is split into: the cell of the
queried object (the first hop's target), the cells of the other objects, and the empty cells;
and the attention on the answer's position in the associations (the second hop's target: the
item after the queried shape) against the other association items. A model that reads the picture by content puts the
query's attention on the queried cell in some head; one that memorised its pictures need not.

    .venv/bin/python benchmarks/binding_image_attention_lab.py runs/binding-cpu-s1-b7 [--seed 1]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from binding_image_hops_lab import load_trained  # noqa: E402
from common import parser, save  # noqa: E402

from interp.studies.binding.model import BindingModel  # noqa: E402
from interp.studies.binding.task import ROLES, external_tokens, layout, reassign  # noqa: E402


@torch.no_grad()
def attention_split(model: BindingModel, hooked, bank, cfg, vocab, n_episodes: int, seed: int) -> list[dict]:
    """Rows (layer, head, queried_cell, other_objects, empty_cells, answer_assoc, other_assoc):
    the main query's mean attention mass on each group, summed over the group's positions."""
    rng = np.random.default_rng([seed, 7])
    rows = rng.integers(0, len(bank), size=n_episodes)
    ep = reassign(rng, bank.episodes.select(rows), cfg.task)
    n_image = bank.features.shape[1]
    lay = layout(ep, vocab, "image", n_image=n_image)
    ext = external_tokens(lay, bank.features[torch.as_tensor(rows)])
    x = model.embed(lay, ext)
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(hooked.n_layers)]
    b = torch.arange(n_episodes)
    q = lay.last
    grabbed: dict[str, torch.Tensor] = {}

    def keep(name):
        def fn(t, hook):  # [batch, head, q_pos, k_pos]
            grabbed[name] = t[b, :, q].float()  # [batch, head, k_pos]
        return fn

    hooked(x, lay.mask, fwd_hooks=[(nm, keep(nm)) for nm in names])
    code = lay.ext_code  # [batch, pos]: the patch index at image positions
    queried = torch.as_tensor(ep.cells[np.arange(n_episodes), ep.query])  # [batch]
    is_img = code >= 0
    is_q = code == queried[:, None]
    is_obj = torch.zeros_like(is_img)
    for k in range(ep.n):
        is_obj |= code == torch.as_tensor(ep.cells[:, k])[:, None]
    assoc = lay.role == ROLES["assoc_item"]  # [batch, pos], n per row, in association order
    assoc_pos = lay.positions("assoc_item")  # [batch, n]
    # the answer's association item: associations come in the order assoc_order[b]
    # (context indices), so the queried pair's is at the slot where assoc_order[b] == query[b]
    where = np.argmax(ep.assoc_order == ep.query[:, None], axis=1)  # [batch]
    ans_assoc = torch.zeros_like(assoc)
    ans_assoc[b, assoc_pos[b, torch.as_tensor(where)]] = True
    out = []
    for i, nm in enumerate(names):
        att = grabbed[nm]  # [batch, head, pos]
        for h in range(att.shape[1]):
            a = att[:, h]
            out.append({"layer": i, "head": h,
                        "queried_cell": float((a * is_q).sum(1).mean()),
                        "other_objects": float((a * (is_obj & ~is_q)).sum(1).mean()),
                        "empty_cells": float((a * (is_img & ~is_obj)).sum(1).mean()),
                        "answer_assoc": float((a * ans_assoc).sum(1).mean()),
                        "other_assoc": float((a * (assoc & ~ans_assoc)).sum(1).mean())})
    return out


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("run", help="a binding study folder with an image-text model")
    ap.add_argument("--seed", type=int, default=None, help="default: the run's only seed")
    ap.add_argument("--episodes", type=int, default=256)
    args = ap.parse_args()
    run = Path(args.run)
    if args.quick:
        args.episodes = 32
    cfg, seed, vocab, model, _, train_bank, held_bank = load_trained(ap, run, args.seed, "image-text")
    hooked = model.hooked()
    banks = {"training pictures": train_bank, "held-out pictures": held_bank}
    result = []
    for name, bank in banks.items():
        rows = attention_split(model, hooked, bank, cfg, vocab, min(args.episodes, len(bank)), seed)
        result += [{"pictures": name, **r} for r in rows]
        best = max(rows, key=lambda r: r["queried_cell"])
        best2 = max(rows, key=lambda r: r["answer_assoc"])
        print(f"{run.name} seed {seed}, {name}: most attention on the queried cell: block {best['layer']} head "
              f"{best['head']} {best['queried_cell']:.2f} (other objects {best['other_objects']:.2f}, empty "
              f"{best['empty_cells']:.2f}); on the answer's association item: block {best2['layer']} head "
              f"{best2['head']} {best2['answer_assoc']:.2f} (other associations {best2['other_assoc']:.2f})", flush=True)
    save(f"binding_image_attention_{run.name}_s{seed}" + ("_quick" if args.quick else ""),
         {"run": str(run), "seed": seed, "episodes": args.episodes, "rows": result})


if __name__ == "__main__":
    main()
