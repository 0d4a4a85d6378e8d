"""Taxonomies: THINGS TSV, curated map, phrases, depths, distractors, WordNet check."""

from __future__ import annotations

import pytest

from interp.data import taxonomy as tx
from interp.data.wordnet import DEFAULT_DIR
from interp.data.wordnet_check import wordnet_check

needs_things = pytest.mark.skipif(not tx.THINGS_TSV.exists(), reason=f"THINGS taxonomy not found at {tx.THINGS_TSV}")
needs_wordnet = pytest.mark.skipif(not (DEFAULT_DIR / "data.noun").exists(), reason="wordnet-base not installed")


# ------------------------------------------------------------------- THINGS
@pytest.fixture(scope="module")
def things():
    return tx.load_things_taxonomy(tx.THINGS_TSV)


@needs_things
def test_things_counts(things):
    assert len(things.leaves) == 1222
    assert len(things.hypernyms) == 53
    assert len(things.pairs) == 2040
    per_leaf = [len(things.hypernyms_of(lf)) for lf in things.leaves]
    assert min(per_leaf) == 1 and max(per_leaf) == 6


@needs_things
def test_things_distractors_kept_and_never_true(things):
    assert things.distractor("aardvark", "mammal") == "body part"  # first row of the TSV
    for (leaf, h), d in things.distractors.items():
        assert d not in things.hypernyms_of(leaf)
        assert d in things.hypernyms


@needs_things
def test_things_depths_from_nesting(things):
    assert {things.depth(h) for h in things.hypernyms} == {1, 2, 3}
    assert things.chain("farm animal") == ["farm animal", "mammal", "animal"]
    assert things.depth("animal") == 1 and things.depth("bird") == 2 and things.depth("farm animal") == 3
    strict = tx.load_things_taxonomy(tx.THINGS_TSV, nest_threshold=1.0)
    assert max(strict.depth(h) for h in strict.hypernyms) == 2  # every-leaf nesting stops at 2
    assert strict.chain("bird") == ["bird", "animal"]


@needs_things
def test_things_phrases(things):
    assert things.phrase("musical instrument") == "a musical instrument"
    assert things.phrase("clothing") == "an item of clothing"
    assert things.phrase("animal") == "an animal"
    assert things.phrase("electronic device") == "an electronic device"
    assert things.phrase("bracelet2") == "a bracelet"
    assert things.phrase("hot-air_balloon") == "a hot-air balloon"
    for h in things.hypernyms:  # never truncated
        assert h in things.phrase(h) or h in tx.HYPERNYM_PHRASES


# ------------------------------------------------------------------- phrases
@pytest.mark.parametrize("name,hyp,want", [
    ("animal", True, "an animal"), ("bird", True, "a bird"), ("musical instrument", True, "a musical instrument"),
    ("clothing", True, "an item of clothing"), ("food", True, "food"), ("insect", True, "an insect"),
    ("umbrella", False, "an umbrella"), ("unicycle", False, "a unicycle"), ("ukulele", False, "a ukulele"),
    ("hour", False, "an hour"), ("hot_dog", False, "a hot dog"), ("scissors", False, "a pair of scissors"),
    ("t-shirt", False, "a t-shirt"), ("ewe", False, "a ewe"), ("bread", False, "bread"), ("egg", False, "an egg"),
])
def test_natural_phrase(name, hyp, want):
    assert tx.natural_phrase(name, is_hypernym=hyp) == want


# ---------------------------------------------------------------- building
PARENTS = {"animal": None, "mammal": "animal", "farm animal": "mammal", "bird": "animal",
           "food": None, "fruit": "food", "vehicle": None, "clothing": None}
ASSIGN = {"cow": ["farm animal"], "robin": ["bird"], "apple": ["fruit"], "whale": ["mammal"],
          "car": ["vehicle"], "sock": ["clothing"], "pig": ["farm animal", "food"]}


def test_build_closes_chains_and_depths():
    t = tx.build_taxonomy(ASSIGN, PARENTS, seed=0)
    assert t.hypernyms_of("cow") == {"farm animal", "mammal", "animal"}
    assert t.hypernyms_of("pig") == {"farm animal", "mammal", "animal", "food"}
    assert (t.depth("animal"), t.depth("mammal"), t.depth("farm animal")) == (1, 2, 3)
    assert t.chain("farm animal") == ["farm animal", "mammal", "animal"]
    assert t.leaves_of("mammal") == ["cow", "pig", "whale"]


