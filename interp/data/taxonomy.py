"""Taxonomies of the taxonomic study: leaves, hypernyms, (leaf, hypernym) pairs, chains,
depths, natural phrases and distractor hypernyms.

Two sources give the same :class:`Taxonomy` type:

- the curated map of the embedded image set (``cldr_map.json``: emoji CLDR subcategories
  -> hypernym chains named like the THINGS categories, with per-concept overrides), built by
  :func:`build_taxonomy` from the concepts of the image set (see ``interp.data.images``);
- the THINGS pairs of the brief, :func:`load_things_taxonomy` (``shared/data/things_taxonomy.tsv``,
  its own distractors kept).

:func:`wordnet_check` compares a taxonomy with WordNet: pairs it asserts that WordNet does
not support, WordNet hypernyms (of a leaf's first sense) among the taxonomy's hypernyms that
it misses, and leaves that WordNet puts under another leaf (a random distractor leaf could
then be a true answer).
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from interp.io import stable_hash

CLDR_MAP = Path(__file__).with_name("cldr_map.json")


def _things_tsv() -> Path:
    env = os.environ.get("INTERP_THINGS_TSV")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for cand in (repo.parent / "shared" / "data" / "things_taxonomy.tsv", repo / "shared" / "data" / "things_taxonomy.tsv"):
        if cand.exists():
            return cand
    return repo.parent / "shared" / "data" / "things_taxonomy.tsv"


THINGS_TSV = _things_tsv()

# ------------------------------------------------------------------ phrases
# Natural phrases of category names that do not take a plain "a/an" (mass nouns, "an item of").
HYPERNYM_PHRASES = {
    "clothing": "an item of clothing",
    "women's clothing": "an item of women's clothing",
    "protective clothing": "an item of protective clothing",
    "footwear": "an item of footwear",
    "headwear": "an item of headwear",
    "outerwear": "an item of outerwear",
    "food": "food",
    "seafood": "seafood",
    "candy": "candy",
    "poultry": "poultry",
    "furniture": "a piece of furniture",
    "jewelry": "a piece of jewelry",
    "hardware": "a piece of hardware",
    "home decor": "a piece of home decor",
    "sports equipment": "a piece of sports equipment",
    "safety equipment": "a piece of safety equipment",
    "construction equipment": "a piece of construction equipment",
    "medical equipment": "a piece of medical equipment",
    "scientific equipment": "a piece of scientific equipment",
    "lighting": "a light source",
    "part of car": "a part of a car",
}

# Leaves named by a plural that is one object ("a pair of ...") or a plural food ("some ...").
PAIR_NOUNS = {
    "jeans", "pants", "shorts", "scissors", "goggles", "glasses", "sunglasses", "pliers", "tongs", "tweezers",
    "binoculars", "overalls", "pajamas", "leggings", "stockings", "pantyhose", "tights", "suspenders", "shears",
    "boxer shorts", "fishnet stockings", "wire cutters", "nail clippers", "chopsticks", "headphones", "earmuffs",
    "ski boots", "skis", "maracas", "ballet shoes", "boxing gloves", "gloves", "socks", "mittens", "flip flops",
}
SOME_NOUNS = {"brussels sprouts", "green beans", "sprouts", "grits", "french fries", "beans", "peanuts", "grapes",
              "cherries", "blueberries", "pancakes"}
# Leaves that are mass nouns: "Is there bread in the image?"
MASS_NOUNS = {
    "bread", "butter", "cheese", "honey", "jam", "marmalade", "granola", "oatmeal", "cereal", "hummus", "stuffing",
    "yogurt", "whipped cream", "cotton candy", "popcorn", "chocolate", "caviar", "grass", "dirt", "charcoal",
    "seaweed", "wallpaper", "gauze", "wire", "rope", "grain", "hair", "curry", "gravy", "pasta", "lasagna", "soup",
    "stew", "tea", "coffee", "beer", "wine", "champagne", "juice", "eggnog", "salami", "sauerkraut", "spinach",
    "kale", "arugula", "parsley", "asparagus", "mashed potato", "fudge", "licorice", "taffy", "caramel", "gum",
    "dough", "milk", "sake", "rice", "spaghetti", "cardboard", "wrapping paper", "chicken wire", "sandpaper",
    "cake mix", "cream cheese", "peanut butter", "soy sauce", "tomato sauce", "hot chocolate", "shaving cream",
    "toothpaste", "hairspray", "calamari", "paella", "ramen", "mate", "bubble tea", "yarn", "salad", "sushi",
    "bacon", "candy", "curry", "mashed potatoes", "lemonade", "sorbet", "ice cream", "whipped cream", "sushi",
    "bento", "falafel", "chili", "tape", "duct tape", "string cheese", "fondue", "sauerkraut", "underwear",
    "garlic", "ginger", "broccoli", "shaved ice", "canned food", "lettuce", "celery",
}

_AN_EXCEPTIONS = ("hour", "honest", "honor", "honour", "heir", "x-ray", "x ray", "mp3", "fbi", "lcd")
_A_EXCEPTIONS = ("uni", "use", "usu", "uten", "ure", "uro", "uku", "eu", "ewe", "one", "once", "u-", "ufo")


def article(word: str) -> str:
    """'a' or 'an' for the sound of ``word`` (a heuristic with the common exceptions)."""
    w = word.strip().lower()
    if not w:
        return "a"
    if w.startswith(_AN_EXCEPTIONS):
        return "an"
    if w.startswith(_A_EXCEPTIONS):
        return "a"
    return "an" if w[0] in "aeiou" else "a"


def with_article(text: str) -> str:
    return f"{article(text)} {text}"


def display_name(name: str) -> str:
    """Readable form of a concept name: underscores -> spaces, THINGS sense digits dropped
    ("bracelet2" -> "bracelet"); hyphens kept ("t-shirt"); multi-word names kept whole."""
    text = " ".join(name.replace("_", " ").split())
    return re.sub(r"(?<=[a-z])\d+$", "", text)


def natural_phrase(name: str, is_hypernym: bool = False, overrides: Mapping[str, str] | None = None) -> str:
    """The phrase of a leaf or category for a question: "a bird", "an animal", "a musical
    instrument", "an item of clothing", "food", "a pair of scissors". Never truncated."""
    if overrides and name in overrides:
        return overrides[name]
    text = display_name(name)
    if is_hypernym and name in HYPERNYM_PHRASES:
        return HYPERNYM_PHRASES[name]
    if text in PAIR_NOUNS:
        return f"a pair of {text}"
    if text in SOME_NOUNS:
        return f"some {text}"
    if text in MASS_NOUNS and not is_hypernym:
        return text
    return with_article(text)


