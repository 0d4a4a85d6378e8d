"""THINGS-layout image folders: ``root/<concept>/*.jpg|jpeg|png`` -> :class:`ImageSet`.

The paper-scale study uses the THINGS images (1,216 concepts with images, about 17k
images) with ``shared/data/things_taxonomy.tsv``; any folder-per-concept image root works.
Files are listed sorted (the original relied on the filesystem order); splits are made by
``split_images(image_set, "things")``: per concept the first 70% train, next 5% val, rest test.

    images = load_things_images("/data/things/images")
    taxonomy = load_things_taxonomy()       # re-exported from interp.data.taxonomy
"""

from __future__ import annotations

import warnings
from pathlib import Path

from interp.data.images import ImageRecord, ImageSet, split_images  # noqa: F401  (re-export)
from interp.data.taxonomy import THINGS_TSV, load_things_taxonomy  # noqa: F401  (re-export)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def load_things_images(root: str | Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES, source: str = "things") -> ImageSet:
    """Every image of a folder-per-concept root, sorted by concept then file name.

    The concept is the folder name (as THINGS leaf names: ``hot_dog``); the record key is
    ``<concept>/<file>``. Hidden files and other suffixes are ignored; a concept folder with
    no image is skipped with a warning. Raises FileNotFoundError naming the folder if the
    root is missing, not a folder, or holds no image at all."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist (expected {root}/<concept>/*.jpg)")
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} is not a folder (expected {root}/<concept>/*.jpg)")
    suffixes = tuple(s.lower() for s in suffixes)
    records: list[ImageRecord] = []
    empty: list[str] = []
    concepts: list[str] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in d.iterdir()
                       if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in suffixes)
        if not files:
            empty.append(d.name)
            continue
        concepts.append(d.name)
        records += [ImageRecord(f"{d.name}/{f.name}", d.name, source, f) for f in files]
    if not records:
        raise FileNotFoundError(f"image folder {root} holds no images (expected {root}/<concept>/*"
                                f"{'|'.join(suffixes)}; found {len(empty)} empty concept folders)")
    if empty:
        warnings.warn(f"{len(empty)} concept folders in {root} hold no image and are skipped: {empty[:10]}")
    return ImageSet(root, concepts, records, {"name": f"things:{root}"})
