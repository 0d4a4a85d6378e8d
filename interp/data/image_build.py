"""Building the embedded image set once: render every source drawing, write a manifest with
each file's sha256, the curated taxonomy and the WordNet reports; verify it on every use.

    root = build_embedded_images()   # idempotent: verifies the manifest and returns the root
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing as mp
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Mapping

from tqdm import tqdm

from interp.data import taxonomy as tx
from interp.data.image_sources import (MIN_FAMILIES, MIN_RENDERINGS, SETUP_HINT, SOURCES, Concept, catalogue)
from interp.data.rendering import CONTENT_SIZE, IMAGE_SIZE, render_job
from interp.data.wordnet_check import wordnet_check, wordnet_forbidden, write_wordnet_report
from interp.io import read_json, sha256_file, stable_hash, write_json
from interp.paths import cache_root

SET_NAME = "embedded-v1"
BUILD_VERSION = 1


def embedded_image_root() -> Path:
    """``<INTERP_CACHE>/images/embedded-v1`` (may not be built yet)."""
    return cache_root() / "images" / SET_NAME


def recipe() -> dict[str, Any]:
    """What the image set is built from; a change triggers a rebuild."""
    import cairosvg  # deferred: the rasteriser's version is part of the recipe; loaded only to build or verify
    import PIL  # deferred: the library's version is part of the recipe; loaded only to build or verify

    return {"set": SET_NAME, "version": BUILD_VERSION, "size": IMAGE_SIZE, "content": CONTENT_SIZE,
            "min_renderings": MIN_RENDERINGS, "min_families": MIN_FAMILIES,
            "map_sha256": sha256_file(tx.CLDR_MAP), "sources": {k: v["version"] for k, v in SOURCES.items()},
            "pillow": PIL.__version__, "cairosvg": cairosvg.__version__}


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    return stable_hash({k: v for k, v in manifest.items() if k != "manifest_hash"}, n=64)


def verify(root: Path | None = None, check_recipe: bool = True) -> tuple[bool, str]:
    """(ok, reason): the manifest exists, its hash matches, it was built by the current
    recipe and every file is present with its sha256."""
    root = Path(root or embedded_image_root())
    mpath = root / "manifest.json"
    if not mpath.exists():
        return False, f"no manifest at {mpath}"
    try:
        m = read_json(mpath)
    except (OSError, ValueError) as e:
        return False, f"unreadable manifest: {e}"
    if m.get("manifest_hash") != manifest_hash(m):
        return False, "manifest hash mismatch"
    if check_recipe:
        want = stable_hash(recipe(), n=64)
        if m.get("recipe_hash") != want:
            return False, "recipe changed (curated map, versions or sizes)"
    for name, c in m["concepts"].items():
        for r in c["renderings"]:
            p = root / r["file"]
            if not p.exists():
                return False, f"missing {p}"
            if sha256_file(p) != r["sha256"]:
                return False, f"hash mismatch {p}"
    return True, "ok"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def taxonomy_and_reports(concepts: list[Concept], out: Path, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Curated taxonomy of the concepts (distractors avoid WordNet hypernyms too) and the
    WordNet disagreement reports of it and of the THINGS taxonomy."""
    cmap = tx.load_cldr_map()
    parents = tx.map_parents(cmap)
    phrases = tx.map_phrases(cmap)
    phrases.update({c.name: c.phrase for c in concepts if c.phrase})
    leaf_alias = {c.name: c.wordnet for c in concepts if c.wordnet}
    assign = {c.name: c.hypernyms for c in concepts}
    # a first taxonomy for the WordNet check, then the final one whose distractors avoid
    # every hypernym WordNet supports for the leaf and the map's not_distractor lists
    draft = tx.build_taxonomy(assign, parents, seed=seed, phrases=phrases, source="embedded-v1 (cldr_map.json)")
    aliases = tx.hypernym_aliases(cmap)
    accepted = cmap.get("accepted_leaf_conflicts", {}).get("pairs", [])
    check = wordnet_check(draft, hyp_aliases=aliases, leaf_aliases=leaf_alias, accepted_conflicts=accepted)
    forbidden = wordnet_forbidden(draft, check)
    for c in concepts:
        forbidden.setdefault(c.name, set()).update(c.not_distractor)
    taxonomy = tx.build_taxonomy(assign, parents, seed=seed, forbidden=forbidden, phrases=phrases,
                                 source="embedded-v1 (cldr_map.json)")
    reports = {"embedded": write_wordnet_report(check, taxonomy, out / "wordnet_report.md",
                                                    out / "wordnet_report.csv", "embedded image set (cldr_map.json)")}
    if tx.THINGS_TSV.exists():
        things = tx.load_things_taxonomy(tx.THINGS_TSV)
        tcheck = wordnet_check(things, hyp_aliases={h: aliases.get(h, [h]) for h in things.hypernyms})
        reports["things"] = write_wordnet_report(tcheck, things, out / "wordnet_report_things.md",
                                                    out / "wordnet_report_things.csv", "THINGS taxonomy (things_taxonomy.tsv)")
        bad = sorted((lf, h, d) for (lf, h), d in things.distractors.items() if d in tcheck["wordnet_true"][lf])
        reports["things"]["distractors_wordnet_true"] = len(bad)
        reports["things"]["distractors_wordnet_true_examples"] = [list(b) for b in bad[:20]]
    return taxonomy, reports


