"""WordNet reader (Debian wordnet-base): parsing, senses, hypernym closure."""

from __future__ import annotations

from pathlib import Path

import pytest

from interp.data import wordnet as wnmod

pytestmark = pytest.mark.skipif(not (wnmod.DEFAULT_DIR / "data.noun").exists(),
                                reason="wordnet-base not installed (apt-get install wordnet-base)")


@pytest.fixture(scope="module")
def wn():
    return wnmod.load_wordnet()


def test_parse_is_complete():
    syn = wnmod._parse_data(wnmod.DEFAULT_DIR / "data.noun")
    idx = wnmod._parse_index(wnmod.DEFAULT_DIR / "index.noun")
    assert len(syn) == 82115 and len(idx) > 100_000


def test_robin_is_a_bird(wn):
    assert wn.is_hypernym("robin", "bird")
    assert wn.is_hypernym("robin", "animal")
    assert not wn.is_hypernym("bird", "robin")


def test_whale_mammal_not_fish_and_crustaceans_not_fish(wn):
    assert wn.is_hypernym("whale", "mammal")
    assert not wn.is_hypernym("whale", "fish")
    assert not wn.is_hypernym("lobster", "fish")
    assert not wn.is_hypernym("shrimp", "fish")
    assert wn.is_hypernym("lobster", "crustacean")
    assert wn.is_hypernym("shark", "fish")


def test_multi_word_lemmas(wn):
    assert wn.is_hypernym("grand piano", "musical instrument")
    assert wn.is_hypernym("grand_piano", "musical_instrument")
    assert wn.is_hypernym("hot dog", "food")
    assert "ice_cream" in {lm.lower() for s in wn.synsets("ice cream") for lm in s.lemmas}


def test_senses_in_index_order_and_plurals(wn):
    senses = wn.synsets("robin")
    assert len(senses) == 2 and all(s.lexname == "noun.animal" for s in senses)
    assert wn.synsets("socks")[0].offset == wn.synsets("sock")[0].offset  # regular plural
    assert wn.synsets("geese")[0].offset == wn.synsets("goose")[0].offset  # noun.exc
    assert wn.synsets("no such noun xyz") == []


def test_hypernym_paths_and_depth(wn):
    robin = wn.synsets("robin")[0]
    paths = wn.hypernym_paths(robin)
    assert all(p[0].name == "entity" and p[-1] == robin for p in paths)
    assert any("bird" in [s.name for s in p] for p in paths)
    assert wn.depth(robin) == min(len(p) for p in paths) - 1 > 5
    assert wn.depth(wn.synsets("entity")[0]) == 0


def test_instance_hypernyms_followed(wn):
    assert wn.is_hypernym("Einstein", "physicist")  # "@i" pointer


def test_missing_wordnet_says_how_to_install(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        wnmod.load_wordnet(tmp_path)
