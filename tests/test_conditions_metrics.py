"""Conditions (worlds, ablations), questions and metrics: pure functions, checked exhaustively."""

import math
from dataclasses import dataclass

import pytest
import torch

from interp.studies.taxonomy.conditions import Ablation, hypernym_sets, leaves_by_hypernym, removed_leaves, world_mapping
from interp.metrics import coherence, macro_f1, mean_ci

PAIRS = [(f"bird{i}", "bird") for i in range(5)] + [(f"bird{i}", "animal") for i in range(5)] + \
        [(f"fish{i}", "fish") for i in range(4)] + [(f"fish{i}", "animal") for i in range(4)] + \
        [(f"fruit{i}", "fruit") for i in range(3)] + [(f"fruit{i}", "food") for i in range(3)] + \
        [("eagle", "bird"), ("eagle", "animal"), ("eagle", "bird of prey")]
LEAVES = sorted({lf for lf, _ in PAIRS})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_across_world_is_a_permutation_without_fixed_points(seed):
    m = world_mapping(LEAVES, PAIRS, "across", seed)
    assert sorted(m) == LEAVES and sorted(m.values()) == LEAVES
    assert all(k != v for k, v in m.items())
    assert m == world_mapping(LEAVES, PAIRS, "across", seed)  # seeded
    assert m != world_mapping(LEAVES, PAIRS, "across", seed + 10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_within_world_keeps_hypernym_sets(seed):
    m = world_mapping(LEAVES, PAIRS, "within", seed)
    sets = hypernym_sets(PAIRS)
    assert sorted(m.values()) == LEAVES
    for k, v in m.items():
        if k == "eagle" or v == "eagle":  # the singleton joins the bird group (most specific compatible)
            assert sets[k] & sets[v] >= {"bird", "animal"}
        else:
            assert sets[k] == sets[v] and k != v


def test_unknown_world():
    with pytest.raises(ValueError, match="valid worlds"):
        world_mapping(LEAVES, PAIRS, "sideways", 0)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
def test_random_ablation_counts(rate):
    removed = removed_leaves(PAIRS, Ablation("random", rate), seed=42)
    for h, leaves in leaves_by_hypernym(PAIRS).items():
        want = max(1, math.floor(rate * len(leaves)))
        assert len(removed[h]) == want and removed[h] <= set(leaves)
    assert removed == removed_leaves(PAIRS, Ablation("random", rate), seed=42)


def test_systematic_ablation_removes_whole_categories():
    removed = removed_leaves(PAIRS, Ablation("systematic", n_categories=2), seed=0)
    by_h = leaves_by_hypernym(PAIRS)
    full = [h for h, v in removed.items() if v]
    assert len(full) == 2 and all(removed[h] == set(by_h[h]) for h in full)
    with pytest.raises(ValueError, match="has 6"):
        removed_leaves(PAIRS, Ablation("systematic", n_categories=7), seed=0)


def test_macro_f1():
    assert macro_f1(["Yes", "No"], ["Yes", "No"]) == 100.0
    assert macro_f1(["Yes", "No", "Yes", "No"], ["Yes"] * 4) == pytest.approx(100 * (2 / 3) / 2)
    assert macro_f1(["Yes", "No"], ["No", "Yes"]) == 0.0


def test_mean_ci():
    m, h, n = mean_ci([1.0, 2.0, 3.0])
    assert (m, n) == (2.0, 3) and h == pytest.approx(4.303 * 1 / math.sqrt(3), rel=1e-3)
    assert math.isnan(mean_ci([5.0])[1])


def test_coherence_high_for_identical_low_for_opposite():
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.1], [-1.0, 0.0]])
    c = coherence(f, {"same": [0, 1, 2], "mixed": [0, 3], "single": [0]})
    assert c["same"] > 0.99 and c["mixed"] == pytest.approx(-1.0) and "single" not in c


@dataclass
class _Tax:
    pairs: list

    @property
    def leaves(self):
        return sorted({lf for lf, _ in self.pairs})

    def hypernyms_of(self, leaf):
        return {h for lf, h in self.pairs if lf == leaf}

    def phrase(self, name):
        return ("an " if name[0] in "aeiou" else "a ") + name.replace("_", " ")

    def depth(self, h):
        return 1 if h in ("animal", "food") else 2

    def distractor(self, leaf, h):
        return "food" if "food" not in self.hypernyms_of(leaf) else "animal"


def test_questions_follow_the_brief():
    from interp.studies.taxonomy.questions import examples_for_images

    tax = _Tax(PAIRS)
    mapping = world_mapping(tax.leaves, PAIRS, "original", 0)
    removed = removed_leaves(PAIRS, Ablation("random", 1.0), 0)
    imgs = [(0, "eagle"), (1, "fruit0")]
    train = examples_for_images(imgs, tax, mapping, removed, train=True, seed=0)
    assert {e.kind for e in train} == {"leaf"}  # 100% deprivation: no hypernym question
    test = examples_for_images(imgs, tax, mapping, removed, train=False, seed=0)
    hyp = [e for e in test if e.kind == "hypernym"]
    assert len(hyp) == 2 * (3 + 2) and not any(e.seen for e in hyp)
    assert sum(e.answer == "Yes" for e in test) == sum(e.answer == "No" for e in test)  # 1:1
    assert "Is there an animal in the image?" in {e.question for e in hyp}
    assert "Is there a bird of prey in the image?" in {e.question for e in hyp}
    for e in hyp:
        if e.answer == "No":
            assert e.target not in tax.hypernyms_of(e.concept)