def build_embedded_images(force: bool = False, progress: bool = True, workers: int | None = None) -> Path:
    """Build the embedded image set once (idempotent) and return its root.

    A valid existing set (manifest hash, recipe and every file's sha256) is returned as is;
    otherwise the set is built into a temporary folder beside the root and renamed into
    place, under a lock, so readers never see a half-built set."""
    root = embedded_image_root()
    if not force:
        ok, _ = verify(root)
        if ok:
            return root
    with _lock(root.parent / f".{SET_NAME}.lock"):
        if not force:
            ok, _ = verify(root)
            if ok:
                return root
        return _build(root, progress, workers)


def _build(root: Path, progress: bool, workers: int | None) -> Path:
    t0 = time.perf_counter()
    concepts, info = catalogue()
    tmp = root.parent / f".{SET_NAME}.build-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        jobs, rows = [], []
        for c in concepts:
            (tmp / c.name).mkdir()
            for src in sorted(c.renderings):
                origin, path = c.renderings[src]
                rel = f"{c.name}/{src}.png"
                jobs.append((str(path), str(tmp / rel)))
                rows.append((c.name, src, origin, rel))
        hashes = _run_jobs(jobs, progress, workers)
        taxonomy, reports = taxonomy_and_reports(concepts, tmp)
        parents = {h: s.get("parent") for h, s in tx.load_cldr_map()["hypernyms"].items()}

        def chain(h: str) -> list[str]:
            out = [h]
            while parents.get(out[-1]):
                out.append(parents[out[-1]])
            return out

        man_concepts: dict[str, Any] = {}
        for c in concepts:
            man_concepts[c.name] = {
                "cldr": {"unified": c.unified, "annotation_key": c.slug, "category": c.category, "subcategory": c.subcategory},
                "chains": [chain(h) for h in c.hypernyms],
                "hypernyms": sorted(taxonomy.hypernyms_of(c.name)),
                "phrase": taxonomy.phrase(c.name),
                "renderings": []}
        for (name, src, origin, rel), sha in zip(rows, hashes):
            man_concepts[name]["renderings"].append({"source": src, "file": rel, "sha256": sha, "origin": origin,
                                                     "licence": SOURCES[src]["licence"]})
        manifest = {
            "name": SET_NAME, "recipe": recipe(), "recipe_hash": stable_hash(recipe(), n=64),
            "image": {"size": IMAGE_SIZE, "content": CONTENT_SIZE, "mode": "RGB", "background": "white"},
            "sources": {k: {kk: v[kk] for kk in ("package", "version", "licence", "family")} for k, v in SOURCES.items()},
            "concepts": man_concepts,
            "taxonomy": taxonomy.to_dict(),
            "wordnet_reports": reports,
            "dropped": info["dropped"],
            "counts": counts_of(man_concepts, taxonomy),
        }
        manifest["manifest_hash"] = manifest_hash(manifest)
        write_json(tmp / "manifest.json", manifest)
        old = root.parent / f".{SET_NAME}.old-{os.getpid()}"
        if root.exists():
            os.replace(root, old)
        os.replace(tmp, root)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        print(f"[images] built {len(concepts)} concepts, {len(jobs)} images in {time.perf_counter() - t0:.1f}s -> {root}")
    return root


def _run_jobs(jobs: list[tuple[str, str]], progress: bool, workers: int | None) -> list[str]:
    workers = workers or min(2, os.cpu_count() or 1)
    bar = None
    if progress:
        bar = tqdm(total=len(jobs), desc="render", unit="img")
    out: list[str] = []
    if workers <= 1:
        for j in jobs:
            out.append(render_job(j))
            if bar:
                bar.update()
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
            for sha in ex.map(render_job, jobs, chunksize=16):
                out.append(sha)
                if bar:
                    bar.update()
    if bar:
        bar.close()
    return out


def counts_of(man_concepts: Mapping[str, Any], taxonomy) -> dict[str, Any]:
    per_source: dict[str, int] = {}
    per_sub: dict[str, int] = {}
    per_top: dict[str, int] = {}
    n_r: dict[int, int] = {}
    for name, c in man_concepts.items():
        for r in c["renderings"]:
            per_source[r["source"]] = per_source.get(r["source"], 0) + 1
        per_sub[c["cldr"]["subcategory"]] = per_sub.get(c["cldr"]["subcategory"], 0) + 1
        n_r[len(c["renderings"])] = n_r.get(len(c["renderings"]), 0) + 1
        for h in taxonomy.hypernyms_of(name):
            if taxonomy.depth(h) == 1:
                per_top[h] = per_top.get(h, 0) + 1
    per_h = {h: len(taxonomy.leaves_of(h)) for h in taxonomy.hypernyms}
    return {"concepts": len(man_concepts), "images": sum(per_source.values()),
            "renderings_per_source": dict(sorted(per_source.items())),
            "concepts_by_n_renderings": {str(k): v for k, v in sorted(n_r.items())},
            "concepts_per_subcategory": dict(sorted(per_sub.items())),
            "concepts_per_top_hypernym": dict(sorted(per_top.items())),
            "leaves_per_hypernym": dict(sorted(per_h.items())),
            "hypernyms": len(taxonomy.hypernyms), "pairs": len(taxonomy.pairs),
            "hypernyms_per_depth": {str(d): sum(1 for h in taxonomy.hypernyms if taxonomy.depth(h) == d)
                                    for d in sorted({taxonomy.depth(h) for h in taxonomy.hypernyms})}}


def read_manifest(root: Path | None = None) -> dict[str, Any]:
    root = Path(root or embedded_image_root())
    mpath = root / "manifest.json"
    if not mpath.exists():
        raise FileNotFoundError(f"no image set at {root} (no manifest.json): build it with "
                                f"`python -m interp.data.build` (or {SETUP_HINT})")
    return read_json(mpath)
