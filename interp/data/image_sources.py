"""Where the embedded image set's drawings come from, and which concepts they draw.

- ``google``, ``twitter``: npm ``emoji-datasource-google`` / ``-twitter`` 16.0.0, 64 px PNGs
  (Noto Emoji, Apache-2.0; Twemoji, CC-BY-4.0); ``emoji.json`` gives the CLDR category and
  subcategory of every fully-qualified base emoji (skin-tone variants are not listed at top level).
- ``openmoji``: npm ``openmoji`` 17.0.0, ``color/svg`` (CC-BY-SA-4.0), rasterised by cairosvg.
- ``fluent-flat``, ``fluent-modern``: npm ``fluentui-emoji`` 1.3.0, ``icons/flat`` and
  ``icons/modern`` (MIT), files named by the CLDR annotation ("red-apple.svg").
- ``tuxpaint``: Debian ``tuxpaint-stamps-default`` photo stamps (GPL-2), by a curated map.

Concepts, names and hypernyms come from the curated map ``cldr_map.json`` (see
``interp.data.taxonomy``). Renderings are matched across emoji sources by codepoint.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from interp.data.taxonomy import load_cldr_map
from interp.paths import cache_root

TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")
SETUP_HINT = "run `bash scripts/setup.sh`"
MIN_RENDERINGS = 4
MIN_FAMILIES = 3
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
