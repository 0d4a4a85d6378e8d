"""The embedded image set: concrete concepts, each drawn by several independent sources.
This module is its front door; the work is done in

- ``image_sources``: the sources and the catalogue of concepts they draw;
- ``rendering``: one drawing -> one 128x128 RGB PNG on white (content fitted into 112x112);
- ``image_build``: build once, manifest, verify;
- ``image_records`` / ``splits``: the records and their deterministic splits.

The sources, their licences and how renderings are matched across them: :mod:`interp.data.image_sources`.

    root = build_embedded_images()          # idempotent: verifies the manifest and returns
    images = load_image_set(root)           # ImageSet(root, concepts, images)
    splits = split_images(images, "renderings", seed=0)   # whole source families held out
    taxonomy = embedded_taxonomy()
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from interp.data.image_build import (SET_NAME, build_embedded_images, embedded_image_root, read_manifest,  # noqa: F401
                                     taxonomy_and_reports, verify)
from interp.data.image_records import ImageRecord, ImageSet  # noqa: F401
from interp.data.image_sources import SOURCES, catalogue, npm_package, source_family  # noqa: F401
from interp.data.rendering import IMAGE_SIZE  # noqa: F401
from interp.data.splits import SPLITS, split_images  # noqa: F401
from interp.data.taxonomy import Taxonomy


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
    root = Path(root or embedded_image_root())
    if (root / "manifest.json").exists():
        return Taxonomy.from_dict(read_manifest(root)["taxonomy"])
    concepts, _ = catalogue()
    with tempfile.TemporaryDirectory() as d:
        taxonomy, _ = taxonomy_and_reports(concepts, Path(d))
    return taxonomy
