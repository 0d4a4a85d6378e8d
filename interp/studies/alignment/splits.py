"""Strict class splits of the visual-alignment study: held-out classes by concept, or by whole top-
level hypernym (no held-out class shares a top hypernym with a training class)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from interp.data.taxonomy import display_name
from interp.io import stable_hash


SPLIT_MODES = ("concept", "hypernym")



# -------------------------------------------------------------------- split
@dataclass(frozen=True)
class ClassSplit:
    """Disjoint train and held-out (test) classes.

    ``held_out_groups`` names the top-level hypernyms held out in ``"hypernym"`` mode (empty
    in ``"concept"`` mode); ``dropped`` are classes used on neither side (hypernym mode: a
    class with a held-out AND a training top-level hypernym, which would otherwise tie the
    two sides together)."""

    train: tuple[str, ...]
    test: tuple[str, ...]
    mode: str
    seed: int
    held_out_groups: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()



NO_GROUP = "<none>"



def top_hypernyms(taxonomy, leaf: str) -> frozenset[str]:
    """The top-level hypernyms of a leaf: the root of the chain of each of its hypernyms
    (so a leaf filed only under "mammal" still counts as an "animal"); empty when it has
    no hypernym."""
    return frozenset(taxonomy.chain(h)[-1] for h in taxonomy.hypernyms_of(leaf))



def class_split(classes: Sequence[str], *, mode: str = "concept", test_frac: float = 0.25, seed: int = 0,
                taxonomy=None, min_test: int = 5, max_test_frac: float | None = None) -> ClassSplit:
    """A strict, seeded class split: no held-out class is ever a training class.

    - ``"concept"``: about ``test_frac`` of the classes drawn at random are held out (they
      may share hypernyms with training classes: a held-out robin next to a trained
      sparrow). Classes with the same display name ("bracelet1", "bracelet2"), i.e. the
      same prompt, always fall on the same side.
    - ``"hypernym"``: whole top-level hypernyms are held out, drawn at random until at least
      ``test_frac`` of the classes are held out (a group that would push the held-out share
      past ``max_test_frac``, default ``min(0.5, 2 * test_frac)``, is passed over). A class
      whose top-level hypernyms are all held out is a test class; one with none held out a
      training class; one with both is dropped. So the top-level hypernyms of the training
      classes and of the test classes are disjoint. Classes with no hypernym form their own
      group ``"<none>"``. Needs ``taxonomy``.

    Raises ``ValueError`` when fewer than ``min_test`` held-out or 2 training classes result.
    """
    classes = sorted(set(classes))
    n = len(classes)
    if mode not in SPLIT_MODES:
        raise ValueError(f"split mode {mode!r}: valid modes are {list(SPLIT_MODES)}")
    if not 0.0 < test_frac < 1.0:
        raise ValueError(f"test_frac={test_frac!r}: must be in (0, 1)")
    max_frac = min(0.5, 2 * test_frac) if max_test_frac is None else max_test_frac
    if not test_frac <= max_frac < 1.0:
        raise ValueError(f"max_test_frac={max_test_frac!r}: must be in [test_frac={test_frac}, 1)")
    rng = random.Random(stable_hash(["alignment-split", mode, seed, test_frac]))
    dropped: set[str] = set()
    if mode == "concept":
        by_name: dict[str, list[str]] = {}
        for c in classes:
            by_name.setdefault(display_name(c), []).append(c)
        names = sorted(by_name)
        rng.shuffle(names)
        test: set[str] = set()
        for name in names:
            if len(test) >= round(test_frac * n):
                break
            test.update(by_name[name])
        groups: tuple[str, ...] = ()
    else:
        if taxonomy is None:
            raise ValueError("split mode 'hypernym' needs the taxonomy")
        tops = {c: top_hypernyms(taxonomy, c) or frozenset({NO_GROUP}) for c in classes}
        names = sorted({h for hs in tops.values() for h in hs})
        rng.shuffle(names)
        held: set[str] = set()
        test = set()
        for h in names:
            if len(test) >= test_frac * n:
                break
            trial = held | {h}
            got = {c for c in classes if tops[c] <= trial}
            if len(got) > max_frac * n:
                continue
            held, test = trial, got
        dropped = {c for c in classes if tops[c] & held and not tops[c] <= held}
        groups = tuple(sorted(held))
    train = tuple(c for c in classes if c not in test and c not in dropped)
    if len(test) < min_test or len(train) < 2:
        raise ValueError(f"{mode} split (test_frac={test_frac}, seed={seed}) of {n} classes holds out {len(test)} "
                         f"and trains on {len(train)}: need >= {min_test} held-out and >= 2 training classes")
    return ClassSplit(train, tuple(sorted(test)), mode, seed, groups, tuple(sorted(dropped)))
