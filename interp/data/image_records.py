"""The records of an image set: one ``ImageRecord`` per image file, an ``ImageSet`` of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


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

    def first_rendering(self, concept: str) -> ImageRecord | None:
        """The concept's rendering of the alphabetically first source (the CLI's and the
        benchmarks' example image), or None when the set has no image of it."""
        recs = sorted((r for r in self.images if r.concept == concept), key=lambda r: r.source)
        return recs[0] if recs else None

    def __len__(self) -> int:
        return len(self.images)