# ----------------------------------------------------------------- taxonomy
@dataclass
class Taxonomy:
    """Leaves, hypernyms and (leaf, hypernym) pairs with chains, depths, phrases, distractors.

    ``parents[h]`` is the chain parent of hypernym ``h`` (None at the top); ``depths[h]`` is 1
    for the most general categories. ``distractors[(leaf, h)]`` is the negative hypernym of
    the pair: never a true hypernym of that leaf.
    """

    leaves: list[str]
    hypernyms: list[str]
    pairs: list[tuple[str, str]]
    parents: dict[str, str | None]
    depths: dict[str, int]
    distractors: dict[tuple[str, str], str]
    phrases: dict[str, str] = field(default_factory=dict)
    source: str = ""
    _by_leaf: dict[str, frozenset[str]] = field(init=False, repr=False, compare=False)
    _by_hyp: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.leaves = sorted(set(self.leaves))
        self.hypernyms = sorted(set(self.hypernyms))
        self.pairs = sorted({(lf, h) for lf, h in self.pairs})
        by_leaf: dict[str, set[str]] = {lf: set() for lf in self.leaves}
        by_hyp: dict[str, list[str]] = {h: [] for h in self.hypernyms}
        for lf, h in self.pairs:
            if lf not in by_leaf or h not in by_hyp:
                raise ValueError(f"pair ({lf!r}, {h!r}) uses an unknown leaf or hypernym")
            by_leaf[lf].add(h)
            by_hyp[h].append(lf)
        self._by_leaf = {lf: frozenset(s) for lf, s in by_leaf.items()}
        self._by_hyp = by_hyp
        bad = [(k, d) for k, d in self.distractors.items() if d in self._by_leaf.get(k[0], frozenset())]
        if bad:
            raise ValueError(f"distractors that are true hypernyms of their leaf: {bad[:5]}")
        missing = [p for p in self.pairs if p not in self.distractors]
        if missing:
            raise ValueError(f"{len(missing)} pairs without a distractor, e.g. {missing[:3]}")

    # -------------------------------------------------------------- queries
    def hypernyms_of(self, leaf: str) -> frozenset[str]:
        return self._by_leaf.get(leaf, frozenset())

    def leaves_of(self, hypernym: str) -> list[str]:
        return list(self._by_hyp.get(hypernym, []))

    def depth(self, hypernym: str) -> int:
        return self.depths[hypernym]

    def chain(self, hypernym: str) -> list[str]:
        """The hypernym and its parents up to the top: ["farm animal", "mammal", "animal"]."""
        out = [hypernym]
        while self.parents.get(out[-1]) is not None:
            out.append(self.parents[out[-1]])  # type: ignore[arg-type]
        return out

    def distractor(self, leaf: str, hypernym: str) -> str:
        return self.distractors[(leaf, hypernym)]

    def phrase(self, name: str) -> str:
        """Natural phrase with article of a leaf or a hypernym ("a bird", "an item of clothing")."""
        return natural_phrase(name, is_hypernym=name in self._by_hyp or name in self.depths, overrides=self.phrases)

    def restrict(self, concepts: Iterable[str]) -> "Taxonomy":
        """The taxonomy of a subset of leaves: pairs, hypernyms with leaves left, distractors
        kept as they were (so a pair's negative question does not change with the subset)."""
        keep = set(concepts) & set(self.leaves)
        pairs = [(lf, h) for lf, h in self.pairs if lf in keep]
        hyps = sorted({h for _, h in pairs})
        return Taxonomy(sorted(keep), hyps, pairs, dict(self.parents), {h: self.depths[h] for h in self.depths},
                        {p: self.distractors[p] for p in pairs}, dict(self.phrases), self.source)

    def summary(self) -> dict[str, Any]:
        per_leaf = [len(self.hypernyms_of(lf)) for lf in self.leaves]
        return {"source": self.source, "leaves": len(self.leaves), "hypernyms": len(self.hypernyms),
                "pairs": len(self.pairs), "hypernyms_per_leaf": [min(per_leaf, default=0), max(per_leaf, default=0)],
                "depths": {d: sorted(h for h in self.hypernyms if self.depths.get(h) == d)
                           for d in sorted({self.depths[h] for h in self.hypernyms})}}

    # ------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "leaves": self.leaves, "hypernyms": self.hypernyms,
                "pairs": [list(p) for p in self.pairs],
                "parents": {h: self.parents.get(h) for h in sorted(self.parents)},
                "depths": {h: self.depths[h] for h in sorted(self.depths)},
                "distractors": [[lf, h, d] for (lf, h), d in sorted(self.distractors.items())],
                "phrases": dict(sorted(self.phrases.items()))}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Taxonomy":
        return cls(list(d["leaves"]), list(d["hypernyms"]), [tuple(p) for p in d["pairs"]], dict(d["parents"]),
                   {k: int(v) for k, v in d["depths"].items()}, {(lf, h): x for lf, h, x in d["distractors"]},
                   dict(d.get("phrases", {})), d.get("source", ""))

    @property
    def hash(self) -> str:
        return stable_hash(self.to_dict())


