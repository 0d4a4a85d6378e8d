"""Training conditions of the taxonomic study: deprivation (ablation) and counterfactual worlds.

Everything here is a pure, seeded function of (taxonomy, parameters, seed), so that a
run's conditions can be recomputed from its recorded config and compared across runs.

- Worlds map the concept of an image to the concept its questions are about:
  ``original`` (identity), ``across`` (a random permutation of all leaves: destroys visual
  coherence), ``within`` (a derangement among leaves with exactly the same hypernym set;
  a leaf alone in its set joins the most specific compatible group: keeps coherence).
  The same mapping is applied to train, val and test.
- Ablation removes, per hypernym, leaves whose hypernym questions leave training:
  ``random`` with rate r (max(1, floor(r n)) leaves per hypernym; r = 1 removes all) or
  ``systematic`` (k whole categories). Test questions are "unseen" when their leaf was
  removed for that hypernym.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Iterable, Mapping

WORLDS = ("original", "across", "within")


@dataclass(frozen=True)
class Ablation:
    """``kind``: "random" (``rate`` in [0, 1]) or "systematic" (``n_categories`` whole hypernyms)."""

    kind: str = "random"
    rate: float = 1.0
    n_categories: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("random", "systematic"):
            raise ValueError(f"ablation kind {self.kind!r}: use 'random' or 'systematic'")
        if self.kind == "random" and not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"ablation rate {self.rate} must be in [0, 1]")
        if self.kind == "systematic" and self.n_categories < 0:
            raise ValueError(f"n_categories {self.n_categories} must be >= 0")

    @property
    def label(self) -> str:
        return f"{round(self.rate * 100)}%" if self.kind == "random" else f"sys{self.n_categories}"


def hypernym_sets(pairs: Iterable[tuple[str, str]]) -> dict[str, frozenset[str]]:
    """leaf -> the set of its hypernyms."""
    out: dict[str, set[str]] = {}
    for leaf, hyp in pairs:
        out.setdefault(leaf, set()).add(hyp)
    return {k: frozenset(v) for k, v in out.items()}


def leaves_by_hypernym(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for leaf, hyp in pairs:
        out.setdefault(hyp, []).append(leaf)
    return {h: sorted(set(v)) for h, v in sorted(out.items())}


def _derangement(items: list[str], rng: random.Random) -> dict[str, str]:
    """A random permutation of ``items`` with no fixed point (needs len >= 2)."""
    order = items[:]
    rng.shuffle(order)
    return {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}


def world_mapping(leaves: Iterable[str], pairs: Iterable[tuple[str, str]], world: str, seed: int) -> dict[str, str]:
    """image concept -> question concept for a world (see module doc)."""
    leaves = sorted(set(leaves))
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}: valid worlds are {list(WORLDS)}")
    rng = random.Random(f"world-{world}-{seed}")
    if world == "original":
        return {c: c for c in leaves}
    if world == "across":
        return _derangement(leaves, rng)
    sets = hypernym_sets(pairs)
    groups: dict[frozenset[str], list[str]] = {}
    for leaf in leaves:
        groups.setdefault(sets.get(leaf, frozenset()), []).append(leaf)
    merged: dict[frozenset[str], list[str]] = {k: v[:] for k, v in groups.items() if len(v) >= 2}
    for key, members in sorted(groups.items(), key=lambda kv: sorted(kv[0])):
        if len(members) >= 2:
            continue
        # most specific compatible group: the largest hypernym set contained in this leaf's set
        compatible = [k for k in merged if k <= key]
        if not compatible:
            compatible = [k for k in merged if k & key] or list(merged)
        if not compatible:
            merged[key] = members
            continue
        best = max(compatible, key=lambda k: (len(k), len(k & key), sorted(k)))
        merged[best].extend(members)
    mapping: dict[str, str] = {}
    for key in sorted(merged, key=lambda k: sorted(k)):
        members = sorted(merged[key])
        mapping.update(_derangement(members, rng) if len(members) >= 2 else {members[0]: members[0]})
    return mapping


def removed_leaves(pairs: Iterable[tuple[str, str]], ablation: Ablation, seed: int) -> dict[str, frozenset[str]]:
    """hypernym -> the leaves whose hypernym questions are removed from training."""
    by_h = leaves_by_hypernym(pairs)
    rng = random.Random(f"ablation-{ablation.kind}-{ablation.rate}-{ablation.n_categories}-{seed}")
    out: dict[str, frozenset[str]] = {}
    if ablation.kind == "random":
        for h, leaves in by_h.items():
            k = 0 if ablation.rate == 0 else max(1, math.floor(ablation.rate * len(leaves) + 1e-9))
            out[h] = frozenset(rng.sample(leaves, min(k, len(leaves))))
        return out
    if ablation.n_categories > len(by_h):
        raise ValueError(f"cannot remove {ablation.n_categories} categories: the taxonomy has {len(by_h)}")
    chosen = set(rng.sample(sorted(by_h), ablation.n_categories))
    return {h: frozenset(leaves if h in chosen else ()) for h, leaves in by_h.items()}


def is_unseen(removed: Mapping[str, frozenset[str]], leaf: str, hypernym: str) -> bool:
    return leaf in removed.get(hypernym, frozenset())
