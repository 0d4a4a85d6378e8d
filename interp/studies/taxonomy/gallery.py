"""The taxonomic study's image gallery: test images with the model's Yes/No answers to hypernym
questions and their margins, right and wrong, per hypernym, seen and unseen.

The run writes ``images.csv`` (feature row -> image file, for the test split) beside
``results.csv``, so the gallery is rebuilt from the run folder without loading any model: a
run's ``scores.csv`` names each question's image by its feature row.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from interp.io import read_csv, read_json
from interp.pages import Card, Gallery, thumbnail_uri

IMAGE_COLUMNS = ("image", "split", "key", "concept", "source", "path")
STRATA = (("unseen", False), ("unseen", True), ("seen", False), ("seen", True))  # (split, right): wrong first


def image_rows(records, splits: dict[str, list[int]], names: tuple[str, ...] = ("test",)) -> list[dict]:
    """One row per image of the ``names`` splits: its feature row (``image``, as in scores.csv),
    split, key, concept, source and file path."""
    return [{"image": i, "split": name, "key": records[i].key, "concept": records[i].concept,
             "source": records[i].source, "path": str(records[i].path)} for name in names for i in splits[name]]


def gallery_run(out: Path) -> str | None:
    """The run the gallery shows: the pretrained LM in the original world at the largest
    deprivation (the brief's headline condition), else the closest run that has scores."""
    def preference(run_dir: Path) -> tuple:
        spec = read_json(run_dir / "conditions.json")["spec"] if (run_dir / "conditions.json").exists() else {}
        rows = read_json(run_dir / "rows.json")["rows"] if (run_dir / "rows.json").exists() else []
        rate = float(rows[0]["rate"]) if rows else 0.0
        return (spec.get("random_init", True), spec.get("world") != "original", -rate, run_dir.name)

    runs = [p.parent for p in Path(out).glob("runs/*/scores.csv")]
    return min(runs, key=preference).name if runs else None


def pick_questions(scores: list[dict], limit: int, seed: int = 0) -> list[dict]:
    """Up to ``limit`` hypernym questions spread over hypernyms (round robin) and, within one,
    over unseen/seen x wrong/right; a new image is preferred to one already shown."""
    rng = random.Random(seed)
    buckets: dict[str, dict[tuple[str, bool], list[dict]]] = defaultdict(lambda: defaultdict(list))
    for s in scores:
        if s["kind"] != "hypernym":
            continue
        split = "seen" if str(s["seen"]) == "True" else "unseen"
        right = (float(s["score"]) > 0) == (s["answer"] == "Yes")
        buckets[s["hypernym"]][(split, right)].append(s)
    for by in buckets.values():
        for items in by.values():
            rng.shuffle(items)
    picked: list[dict] = []
    used: set[int] = set()
    turn = {h: 0 for h in buckets}
    while len(picked) < limit:
        progressed = False
        for h in sorted(buckets):
            if len(picked) >= limit:
                break
            for k in range(len(STRATA)):  # this hypernym's next non-empty stratum
                items = buckets[h][STRATA[(turn[h] + k) % len(STRATA)]]
                if items:
                    turn[h] = (turn[h] + k + 1) % len(STRATA)
                    fresh = next((i for i, s in enumerate(items) if int(s["image"]) not in used), 0)
                    s = items.pop(fresh)
                    used.add(int(s["image"]))
                    picked.append(s)
                    progressed = True
                    break
        if not progressed:
            break
    return picked


def gallery(out: Path, *, limit: int = 200, size: int = 96, progress: bool = False) -> Gallery | str:
    """The gallery of one run (:func:`gallery_run`), or a sentence saying why there is none."""
    out = Path(out)
    if not (out / "images.csv").exists():
        return ("No gallery: this run folder has no images.csv (written by runs since the results page; re-run the "
                "study, finished runs are skipped, to add it).")
    run_id = gallery_run(out)
    if run_id is None:
        return "No gallery: no run has scores.csv yet."
    images = {int(r["image"]): r for r in read_csv(out / "images.csv")}
    chosen = pick_questions(read_csv(out / "runs" / run_id / "scores.csv"), limit)
    cards = []
    for s in tqdm(chosen, desc="gallery thumbnails", disable=not progress):
        img = images.get(int(s["image"]), {})
        split = "seen" if str(s["seen"]) == "True" else "unseen"
        margin = float(s["score"])
        said = "Yes" if margin > 0 else "No"
        right = said == s["answer"]
        about = f" (questions about {s['concept']})" if img.get("concept") and img["concept"] != s["concept"] else ""
        cards.append(Card(thumbnail_uri(img["path"], size) if img.get("path") else None,
                          f"{img.get('concept', '?')}{about}",
                          (s["question"], f"truth {s['answer']}, model {said}: {'right' if right else 'wrong'}",
                           f"margin {margin:+.3f}", f"{s['hypernym']}, {split}"),
                          (("split", split), ("result", "right" if right else "wrong"), ("hypernym", s["hypernym"])),
                          right))
    return Gallery("answers", cards, {"split": "seen / unseen", "result": "right / wrong", "hypernym": "hypernym"},
                   caption=f"Run {run_id}: {len(cards)} test questions about hypernyms, spread over hypernyms and "
                   "over seen/unseen x right/wrong (green: right, red: wrong). A question's margin is the model's "
                   "log p(Yes) - log p(No); it answers Yes when the margin is above 0.")
