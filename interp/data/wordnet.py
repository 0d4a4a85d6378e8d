"""A small reader of WordNet 3.0 nouns (Debian ``wordnet-base``), no nltk.

Reads ``data.noun`` (synsets: lemmas, hypernym pointers ``@`` and instance-hypernym
pointers ``@i``, gloss) and ``index.noun`` (lemma -> synsets in sense order, most
frequent first); ``noun.exc`` for irregular plurals. Parsing all 82k noun synsets takes
well under a second.

    wn = load_wordnet()
    wn.is_hypernym("robin", "bird")          # True: some sense of robin is under some sense of bird
    wn.is_hypernym("whale", "fish")          # False
    wn.hypernym_paths(wn.synsets("robin")[0])  # root-first paths of synsets
    wn.is_hypernym("grand_piano", "musical instrument")  # multi-word lemmas: spaces or underscores
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

DEFAULT_DIR = Path("/usr/share/wordnet")
INSTALL_HINT = "apt-get install wordnet-base"

# lexicographer files of nouns (lexnames of WordNet 3.0, numbers 03-28)
NOUN_LEXNAMES = {
    3: "noun.Tops", 4: "noun.act", 5: "noun.animal", 6: "noun.artifact", 7: "noun.attribute",
    8: "noun.body", 9: "noun.cognition", 10: "noun.communication", 11: "noun.event", 12: "noun.feeling",
    13: "noun.food", 14: "noun.group", 15: "noun.location", 16: "noun.motive", 17: "noun.object",
    18: "noun.person", 19: "noun.phenomenon", 20: "noun.plant", 21: "noun.possession", 22: "noun.process",
    23: "noun.quantity", 24: "noun.relation", 25: "noun.shape", 26: "noun.state", 27: "noun.substance",
    28: "noun.time",
}


@dataclass(frozen=True)
class Synset:
    offset: int
    lemmas: tuple[str, ...]  # as written in WordNet (case kept, words joined by "_")
    hypernyms: tuple[int, ...]  # offsets of "@" (class) and "@i" (instance) hypernyms
    lexname: str
    gloss: str

    @property
    def name(self) -> str:
        return self.lemmas[0]

    def __repr__(self) -> str:  # compact: Synset(robin 01558993 noun.animal)
        return f"Synset({self.name} {self.offset:08d} {self.lexname})"


def normalise(word: str) -> str:
    """WordNet lemma form: lower case, words joined by underscores."""
    return "_".join(word.strip().lower().replace("-", " - ").split()).replace("_-_", "-")


class WordNet:
    """Noun synsets of WordNet with hypernym closure queries (all cached)."""

    def __init__(self, synsets: dict[int, Synset], index: dict[str, tuple[int, ...]], exceptions: dict[str, tuple[str, ...]]):
        self._synsets = synsets
        self._index = index
        self._exc = exceptions
        self._anc: dict[int, frozenset[int]] = {}

    def __len__(self) -> int:
        return len(self._synsets)

    def synset(self, offset: int) -> Synset:
        return self._synsets[offset]

    def all_synsets(self) -> Iterator[Synset]:
        """Every noun synset, in file order."""
        return iter(self._synsets.values())

    # ---------------------------------------------------------------- lookup
    def lemma_forms(self, word: str) -> list[str]:
        """Candidate lemma forms of a noun: itself, then irregular/regular singulars (morphy-lite)."""
        w = normalise(word)
        out = [w]
        out += list(self._exc.get(w, ()))
        for suf, rep in (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
                         ("men", "man"), ("ies", "y"), ("s", "")):
            if w.endswith(suf) and len(w) > len(suf) + 1:
                out.append(w[: -len(suf)] + rep)
        return list(dict.fromkeys(out))

    def synsets(self, word: str) -> list[Synset]:
        """Senses of a noun in index order (most frequent first); [] if unknown.
        The exact lemma wins; only when it is unknown are singular forms tried."""
        for form in self.lemma_forms(word):
            if form in self._index:
                return [self._synsets[o] for o in self._index[form]]
        return []

    def __contains__(self, word: str) -> bool:
        return bool(self.synsets(word))

    # -------------------------------------------------------------- closure
    def ancestors(self, synset: Synset | int) -> frozenset[int]:
        """Offsets of every (instance) hypernym of a synset, transitively (itself excluded)."""
        off = synset.offset if isinstance(synset, Synset) else synset
        got = self._anc.get(off)
        if got is None:
            acc: set[int] = set()
            for h in self._synsets[off].hypernyms:
                acc.add(h)
                acc |= self.ancestors(h)
            got = self._anc[off] = frozenset(acc)
        return got

    def hypernym_paths(self, synset: Synset) -> list[list[Synset]]:
        """Every path from the root (entity) down to ``synset``, root first."""
        if not synset.hypernyms:
            return [[synset]]
        return [p + [synset] for h in synset.hypernyms for p in self.hypernym_paths(self._synsets[h])]

    def depth(self, synset: Synset) -> int:
        """Length of the shortest hypernym path to the root (the root has depth 0)."""
        return min(len(p) for p in self.hypernym_paths(synset)) - 1

    def max_depth(self, synset: Synset) -> int:
        return max(len(p) for p in self.hypernym_paths(synset)) - 1

    def hypernym_lemmas(self, word: str, first_sense_only: bool = False) -> set[str]:
        """Lower-case lemmas of every hypernym of (any / the first sense of) a noun."""
        senses = self.synsets(word)[: 1 if first_sense_only else None]
        return {lm.lower() for s in senses for a in self.ancestors(s) for lm in self._synsets[a].lemmas}

    def is_hypernym(self, leaf_word: str, hypernym_word: str, first_sense_only: bool = False) -> bool:
        """True if some sense of ``leaf_word`` (or its first sense) lies under some sense of
        ``hypernym_word``; multi-word lemmas may use spaces or underscores."""
        targets = {s.offset for s in self.synsets(hypernym_word)}
        if not targets:
            return False
        senses = self.synsets(leaf_word)[: 1 if first_sense_only else None]
        return any(self.ancestors(s) & targets for s in senses)


# ------------------------------------------------------------ the line parsers
@dataclass(frozen=True)
class Pointer:
    symbol: str  # "@" hypernym, "@i" instance hypernym, "#p" part holonym, "!" antonym, ...
    target: int  # synset offset
    pos: str     # part of speech of the target ("n", "v", "a", "s", "r")
    source: int  # word number in this synset (0 = the whole synset)
    dest: int    # word number in the target synset (0 = the whole synset)


@dataclass(frozen=True)
class DataLine:
    """One synset line of a ``data.<pos>`` file."""

    offset: int
    lexfile: int
    pos: str
    words: tuple[str, ...]  # as written (adjectives may carry a marker such as "(a)")
    pointers: tuple[Pointer, ...]
    gloss: str


def parse_data_line(line: str) -> DataLine:
    """``offset lex_filenum ss_type w_cnt word lex_id ... p_cnt [ptr ...] [frames] | gloss``
    (WordNet's wndb(5) format; counts in hexadecimal where it says so)."""
    data, _, gloss = line.partition(" | ")
    t = data.split()
    n = int(t[3], 16)
    words = tuple(t[4 + 2 * i] for i in range(n))
    i = 4 + 2 * n
    ptrs = []
    for _ in range(int(t[i])):
        sym, target, pos, st = t[i + 1], t[i + 2], t[i + 3], t[i + 4]
        ptrs.append(Pointer(sym, int(target), pos, int(st[:2], 16), int(st[2:], 16)))
        i += 4
    return DataLine(int(t[0]), int(t[1]), t[2], words, tuple(ptrs), gloss.strip())


def parse_index_line(line: str) -> tuple[str, tuple[int, ...]]:
    """``lemma pos synset_cnt p_cnt [ptr_symbol ...] sense_cnt tagsense_cnt synset_offset ...``
    -> (lemma, synset offsets in sense order)."""
    t = line.split()
    synset_cnt, p_cnt = int(t[2]), int(t[3])
    return t[0], tuple(int(o) for o in t[4 + p_cnt + 2:][:synset_cnt])


def data_lines(path: Path) -> Iterator[DataLine]:
    """Every synset of a ``data.<pos>`` file (the licence header skipped)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("  "):
                yield parse_data_line(line)


def index_lines(path: Path) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Every entry of an ``index.<pos>`` file (the licence header skipped)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("  "):
                yield parse_index_line(line)


def _parse_data(path: Path) -> dict[int, Synset]:
    return {d.offset: Synset(d.offset, d.words,
                             tuple(p.target for p in d.pointers if p.symbol in ("@", "@i") and p.pos == "n"),
                             NOUN_LEXNAMES.get(d.lexfile, str(d.lexfile)), d.gloss)
            for d in data_lines(path)}


def _parse_index(path: Path) -> dict[str, tuple[int, ...]]:
    return {lemma.lower(): offs for lemma, offs in index_lines(path)}


def _parse_exc(path: Path) -> dict[str, tuple[str, ...]]:
    exc: dict[str, tuple[str, ...]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            t = line.split()
            if len(t) >= 2:
                exc[t[0]] = tuple(t[1:])
    return exc


def wordnet_dir() -> Path:
    return Path(os.environ.get("INTERP_WORDNET_DIR", DEFAULT_DIR))


@lru_cache(maxsize=4)
def load_wordnet(directory: str | Path | None = None) -> WordNet:
    """Parse WordNet nouns from ``directory`` (default ``/usr/share/wordnet`` or
    ``$INTERP_WORDNET_DIR``); cached per directory."""
    d = Path(directory) if directory is not None else wordnet_dir()
    data, index = d / "data.noun", d / "index.noun"
    if not data.exists() or not index.exists():
        raise FileNotFoundError(
            f"WordNet 3.0 noun files not found in {d} (need data.noun and index.noun). "
            f"Install the Debian package: `{INSTALL_HINT}` (or run `bash scripts/setup.sh`)."
        )
    return WordNet(_parse_data(data), _parse_index(index), _parse_exc(d / "noun.exc"))
