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


def test_one_line_parser_reads_pointers_of_every_kind():
    from interp.data.wordnet import parse_data_line, parse_index_line

    line = ("01558993 05 n 03 robin 1 American_robin 0 Turdus_migratorius 0 002 @ 01557185 n 0000 "
            "#m 01557697 n 0000 | large American thrush having a rust-red breast and abdomen  \n")
    d = parse_data_line(line)
    assert (d.offset, d.lexfile, d.pos) == (1558993, 5, "n")
    assert d.words == ("robin", "American_robin", "Turdus_migratorius")
    assert [(p.symbol, p.target, p.pos) for p in d.pointers] == [("@", 1557185, "n"), ("#m", 1557697, "n")]
    assert d.gloss == "large American thrush having a rust-red breast and abdomen"
    # a lexical pointer: word 1 of this synset to word 2 of the target (hexadecimal source/target)
    adj = parse_data_line("01123148 00 a 02 hot 0 raging 0 001 ! 01129977 a 010b | used of physical heat\n")
    assert [(p.symbol, p.source, p.dest) for p in adj.pointers] == [("!", 1, 11)]
    # 11 words (hex "0b") are counted in hexadecimal
    many = parse_data_line("00000001 03 n 0b " + " ".join(f"w{i} 0" for i in range(11)) + " 000 | g\n")
    assert len(many.words) == 11 and many.pointers == ()
    assert parse_index_line("robin n 2 2 @ #m 2 0 01562265 01558993  \n") == ("robin", (1562265, 1558993))