# ---------------------------------------------------------- building blocks
def chain_depths(parents: Mapping[str, str | None]) -> dict[str, int]:
    """Depth of every hypernym from its chain (1 = no parent); raises on a cycle."""
    depths: dict[str, int] = {}
    for h in parents:
        seen, cur, d = {h}, h, 1
        while parents.get(cur) is not None:
            cur = parents[cur]  # type: ignore[assignment]
            if cur in seen:
                raise ValueError(f"cycle in the hypernym chain at {cur!r}")
            seen.add(cur)
            d += 1
        depths[h] = d
    return depths


def sample_distractors(pairs: Iterable[tuple[str, str]], hypernyms: Iterable[str], seed: int = 0,
                       forbidden: Mapping[str, Iterable[str]] | None = None) -> dict[tuple[str, str], str]:
    """A distractor hypernym for every (leaf, hypernym) pair: uniform over the hypernyms that
    are neither true hypernyms of the leaf nor in ``forbidden[leaf]``; seeded per pair, so the
    choice does not depend on the order or on the other pairs."""
    pairs = sorted(set(pairs))
    hyps = sorted(set(hypernyms))
    true: dict[str, set[str]] = {}
    for lf, h in pairs:
        true.setdefault(lf, set()).add(h)
    out = {}
    for lf, h in pairs:
        bad = true[lf] | set((forbidden or {}).get(lf, ()))
        cands = [x for x in hyps if x not in bad]
        if not cands:
            raise ValueError(f"no possible distractor for ({lf!r}, {h!r})")
        rng = random.Random(stable_hash(["distractor", seed, lf, h]))
        out[(lf, h)] = rng.choice(cands)
    return out


