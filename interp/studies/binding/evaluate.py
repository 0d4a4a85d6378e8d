"""Accuracy of a trained decoder on fixed, seeded evaluation sets (batched, no gradients).

An evaluation set is (kind, number of objects): text in distribution (``n_objects``) and
out of distribution (each of ``ood_objects``), the image version on held-out rendered
contexts, and the noise variants. Every set is drawn from its own seed, so all regimes and
seeds are scored on the same episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from interp.io import stable_hash
from interp.studies.binding.bank import Bank
from interp.studies.binding.model import BindingModel
from interp.studies.binding.task import ROLES
from interp.studies.binding.train import Sources


@dataclass(frozen=True)
class EvalSet:
    kind: str
    n: int
    size: int
    seed: int
    hops: int = 2  # 1: the one-hop curriculum task (answer = the colour's shape)

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.n}" + ("" if self.hops == 2 else f"/{self.hops}-hop")


@torch.no_grad()
def accuracy(model: BindingModel, sources: Sources, es: EvalSet, *, batch_size: int = 256,
             bank: Bank | None = None) -> dict:
    """Accuracy (argmax over the whole vocabulary == the answer item, or shape for one hop) on ``es``; also the
    accuracy restricted to the items of the episode (chance ``1/n``) and the mean answer
    log-probability."""
    model.eval()
    rng = np.random.default_rng([es.seed, es.n, int(stable_hash(es.kind, n=8), 16)])
    hits = in_ep = 0
    logp = 0.0
    done = 0
    while done < es.size:
        size = min(batch_size, es.size - done)
        lay, ext = sources.batch(es.kind, rng, size, es.n, bank=bank, hops=es.hops)
        logits = model(lay, ext).float()
        target = lay.answer.to(logits.device)
        hits += int((logits.argmax(-1) == target).sum())
        logp += float(torch.log_softmax(logits, -1).gather(1, target[:, None]).sum())
        # among the episode's own items only (the answer space a retrieval can choose from)
        role = ROLES["assoc_item"] if es.hops == 2 else ROLES["ctx_shape"]
        items = lay.ids[lay.role == role].reshape(size, -1).to(logits.device)
        pick = items.gather(1, logits.gather(1, items).argmax(1, keepdim=True)).squeeze(1)
        in_ep += int((pick == target).sum())
        done += size
    return {"set": es.name, "kind": es.kind, "n": es.n, "size": es.size, "acc": hits / es.size,
            "acc_in_episode": in_ep / es.size, "chance_in_episode": 1.0 / es.n, "logp": logp / es.size}
