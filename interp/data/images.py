"""The embedded image set: concrete concepts, each drawn by several independent sources.

Sources (one PNG per source and concept, 128x128 RGB on white; the drawing cropped to its
content and fitted into the central 112x112):

- ``google``, ``twitter``: npm ``emoji-datasource-google`` / ``-twitter`` 16.0.0, 64 px PNGs
  (Noto Emoji, Apache-2.0; Twemoji, CC-BY-4.0); ``emoji.json`` gives the CLDR category and
  subcategory of every fully-qualified base emoji (skin-tone variants are not listed at top level).
- ``openmoji``: npm ``openmoji`` 17.0.0, ``color/svg`` (CC-BY-SA-4.0), rasterised by cairosvg.
- ``fluent-flat``, ``fluent-modern``: npm ``fluentui-emoji`` 1.3.0, ``icons/flat`` and
  ``icons/modern`` (MIT), files named by the CLDR annotation ("red-apple.svg").
- ``tuxpaint``: Debian ``tuxpaint-stamps-default`` photo stamps (GPL-2), by a curated map.

Concepts, names and hypernyms come from the curated map ``cldr_map.json`` (see
``interp.data.taxonomy``). Renderings are matched across emoji sources by codepoint.

    root = build_embedded_images()          # idempotent: verifies the manifest and returns
    images = load_image_set(root)           # ImageSet(root, concepts, images)
    splits = split_images(images, "renderings", seed=0)   # whole source families held out
    taxonomy = embedded_taxonomy()
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shutil
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from interp.io import read_json, sha256_file, stable_hash, write_json
from interp.paths import cache_root

SET_NAME = "embedded-v1"
BUILD_VERSION = 1
IMAGE_SIZE = 128
CONTENT_SIZE = 112
MIN_RENDERINGS = 4
MIN_FAMILIES = 3
TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")
SETUP_HINT = "run `bash scripts/setup.sh`"
NPM_INSTALL = ("npm install --prefix \"${INTERP_CACHE:-$HOME/.cache/interp}/npm\" --no-audit --no-fund "
               "emoji-datasource-google@16.0.0 emoji-datasource-twitter@16.0.0 openmoji@17.0.0 fluentui-emoji@1.3.0")

SOURCES: dict[str, dict[str, str]] = {
    "google": {"package": "emoji-datasource-google", "version": "16.0.0", "family": "google",
               "licence": "Apache-2.0 (Noto Emoji images); data MIT", "kind": "npm"},
    "twitter": {"package": "emoji-datasource-twitter", "version": "16.0.0", "family": "twitter",
                "licence": "CC-BY-4.0 (Twemoji graphics); data MIT", "kind": "npm"},
    "openmoji": {"package": "openmoji", "version": "17.0.0", "family": "openmoji",
                 "licence": "CC-BY-SA-4.0", "kind": "npm"},
    "fluent-flat": {"package": "fluentui-emoji", "version": "1.3.0", "family": "fluent", "licence": "MIT", "kind": "npm"},
    "fluent-modern": {"package": "fluentui-emoji", "version": "1.3.0", "family": "fluent", "licence": "MIT", "kind": "npm"},
    "tuxpaint": {"package": "tuxpaint-stamps-default", "version": "2022.06.04-1", "family": "tuxpaint",
                 "licence": "GPL-2", "kind": "debian"},
}
NPM_PACKAGES = {"emoji-datasource-google": "16.0.0", "emoji-datasource-twitter": "16.0.0", "openmoji": "17.0.0",
                "fluentui-emoji": "1.3.0"}


def source_family(source: str) -> str:
    """Sources that share a drawing (fluent flat and modern) form one family; splits hold out
    whole families so that no test image is a restyling of a training image."""
    return SOURCES.get(source, {}).get("family", source)


# ------------------------------------------------------------------ records
@dataclass(frozen=True)
class ImageRecord:
    key: str  # path relative to the image root, e.g. "apple/google.png"
    concept: str
    source: str
    path: Path


@dataclass
class ImageSet:
    root: Path
    concepts: list[str]
    images: list[ImageRecord]
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    def restrict(self, concepts: Iterable[str]) -> "ImageSet":
        keep = set(concepts)
        return ImageSet(self.root, [c for c in self.concepts if c in keep],
                        [r for r in self.images if r.concept in keep], self.meta)

    def by_concept(self) -> dict[str, list[ImageRecord]]:
        out: dict[str, list[ImageRecord]] = {c: [] for c in self.concepts}
        for r in self.images:
            out.setdefault(r.concept, []).append(r)
        return out

    def __len__(self) -> int:
        return len(self.images)


# --------------------------------------------------------------------- paths
def embedded_image_root() -> Path:
    """``<INTERP_CACHE>/images/embedded-v1`` (may not be built yet)."""
    return cache_root() / "images" / SET_NAME


def npm_root() -> Path:
    return cache_root() / "npm" / "node_modules"


def npm_package(name: str) -> Path:
    """Folder of an npm image package; a clear error if it is missing or the wrong version."""
    path = npm_root() / name
    pj = path / "package.json"
    want = NPM_PACKAGES.get(name)
    if not pj.exists():
        raise FileNotFoundError(
            f"npm package {name} not found at {path}: {SETUP_HINT} (it runs: {NPM_INSTALL})")
    got = json.loads(pj.read_text()).get("version")
    if want and got != want:
        raise RuntimeError(f"npm package {name} is version {got}, the image set pins {want}: {SETUP_HINT}")
    return path


def tuxpaint_dir() -> Path:
    d = Path(os.environ.get("INTERP_TUXPAINT_DIR", TUXPAINT_DIR))
    if not d.is_dir():
        raise FileNotFoundError(f"Tux Paint stamps not found at {d}: `apt-get install tuxpaint-stamps-default` "
                                f"(or {SETUP_HINT})")
    return d


# ----------------------------------------------------------------- catalogue
def cldr_slug(annotation: str) -> str:
    """Concept key of a CLDR annotation: ascii, lower case, words joined by '_'
    ("rescue worker’s helmet" -> "rescue_workers_helmet", "piñata" -> "pinata")."""
    a = unicodedata.normalize("NFKD", annotation).encode("ascii", "ignore").decode().lower()
    a = a.replace("'", "").replace("’", "")
    return re.sub(r"[^a-z0-9]+", "_", a).strip("_")


def fluent_name(annotation: str) -> str:
    a = unicodedata.normalize("NFKD", annotation).encode("ascii", "ignore").decode().lower()
    a = a.replace("'", "").replace("’", "")
    return re.sub(r"[^a-z0-9]+", "-", a).strip("-")


@dataclass
class Concept:
    name: str
    slug: str
    unified: str
    category: str
    subcategory: str
    hypernyms: list[str]  # most specific, as in the map
    wordnet: str | None = None
    not_distractor: list[str] = field(default_factory=list)
    phrase: str | None = None
    renderings: dict[str, tuple[str, Path]] = field(default_factory=dict)  # source -> (origin key, file)


def catalogue(cmap: Mapping[str, Any] | None = None, tux_dir: Path | None = None) -> tuple[list[Concept], dict[str, Any]]:
    """Every concept of the curated map with the files of every source that draws it.

    Returns (concepts with >= MIN_RENDERINGS renderings from >= MIN_FAMILIES families, info
    with the dropped ones)."""
    from interp.data.taxonomy import load_cldr_map

    cmap = cmap or load_cldr_map()
    g_dir, t_dir = npm_package("emoji-datasource-google"), npm_package("emoji-datasource-twitter")
    o_dir, f_dir = npm_package("openmoji"), npm_package("fluentui-emoji")
    google = json.loads((g_dir / "emoji.json").read_text())
    twitter = {e["unified"]: e for e in json.loads((t_dir / "emoji.json").read_text())}
    openmoji = {e["hexcode"]: e for e in json.loads((o_dir / "data" / "openmoji.json").read_text())}
    flat = {p.stem for p in (f_dir / "icons" / "flat").glob("*.svg")}
    modern = {p.stem for p in (f_dir / "icons" / "modern").glob("*.svg")}
    subcats: Mapping[str, list[str]] = cmap["subcategories"]
    only = {k: set(v) for k, v in cmap.get("include_in_excluded_subcategories", {}).items() if not k.startswith("_")}
    specs: Mapping[str, Any] = cmap["concepts"]
    parents = cmap["hypernyms"]

    all_slugs: set[str] = set()
    concepts: dict[str, Concept] = {}
    for e in sorted(google, key=lambda e: e["sort_order"]):
        uni = e["unified"]
        om = openmoji.get(uni) or openmoji.get(uni.replace("-FE0F", ""))
        annotation = om["annotation"] if om else e["name"].lower()
        slug = cldr_slug(annotation)
        all_slugs.add(slug)
        sub = e["subcategory"]
        if sub not in subcats or (sub in only and slug not in only[sub]):
            continue
        spec = specs.get(slug, {})
        if spec is None:
            continue
        if isinstance(spec, list):
            spec = {"hypernyms": spec}
        name = spec.get("name", slug)
        hyps = list(spec.get("hypernyms", subcats[sub]))
        bad = [h for h in hyps if h not in parents]
        if bad:
            raise ValueError(f"cldr_map.json: concept {slug!r} uses unknown hypernyms {bad}")
        if name in concepts:
            raise ValueError(f"cldr_map.json: two emoji map to concept {name!r} ({concepts[name].slug}, {slug})")
        c = Concept(name, slug, uni, e["category"], sub, hyps, spec.get("wordnet"), list(spec.get("not_distractor", [])),
                    spec.get("phrase"))
        if e.get("has_img_google"):
            c.renderings["google"] = (f"{SOURCES['google']['package']}/img/google/64/{e['image']}",
                                      g_dir / "img" / "google" / "64" / e["image"])
        te = twitter.get(uni)
        if te and te.get("has_img_twitter"):
            c.renderings["twitter"] = (f"{SOURCES['twitter']['package']}/img/twitter/64/{te['image']}",
                                       t_dir / "img" / "twitter" / "64" / te["image"])
        if om:
            p = o_dir / "color" / "svg" / f"{om['hexcode']}.svg"
            if p.exists():
                c.renderings["openmoji"] = (f"openmoji/color/svg/{p.name}", p)
        fname = fluent_name(annotation)
        if fname in flat:
            c.renderings["fluent-flat"] = (f"fluentui-emoji/icons/flat/{fname}.svg", f_dir / "icons" / "flat" / f"{fname}.svg")
        if fname in modern:
            c.renderings["fluent-modern"] = (f"fluentui-emoji/icons/modern/{fname}.svg",
                                             f_dir / "icons" / "modern" / f"{fname}.svg")
        for _, (_, path) in list(c.renderings.items()):
            if not path.exists():
                raise FileNotFoundError(f"missing source file {path}")
        concepts[name] = c

    unknown = sorted(k for k in specs if k not in all_slugs)
    if unknown:
        raise ValueError(f"cldr_map.json: concept keys that match no emoji annotation: {unknown}")
    tux = cmap.get("tuxpaint", {})
    if tux:
        td = tux_dir or tuxpaint_dir()
        for rel, name in sorted(tux.items()):
            if name not in concepts:
                raise ValueError(f"cldr_map.json: tuxpaint stamp {rel} maps to unknown concept {name!r}")
            p = td / rel
            if not p.exists():
                raise FileNotFoundError(f"Tux Paint stamp {p} missing (tuxpaint-stamps-default changed?)")
            concepts[name].renderings["tuxpaint"] = (f"tuxpaint-stamps/{rel}", p)
    kept, dropped = [], []
    for name in sorted(concepts):
        c = concepts[name]
        fams = {source_family(s) for s in c.renderings}
        (kept if len(c.renderings) >= MIN_RENDERINGS and len(fams) >= MIN_FAMILIES else dropped).append(c)
    info = {"dropped": {c.name: sorted(c.renderings) for c in dropped}, "candidates": len(concepts)}
    return kept, info


# ----------------------------------------------------------------- rendering
def _fit(im, size: int = IMAGE_SIZE, content: int = CONTENT_SIZE):
    """RGBA drawing -> RGB ``size`` square on white: cropped to its content (alpha), fitted
    into ``content`` keeping the aspect ratio, centred."""
    from PIL import Image

    im = im.convert("RGBA")
    alpha = im.getchannel("A").point(lambda a: 255 if a > 8 else 0)
    bbox = alpha.getbbox()
    if bbox:
        im = im.crop(bbox)
    w, h = im.size
    scale = content / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    im = im.resize((nw, nh), Image.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    canvas.alpha_composite(im, ((size - nw) // 2, (size - nh) // 2))
    return canvas.convert("RGB")


def render(path: Path):
    """A source file (PNG or SVG) as a PIL RGB image of IMAGE_SIZE."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() == ".svg":
        import cairosvg

        png = cairosvg.svg2png(url=str(path), output_width=2 * CONTENT_SIZE, output_height=2 * CONTENT_SIZE)
        im = Image.open(io.BytesIO(png))
    else:
        im = Image.open(path)
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
    return _fit(im)