def build_taxonomy(assignments: Mapping[str, Iterable[str]], parents: Mapping[str, str | None], *, seed: int = 0,
                   forbidden: Mapping[str, Iterable[str]] | None = None, phrases: Mapping[str, str] | None = None,
                   source: str = "curated") -> Taxonomy:
    """A taxonomy from leaf -> most specific hypernyms; each is closed under the chain
    ``parents`` (bird -> animal; farm animal -> mammal -> animal)."""
    unknown = sorted({h for hs in assignments.values() for h in hs if h not in parents})
    if unknown:
        raise ValueError(f"hypernyms without a chain entry: {unknown}")
    pairs = set()
    for leaf, hs in assignments.items():
        for h in hs:
            cur: str | None = h
            while cur is not None:
                pairs.add((leaf, cur))
                cur = parents[cur]
    hyps = sorted({h for _, h in pairs})
    depths = chain_depths(parents)
    dis = sample_distractors(pairs, hyps, seed, forbidden)
    return Taxonomy(sorted(assignments), hyps, sorted(pairs), dict(parents), depths, dis, dict(phrases or {}), source)


# ---------------------------------------------------------------- THINGS
def things_nesting(leaves_of: Mapping[str, set[str]], threshold: float = 0.75) -> tuple[dict[str, str | None], dict[str, int]]:
    """Chain parents and depths implied by the pairs: H2 nests under H1 when H1 is larger and
    holds at least ``threshold`` of H2's leaves (1.0 = every leaf). Depth = 1 + the longest
    chain above; parent = the deepest such H1 (ties: the smaller, then by name)."""
    hs = sorted(leaves_of)
    above = {h: [g for g in hs if g != h and len(leaves_of[g]) > len(leaves_of[h])
                 and len(leaves_of[h] & leaves_of[g]) >= threshold * len(leaves_of[h])] for h in hs}
    depths: dict[str, int] = {}

    def depth(h: str) -> int:  # acyclic: sizes strictly grow upwards
        if h not in depths:
            depths[h] = 1 + max((depth(g) for g in above[h]), default=0)
        return depths[h]

    for h in hs:
        depth(h)
    parents = {h: (min(above[h], key=lambda g: (-depths[g], len(leaves_of[g]), g)) if above[h] else None) for h in hs}
    return parents, depths


def load_things_taxonomy(path: str | Path | None = None, nest_threshold: float = 0.75) -> Taxonomy:
    """The THINGS taxonomy of the brief from a TSV with columns leaf, hypernym,
    distractor_hypernym (its distractors kept). Depths from the nesting of the pairs, see
    :func:`things_nesting` (with every-leaf nesting, threshold 1.0, the deepest level is 2;
    0.75 puts farm animal under mammal, as the brief's animal > mammal > farm animal)."""
    path = Path(path) if path is not None else THINGS_TSV
    if not path.exists():
        raise FileNotFoundError(f"THINGS taxonomy not found: {path} (set INTERP_THINGS_TSV or pass a path)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    need = {"leaf", "hypernym", "distractor_hypernym"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{path}: expected a TSV with columns {sorted(need)}")
    pairs = [(r["leaf"].strip(), r["hypernym"].strip()) for r in rows]
    dis = {(r["leaf"].strip(), r["hypernym"].strip()): r["distractor_hypernym"].strip() for r in rows}
    leaves_of: dict[str, set[str]] = {}
    for lf, h in pairs:
        leaves_of.setdefault(h, set()).add(lf)
    parents, depths = things_nesting(leaves_of, nest_threshold)
    return Taxonomy(sorted({lf for lf, _ in pairs}), sorted(leaves_of), pairs, parents, depths, dis, {},
                    f"things:{path.name}")


# -------------------------------------------------------------- curated map
@lru_cache(maxsize=2)
def _load_map(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_cldr_map(path: str | Path | None = None) -> dict[str, Any]:
    """The curated map (``cldr_map.json``) as a dict (cached; do not mutate)."""
    return _load_map(str(path or CLDR_MAP))


def map_parents(cmap: Mapping[str, Any] | None = None) -> dict[str, str | None]:
    cmap = cmap or load_cldr_map()
    return {h: spec.get("parent") for h, spec in cmap["hypernyms"].items()}


def map_phrases(cmap: Mapping[str, Any] | None = None) -> dict[str, str]:
    cmap = cmap or load_cldr_map()
    out = {h: spec["phrase"] for h, spec in cmap["hypernyms"].items() if "phrase" in spec}
    out.update(cmap.get("phrases", {}))
    return out


def hypernym_aliases(cmap: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """Hypernym -> WordNet lemmas that carry its meaning ([] = none in WordNet)."""
    cmap = cmap or load_cldr_map()
    out = {h: list(v) for h, v in cmap.get("other_wordnet_aliases", {}).items() if not h.startswith("_")}
    out.update({h: list(spec.get("wordnet", [h])) for h, spec in cmap["hypernyms"].items()})
    return out
