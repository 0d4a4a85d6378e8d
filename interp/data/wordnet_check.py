"""A taxonomy compared with WordNet 3.0: which asserted pairs WordNet does not support, which
it adds, which leaves it puts under another leaf; the distractors to avoid; the markdown + CSV
disagreement report written beside every built image set."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from interp.data.taxonomy import Taxonomy
from interp.data.wordnet import load_wordnet
from interp.io import write_text


def wordnet_check(taxonomy: Taxonomy, wn=None, hyp_aliases: Mapping[str, list[str]] | None = None,
                  leaf_aliases: Mapping[str, str] | None = None,
                  accepted_conflicts: Iterable[Iterable[str]] = ()) -> dict[str, Any]:
    """Compare a taxonomy with WordNet.

    Returns a dict with
    - "unsupported": (leaf, hyp) pairs asserted although no sense of the leaf lies under any
      WordNet lemma of the hypernym (``hyp_aliases``; hypernyms without one are not checked);
    - "missed": (leaf, hyp) pairs WordNet gives for the leaf's FIRST sense, not asserted;
    - "leaf_conflicts": (leaf, other) where the leaf's first sense lies under some sense of
      the other leaf's own name (a random distractor leaf could then be a true answer);
      "accepted_conflicts" lists those the curation keeps on purpose;
    - "wordnet_true": leaf -> our hypernyms WordNet supports for ANY sense (used to keep
      distractors away from them); "unchecked_hypernyms", "unknown_leaves", "aliases".
    """
    wn = wn or load_wordnet()
    aliases = {h: [a for a in (hyp_aliases or {}).get(h, [h]) if a in wn] for h in taxonomy.hypernyms}
    targets = {h: {s.offset for a in aliases[h] for s in wn.synsets(a)} for h in taxonomy.hypernyms}
    leaf_aliases = dict(leaf_aliases or {})

    def own(lf: str) -> str:
        return re.sub(r"(?<=[a-z])\d+$", "", lf)

    words = {lf: leaf_aliases.get(lf) or own(lf) for lf in taxonomy.leaves}
    unknown = sorted(lf for lf in taxonomy.leaves if not wn.synsets(words[lf]))
    anc_any: dict[str, set[int]] = {}
    anc_first: dict[str, set[int]] = {}
    for lf in taxonomy.leaves:
        senses = wn.synsets(words[lf])
        anc_any[lf] = set().union(*(wn.ancestors(x) for x in senses)) if senses else set()
        anc_first[lf] = set(wn.ancestors(senses[0])) if senses else set()
    any_true = {lf: {h for h in taxonomy.hypernyms if anc_any[lf] & targets[h]} for lf in taxonomy.leaves}
    first_true = {lf: {h for h in taxonomy.hypernyms if anc_first[lf] & targets[h]} for lf in taxonomy.leaves}
    unsupported = sorted((lf, h) for lf, h in taxonomy.pairs
                         if aliases[h] and lf not in unknown and h not in any_true[lf])
    missed = sorted((lf, h) for lf in taxonomy.leaves for h in first_true[lf] if h not in taxonomy.hypernyms_of(lf))
    by_offset: dict[int, list[str]] = {}
    for lf in taxonomy.leaves:  # a leaf as a possible "other": senses of its own name only
        for x in wn.synsets(own(lf)) if own(lf) in wn else []:
            by_offset.setdefault(x.offset, []).append(lf)
    conflicts = sorted({(a, b) for a in taxonomy.leaves for off in anc_first[a] for b in by_offset.get(off, [])
                        if b != a and words[a] != words[b]})
    accepted = {tuple(x) for x in accepted_conflicts}
    return {"unsupported": unsupported, "missed": missed,
            "leaf_conflicts": [c for c in conflicts if c not in accepted],
            "accepted_conflicts": [c for c in conflicts if c in accepted],
            "unchecked_hypernyms": sorted(h for h in taxonomy.hypernyms if not aliases[h]),
            "unknown_leaves": unknown, "wordnet_true": {lf: sorted(s) for lf, s in any_true.items()},
            "aliases": aliases}


def wordnet_forbidden(taxonomy: Taxonomy, check: Mapping[str, Any]) -> dict[str, set[str]]:
    """Per leaf, the hypernyms WordNet supports for any sense (not to be used as distractors)."""
    return {lf: set(hs) for lf, hs in check["wordnet_true"].items()}


def write_wordnet_report(check: Mapping[str, Any], taxonomy: Taxonomy, md_path: str | Path, csv_path: str | Path,
                         title: str) -> dict[str, int]:
    """Write the disagreement report (markdown + CSV); returns the counts."""
    n_pairs = len(taxonomy.pairs)
    counts = {"pairs": n_pairs, "unsupported": len(check["unsupported"]), "missed": len(check["missed"]),
              "leaf_conflicts": len(check["leaf_conflicts"]),
              "accepted_conflicts": len(check.get("accepted_conflicts", [])), "unknown_leaves": len(check["unknown_leaves"]),
              "unchecked_hypernyms": len(check["unchecked_hypernyms"]),
              "unchecked_pairs": sum(1 for lf, h in taxonomy.pairs
                                     if not check["aliases"].get(h) or lf in check["unknown_leaves"])}
    by_h: dict[str, list[str]] = {}
    for lf, h in check["unsupported"]:
        by_h.setdefault(h, []).append(lf)
    miss_h: dict[str, list[str]] = {}
    for lf, h in check["missed"]:
        miss_h.setdefault(h, []).append(lf)
    lines = [f"# WordNet check: {title}", "",
             f"{taxonomy.source}: {len(taxonomy.leaves)} leaves, {len(taxonomy.hypernyms)} hypernyms, {n_pairs} pairs.",
             "",
             f"- pairs the taxonomy asserts that WordNet 3.0 does not support (no sense of the leaf under the "
             f"hypernym's WordNet lemmas): **{counts['unsupported']}** of {n_pairs - counts['unchecked_pairs']} checkable",
             f"- WordNet hypernyms of a leaf's first sense that the taxonomy misses: **{counts['missed']}**",
             f"- leaves whose first sense WordNet puts under another leaf: **{counts['leaf_conflicts']}** "
             f"(+ {counts['accepted_conflicts']} kept on purpose)",
             f"- hypernyms with no WordNet lemma (not checked): {', '.join(check['unchecked_hypernyms']) or '-'}",
             f"- leaves unknown to WordNet (not checked): {', '.join(check['unknown_leaves']) or '-'}",
             "", "WordNet lemmas used per hypernym: " + "; ".join(
                 f"{h}: {'/'.join(a) or '-'}" for h, a in sorted(check["aliases"].items())),
             "", "## Asserted, not in WordNet (by hypernym)", ""]
    lines += [f"- **{h}** ({len(v)}): {', '.join(v)}" for h, v in sorted(by_h.items())] or ["- none"]
    lines += ["", "## In WordNet (first sense), not asserted (by hypernym)", ""]
    lines += [f"- **{h}** ({len(v)}): {', '.join(v)}" for h, v in sorted(miss_h.items())] or ["- none"]
    lines += ["", "## Leaf (first sense) under another leaf (leaf -> other leaf)", ""]
    lines += [f"- {a} -> {b}" for a, b in check["leaf_conflicts"]] or ["- none"]
    if check.get("accepted_conflicts"):
        lines += ["", "Kept on purpose (everyday usage differs from WordNet): "
                  + ", ".join(f"{a} -> {b}" for a, b in check["accepted_conflicts"])]
    write_text(md_path, "\n".join(lines) + "\n")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["kind", "leaf", "other"])
    w.writerows(["unsupported", lf, h] for lf, h in check["unsupported"])
    w.writerows(["missed", lf, h] for lf, h in check["missed"])
    w.writerows(["leaf_conflict", a, b] for a, b in check["leaf_conflicts"])
    w.writerows(["unknown_leaf", lf, ""] for lf in check["unknown_leaves"])
    write_text(csv_path, buf.getvalue())
    return counts
