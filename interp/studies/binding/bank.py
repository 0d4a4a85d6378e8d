"""Banks of frozen-encoder features: rendered contexts (image version) and noise images.

The encoder is frozen, so each rendered context is encoded once and cached on disk
(safetensors, float16) under a key that hashes everything the features depend on: the
renderer version, the encoder, the canvas and grid, the attribute subsets and the drawn
episodes. A cached file whose stored episodes or shape differ from what the config asks
for is rebuilt, never used. Training reuses a bank image many times with fresh items,
association order and query (:func:`interp.studies.binding.task.reassign`): the context, and so
the image, is unchanged by those.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.io import environment, load_tensors, save_tensors, stable_hash
from interp.paths import cache_dir
from interp.studies.binding.render import RENDER_VERSION, colour_order, noise_image, render_context, shape_order
from interp.studies.binding.task import Episodes, TaskConfig, sample_episodes

log = logging.getLogger(__name__)


#: how the noise control's tokens are scaled (:attr:`ImageConfig.noise_scale`)
NOISE_SCALES = ("encoder", "picture")
#: where the noise-image version's noise tokens go (:attr:`ImageConfig.noise_between`)
NOISE_PLACES = ("patches", "rows")


@dataclass(frozen=True)
class ImageConfig:
    """The image version. ``colours``/``shapes``: sizes of the renderable subsets (prefixes of
    :func:`colour_order`/:func:`shape_order`; the text task keeps the full pools);
    ``grid``: objects sit in a ``grid x grid`` lattice (7 = EfficientNet-Lite0's token grid);
    ``bank_size``/``eval_bank_size``: rendered training / held-out contexts;
    ``noise_images``: uniform-noise images whose tokens feed the noise control;
    ``n_noise``: noise tokens added per noise example (default: the encoder's token count);
    ``noise_scale``: ``"encoder"`` (the noise tokens as the encoder gives them) or
    ``"picture"`` (each rescaled about the training pictures' token mean to their median
    standardised norm: :func:`scale_noise_to_pictures`); ``noise_between``: where noise tokens
    go in a picture, ``"patches"`` (between any two patch tokens) or ``"rows"`` (between rows
    of the token grid, so every row keeps its patches adjacent)."""

    encoder: str = "efficientnet-lite0"
    colours: int = 27
    shapes: int = 36
    grid: int = 7
    bank_size: int = 2000
    eval_bank_size: int = 256
    noise_images: int = 32
    n_noise: int = 0
    batch_size: int = 32
    noise_scale: str = "encoder"
    noise_between: str = "patches"

    def __post_init__(self) -> None:
        if not 2 <= self.colours <= 216 or not 2 <= self.shapes <= 216:
            raise ValueError(f"image.colours={self.colours}, image.shapes={self.shapes}: valid 2..216")
        if self.grid < 2 or self.bank_size < 1 or self.eval_bank_size < 1 or self.noise_images < 1:
            raise ValueError(f"invalid image config: grid={self.grid} (>=2), bank_size={self.bank_size} (>=1), "
                             f"eval_bank_size={self.eval_bank_size} (>=1), noise_images={self.noise_images} (>=1)")
        if self.noise_scale not in NOISE_SCALES:
            raise ValueError(f"image.noise_scale={self.noise_scale!r}: valid values are {list(NOISE_SCALES)}")
        if self.noise_between not in NOISE_PLACES:
            raise ValueError(f"image.noise_between={self.noise_between!r}: valid values are {list(NOISE_PLACES)}")

    def noise_every(self, n_image: int) -> int:
        """The gap spacing of noise tokens in a picture of ``n_image`` patch tokens: 1 (between
        any two patches) or the token grid's row length (between rows)."""
        if self.noise_between == "patches":
            return 1
        row = math.isqrt(n_image)
        if row * row != n_image:
            raise ValueError(f"image.noise_between='rows' needs a square token grid, the encoder gives {n_image} tokens")
        return row

    def colour_pool(self, task: TaskConfig) -> list[int]:
        self._check(task)
        return colour_order(task.n_colours)[: self.colours]

    def shape_pool(self, task: TaskConfig) -> list[int]:
        self._check(task)
        return shape_order(task.n_shapes)[: self.shapes]

    def _check(self, task: TaskConfig) -> None:
        if self.colours > task.n_colours or self.shapes > task.n_shapes:
            raise ValueError(f"image pools ({self.colours} colours, {self.shapes} shapes) exceed the task pools "
                             f"({task.n_colours}, {task.n_shapes})")


@dataclass
class Bank:
    """Rendered contexts and their features ``[n_images, n_tokens, d]`` (float32 in memory)."""

    episodes: Episodes
    features: torch.Tensor
    key: str

    def __len__(self) -> int:
        return len(self.episodes)


def _bank_path(kind: str, key: str, folder: Path | None) -> Path:
    return (Path(folder) if folder is not None else cache_dir("binding")) / f"{kind}-{key}.safetensors"


def _load(path: Path, want: dict) -> dict[str, torch.Tensor] | None:
    if not path.exists():
        return None
    try:
        tensors, meta = load_tensors(path)
    except Exception as e:  # truncated or foreign file
        log.warning("bank %s unreadable (%s): rebuilding", path, e)
        return None
    if meta.get("spec") != want or not torch.isfinite(tensors["features"].float()).all():
        log.warning("bank %s is stale or corrupt: rebuilding", path)
        return None
    return tensors


def context_bank(task: TaskConfig, image: ImageConfig, encoder, n: int, size: int, seed: int, *,
                 folder: Path | None = None, progress: bool = True) -> Bank:
    """``size`` contexts of ``n`` objects drawn from the image pools, rendered and encoded
    (cached). ``encoder``: an :class:`~interp.models.encoders.ImageEncoder` (or anything
    with ``name``, ``image_size`` and ``encode``)."""
    if n > image.grid ** 2:
        raise ValueError(f"{n} objects do not fit in a {image.grid}x{image.grid} grid")
    if n > min(image.colours, image.shapes):
        raise ValueError(f"{n} objects need {n} distinct colours and shapes; the image pools have "
                         f"{image.colours} colours and {image.shapes} shapes")
    rng = np.random.default_rng([seed, n, 7])
    ep = sample_episodes(rng, task, size, n, colour_pool=image.colour_pool(task), shape_pool=image.shape_pool(task),
                         grid_cells=image.grid ** 2)
    spec = {"render": RENDER_VERSION, "encoder": encoder.name, "image_size": int(encoder.image_size),
            "grid": image.grid, "n": n, "size": size, "seed": seed,
            "episodes": stable_hash([ep.colours.tolist(), ep.shapes.tolist(), ep.cells.tolist()], n=32)}
    key = stable_hash(spec, n=20)
    path = _bank_path("contexts", key, folder)
    tensors = _load(path, spec)
    if tensors is None:
        chunks = []
        for s in tqdm(range(0, size, image.batch_size), desc=f"render+encode {size} contexts (n={n})",
                      disable=not progress):
            ims = [render_context(ep.colours[b], ep.shapes[b], ep.cells[b], size=encoder.image_size, grid=image.grid)
                   for b in range(s, min(size, s + image.batch_size))]
            chunks.append(encoder.encode(ims, batch_size=image.batch_size))
        feats = torch.cat(chunks).to(torch.float16)
        save_tensors(path, {"features": feats}, {"spec": spec, "environment": environment()})
        tensors = {"features": feats}
    return Bank(ep, tensors["features"].float(), key)


def noise_bank(encoder, count: int, seed: int, *, folder: Path | None = None) -> torch.Tensor:
    """Tokens of ``count`` uniform-noise images: ``[count * n_tokens, d]`` (cached)."""
    spec = {"render": RENDER_VERSION, "encoder": encoder.name, "image_size": int(encoder.image_size),
            "count": count, "seed": seed, "kind": "uniform-noise"}
    key = stable_hash(spec, n=20)
    path = _bank_path("noise", key, folder)
    tensors = _load(path, spec)
    if tensors is None:
        rng = np.random.default_rng([seed, 11])
        feats = encoder.encode([noise_image(rng, encoder.image_size) for _ in range(count)]).to(torch.float16)
        save_tensors(path, {"features": feats}, {"spec": spec, "environment": environment()})
        tensors = {"features": feats}
    f = tensors["features"].float()
    return f.reshape(-1, f.shape[-1])


def token_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation ``([d], [d])`` of tokens ``features [..., d]``:
    the standardisation of external tokens (``model.ext_norm``; the std floored at 1e-6)."""
    flat = features.reshape(-1, features.shape[-1]).float()
    return flat.mean(0), flat.std(0).clamp_min(1e-6)


def scale_noise_to_pictures(pool: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Noise tokens ``pool [m, d]`` at the scale of picture tokens ``features [..., d]``:
    standardised as the model standardises them (:func:`token_stats` of the pictures), each noise
    token keeps its direction about the pictures' mean and takes the median standardised norm
    of the picture tokens. Lite0 block 7 (docs/binding.md): uniform-noise tokens sit at 3.4x
    that norm, all along nearly one direction."""
    mean, std = token_stats(features)
    target = ((features.reshape(-1, features.shape[-1]).float() - mean) / std).norm(dim=1).median()
    z = (pool.float() - mean) / std
    z = z * (target / z.norm(dim=1, keepdim=True).clamp_min(1e-6))
    return mean + z * std


def noise_pool(encoder, image: ImageConfig, pictures: torch.Tensor, seed: int) -> torch.Tensor:
    """The noise control's tokens ``[image.noise_images * n_tokens, d]``: :func:`noise_bank`,
    rescaled to the scale of ``pictures [..., d]`` (the training bank) when
    ``image.noise_scale == "picture"``."""
    pool = noise_bank(encoder, image.noise_images, seed=seed)
    return scale_noise_to_pictures(pool, pictures) if image.noise_scale == "picture" else pool