def _render_job(job: tuple[str, str]) -> str:
    src, dst = job
    im = render(Path(src))
    im.save(dst, format="PNG", optimize=False, compress_level=6)
    return sha256_file(dst)


# ------------------------------------------------------------------ manifest
def recipe() -> dict[str, Any]:
    """What the image set is built from; a change triggers a rebuild."""
    from interp.data.taxonomy import CLDR_MAP

    import cairosvg
    import PIL

    return {"set": SET_NAME, "version": BUILD_VERSION, "size": IMAGE_SIZE, "content": CONTENT_SIZE,
            "min_renderings": MIN_RENDERINGS, "min_families": MIN_FAMILIES,
            "map_sha256": sha256_file(CLDR_MAP), "sources": {k: v["version"] for k, v in SOURCES.items()},
            "pillow": PIL.__version__, "cairosvg": cairosvg.__version__}


def _manifest_hash(manifest: Mapping[str, Any]) -> str:
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
    if m.get("manifest_hash") != _manifest_hash(m):
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
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _taxonomy_and_reports(concepts: list[Concept], out: Path, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Curated taxonomy of the concepts (distractors avoid WordNet hypernyms too) and the
    WordNet disagreement reports of it and of the THINGS taxonomy."""
    from interp.data import taxonomy as tx

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
    check = tx.wordnet_check(draft, hyp_aliases=aliases, leaf_aliases=leaf_alias, accepted_conflicts=accepted)
    forbidden = tx.wordnet_forbidden(draft, check)
    for c in concepts:
        forbidden.setdefault(c.name, set()).update(c.not_distractor)
    taxonomy = tx.build_taxonomy(assign, parents, seed=seed, forbidden=forbidden, phrases=phrases,
                                 source="embedded-v1 (cldr_map.json)")
    reports = {"embedded": tx.write_wordnet_report(check, taxonomy, out / "wordnet_report.md",
                                                    out / "wordnet_report.csv", "embedded image set (cldr_map.json)")}
    if tx.THINGS_TSV.exists():
        things = tx.load_things_taxonomy(tx.THINGS_TSV)
        tcheck = tx.wordnet_check(things, hyp_aliases={h: aliases.get(h, [h]) for h in things.hypernyms})
        reports["things"] = tx.write_wordnet_report(tcheck, things, out / "wordnet_report_things.md",
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
        taxonomy, reports = _taxonomy_and_reports(concepts, tmp)
        from interp.data.taxonomy import load_cldr_map

        parents = {h: s.get("parent") for h, s in load_cldr_map()["hypernyms"].items()}

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
        manifest["manifest_hash"] = _manifest_hash(manifest)
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
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="render", unit="img")
    out: list[str] = []
    if workers <= 1:
        for j in jobs:
            out.append(_render_job(j))
            if bar:
                bar.update()
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
            for sha in ex.map(_render_job, jobs, chunksize=16):
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


# -------------------------------------------------------------------- loading
def read_manifest(root: Path | None = None) -> dict[str, Any]:
    root = Path(root or embedded_image_root())
    mpath = root / "manifest.json"
    if not mpath.exists():
        raise FileNotFoundError(f"no image set at {root} (no manifest.json): build it with "
                                f"`python -m interp.data.build` (or {SETUP_HINT})")
    return read_json(mpath)


def load_image_set(root: str | Path | None = None) -> ImageSet:
    """The embedded image set at ``root`` (from its manifest), records sorted by concept, source."""
    root = Path(root or embedded_image_root())
    m = read_manifest(root)
    recs = [ImageRecord(r["file"], name, r["source"], root / r["file"])
            for name in sorted(m["concepts"]) for r in sorted(m["concepts"][name]["renderings"], key=lambda r: r["source"])]
    return ImageSet(root, sorted(m["concepts"]), recs, {"name": m.get("name"), "manifest_hash": m.get("manifest_hash")})


def embedded_taxonomy(root: str | Path | None = None):
    """The curated taxonomy of the embedded concepts: from the built manifest if there is one,
    else computed from the curated map and the npm sources (without rendering images)."""
    from interp.data.taxonomy import Taxonomy

    root = Path(root or embedded_image_root())
    if (root / "manifest.json").exists():
        return Taxonomy.from_dict(read_manifest(root)["taxonomy"])
    import tempfile

    concepts, _ = catalogue()
    with tempfile.TemporaryDirectory() as d:
        taxonomy, _ = _taxonomy_and_reports(concepts, Path(d))
    return taxonomy


# --------------------------------------------------------------------- splits
SPLITS = ("train", "val", "test")


def split_images(image_set: ImageSet, scheme: str = "renderings", seed: int = 0,
                 fractions: tuple[float, float] = (0.70, 0.05)) -> dict[str, list[ImageRecord]]:
    """Deterministic per-concept splits -> {"train", "val", "test"} lists of records.

    - ``"renderings"`` (embedded set): whole source families are held out, so a test image is
      never a resize or restyle of a training image. Per concept the families (google,
      twitter, openmoji, fluent = flat + modern, tuxpaint) are sorted and shuffled with a
      seed derived from (seed, concept); the first goes to test, the second to val (when the
      concept has >= 3 families), the rest to train.
    - ``"things"``: per concept the file list sorted by key; the first 70% train, the next
      5% val, the rest test (``int`` of the cumulative fractions; no randomness, seed unused).
    """
    by_c = image_set.by_concept()
    out: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
    if scheme == "renderings":
        for concept in sorted(by_c):
            recs = by_c[concept]
            fams = sorted({source_family(r.source) for r in recs})
            random.Random(stable_hash(["split", seed, concept])).shuffle(fams)
            if len(fams) >= 3:
                role = {fams[0]: "test", fams[1]: "val", **{f: "train" for f in fams[2:]}}
            elif len(fams) == 2:
                role = {fams[0]: "test", fams[1]: "train"}
            else:
                role = {f: "train" for f in fams}
            for r in sorted(recs, key=lambda r: r.key):
                out[role[source_family(r.source)]].append(r)
    elif scheme == "things":
        p_train, p_val = round(fractions[0] * 1000), round(fractions[1] * 1000)  # integer arithmetic
        for concept in sorted(by_c):
            recs = sorted(by_c[concept], key=lambda r: r.key)
            n = len(recs)
            a, b = n * p_train // 1000, n * (p_train + p_val) // 1000
            out["train"] += recs[:a]
            out["val"] += recs[a:b]
            out["test"] += recs[b:]
    else:
        raise ValueError(f"unknown split scheme {scheme!r}: use 'renderings' (embedded set) or 'things'")
    return out
