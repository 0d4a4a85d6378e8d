"""A content-hashed on-disk cache of frozen encoder features.

The frozen encoder runs once per (encoder, image set). The cache key hashes the encoder
name, each image's key and the sha256 of its bytes, so an edited image gives a new key.
On reuse the stored metadata (encoder, keys, digests, shape) must match exactly and the
tensor must be finite; a stale or corrupt file is rebuilt with a warning, never used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from tqdm.auto import tqdm

from interp.io import environment, load_valid_tensor, save_tensors, stable_hash
from interp.paths import cache_dir as default_cache_dir

FORMAT = 1


@dataclass
class FeatureSet:
    """``features [n_images, n_tokens, d_model]`` (float32) in the order of ``keys``."""

    features: torch.Tensor
    keys: list[str]
    encoder: str
    digest: str

    def index(self, keys: Sequence[str]) -> torch.Tensor:
        pos = {k: i for i, k in enumerate(self.keys)}
        missing = [k for k in keys if k not in pos]
        if missing:
            raise KeyError(f"{len(missing)} keys not in the feature set, e.g. {missing[:3]}")
        return torch.tensor([pos[k] for k in keys])


def image_digest(paths: Sequence[Path]) -> list[str]:
    """sha256 of each file's bytes."""
    out = []
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        out.append(h.hexdigest())
    return out


class UndecodableImages(ValueError):
    """Image files that do not decode; ``bad`` lists (path, reason) for every one of them."""

    def __init__(self, bad: Sequence[tuple[Path, str]]):
        self.bad = list(bad)
        shown = "; ".join(f"{p} ({why})" for p, why in self.bad[:10])
        more = f" and {len(self.bad) - 10} more" if len(self.bad) > 10 else ""
        super().__init__(f"{len(self.bad)} image files do not decode: {shown}{more}")


def encode_cached(
    encoder,
    paths: Sequence[Path],
    keys: Sequence[str] | None = None,
    *,
    cache_dir: Path | None = None,
    batch_size: int = 32,
    progress: bool = True,
    storage_dtype: torch.dtype = torch.float16,
) -> FeatureSet:
    """Features of ``paths`` by ``encoder``, from the cache when valid, else computed and stored."""

    paths = [Path(p) for p in paths]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image files are missing, first: {missing[0]}")
    keys = list(keys) if keys is not None else [str(p) for p in paths]
    digests = image_digest(paths)
    set_hash = stable_hash({"format": FORMAT, "encoder": encoder.name, "items": list(zip(keys, digests)),
                            "dtype": str(storage_dtype)}, n=24)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir("features", encoder.name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{set_hash}.safetensors"
    want = {"format": FORMAT, "encoder": encoder.name, "keys": keys, "digests": digests}
    if path.exists():
        feats = load_valid_tensor(path, want, (len(keys), None, None), what="feature cache")
        if feats is not None:
            return FeatureSet(feats, keys, encoder.name, set_hash)
    chunks = []

    bad: list[tuple[Path, str]] = []
    for s in tqdm(range(0, len(paths), batch_size), desc=f"features {encoder.name}", disable=not progress):
        ims = []
        for p in paths[s:s + batch_size]:
            try:
                with Image.open(p) as im:
                    im.load()
                    ims.append(im.copy())
            except (OSError, SyntaxError, ValueError) as e:  # PIL's truncated/unidentified/corrupt files
                bad.append((p, str(e)))
        if not bad:  # after the first bad file only decode, to name every bad file in one pass
            chunks.append(encoder.encode(ims, batch_size=batch_size))
    if bad:
        raise UndecodableImages(bad)
    feats = torch.cat(chunks) if chunks else torch.empty(0, encoder.n_tokens, encoder.d_model)
    stored = feats.to(storage_dtype)
    save_tensors(path, {"features": stored}, {**want, "shape": list(stored.shape), "dtype": str(storage_dtype),
                                               "environment": environment()})
    return FeatureSet(stored.float(), keys, encoder.name, set_hash)