def test_distractors_never_true_deterministic_and_seeded():
    a = tx.build_taxonomy(ASSIGN, PARENTS, seed=0)
    b = tx.build_taxonomy(dict(reversed(list(ASSIGN.items()))), PARENTS, seed=0)
    assert a.distractors == b.distractors  # order does not matter
    for (leaf, h), d in a.distractors.items():
        assert d not in a.hypernyms_of(leaf) and d in a.hypernyms
    seeds = {tuple(sorted(tx.build_taxonomy(ASSIGN, PARENTS, seed=s).distractors.items())) for s in range(5)}
    assert len(seeds) > 1
    f = tx.build_taxonomy(ASSIGN, PARENTS, seed=0, forbidden={"whale": {"food", "vehicle", "clothing"}})
    assert {f.distractor("whale", h) for h in f.hypernyms_of("whale")} <= {"bird", "farm animal", "fruit"}


def test_build_rejects_unknown_hypernym_and_bad_distractor():
    with pytest.raises(ValueError, match="without a chain"):
        tx.build_taxonomy({"x": ["nope"]}, PARENTS)
    t = tx.build_taxonomy(ASSIGN, PARENTS)
    with pytest.raises(ValueError, match="true hypernyms"):
        tx.Taxonomy(t.leaves, t.hypernyms, t.pairs, t.parents, t.depths, {**t.distractors, ("cow", "animal"): "mammal"})


def test_restrict_and_roundtrip():
    t = tx.build_taxonomy(ASSIGN, PARENTS, seed=3)
    r = t.restrict(["cow", "apple", "not-a-leaf"])
    assert r.leaves == ["apple", "cow"]
    assert set(r.hypernyms) == {"farm animal", "mammal", "animal", "fruit", "food"}
    assert all(r.distractor(lf, h) == t.distractor(lf, h) for lf, h in r.pairs)
    back = tx.Taxonomy.from_dict(t.to_dict())
    assert back.to_dict() == t.to_dict() and back.hash == t.hash


# -------------------------------------------------------------- curated map
def test_curated_map_chains():
    cmap = tx.load_cldr_map()
    parents = tx.map_parents(cmap)
    assert all(p is None or p in parents for p in parents.values())
    depths = tx.chain_depths(parents)
    assert set(depths.values()) == {1, 2, 3}
    assert parents["bird"] == "animal" and parents["farm animal"] == "mammal" and parents["mammal"] == "animal"
    assert parents["watercraft"] == "vehicle" and parents["fruit"] == "food"
    for slug, spec in cmap["concepts"].items():
        hs = spec if isinstance(spec, list) else (spec or {}).get("hypernyms", [])
        assert all(h in parents for h in hs), slug
    assert "fish" not in cmap["concepts"]["whale"] and "mammal" in cmap["concepts"]["whale"]
    assert "fish" not in cmap["concepts"]["lobster"] and "seafood" in cmap["concepts"]["lobster"]
    assert tx.natural_phrase("clothing", True, tx.map_phrases(cmap)) == "an item of clothing"


# ---------------------------------------------------------------- WordNet
@needs_wordnet
def test_wordnet_check_flags_disagreements():
    parents = {"animal": None, "fish": "animal", "mammal": "animal", "bird": "animal"}
    t = tx.build_taxonomy({"whale": ["fish"], "robin": ["bird"], "dog": ["mammal"], "poodle": ["mammal"],
                           "shark": ["animal"]}, parents)
    chk = wordnet_check(t)
    assert ("whale", "fish") in chk["unsupported"]
    assert ("robin", "bird") not in chk["unsupported"]
    assert ("shark", "fish") in chk["missed"]
    assert ("poodle", "dog") in chk["leaf_conflicts"]
    assert "mammal" in chk["wordnet_true"]["whale"]
    chk2 = wordnet_check(t, accepted_conflicts=[("poodle", "dog")])
    assert ("poodle", "dog") in chk2["accepted_conflicts"] and not chk2["leaf_conflicts"]
