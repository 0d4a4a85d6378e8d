"""Draw an episode's context as an image: coloured shapes on a canvas.

Attribute pools, designed so that every colour and shape id has a definite appearance:

- colour ``c`` in ``0..215``: the RGB cube with 6 levels per channel
  (``0, 51, 102, 153, 204, 255``): ``r = L[c // 36], g = L[(c // 6) % 6], b = L[c % 6]``;
- shape ``s`` in ``0..215``: ``kind = s // 36`` (filled polygon, star, ring, polygon with a
  hole-dot, polygon squashed to 55% height, polygon squashed to 55% width),
  ``sides = 3 + (s // 6) % 6`` (3..8) and ``turn = s % 6`` (rotation by ``turn / 6`` of the
  polygon's symmetry angle).

Layout: a ``grid x grid`` lattice of cells (7 x 7 cells of 32 px at 224 px, the
EfficientNet-Lite0 output grid), one object per cell, centred, on a mid-grey background,
with a black outline so that every colour (white, black, greys) stays visible.

What the encoder can and cannot see at this size: the colour cube and the kind/sides of a
shape are large, visible differences; the ``turn`` of a polygon is a rotation of a few
degrees on a 26 px shape and is near the resolution limit. The image version therefore
draws its colours and shapes from subsets taken in :func:`colour_order` /
:func:`shape_order` (most distinct first); the text version always uses the full pools.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

LEVELS = (0, 51, 102, 153, 204, 255)
KINDS = ("polygon", "star", "ring", "dot", "wide", "tall")
BACKGROUND = (128, 128, 128)
RENDER_VERSION = 1


def colour_rgb(c: int) -> tuple[int, int, int]:
    """RGB of colour id ``c`` (0..215)."""
    if not 0 <= int(c) < 216:
        raise ValueError(f"colour id {c} is out of range: valid 0..215")
    c = int(c)
    return LEVELS[c // 36], LEVELS[(c // 6) % 6], LEVELS[c % 6]


def shape_params(s: int) -> tuple[str, int, int]:
    """(kind, sides, turn) of shape id ``s`` (0..215)."""
    if not 0 <= int(s) < 216:
        raise ValueError(f"shape id {s} is out of range: valid 0..215")
    s = int(s)
    return KINDS[s // 36], 3 + (s // 6) % 6, s % 6


def colour_order(n_colours: int = 216) -> list[int]:
    """Colour ids, most distinct first: greedy farthest point in RGB, starting from the
    colour farthest from the background (so a prefix is a well separated subset)."""
    rgb = np.array([colour_rgb(c) for c in range(n_colours)], dtype=float)
    d_bg = np.linalg.norm(rgb - np.array(BACKGROUND), axis=1)
    order = [int(np.argmax(d_bg))]
    dist = np.linalg.norm(rgb - rgb[order[0]], axis=1)
    dist = np.minimum(dist, d_bg)  # the background counts as a colour already taken
    while len(order) < n_colours:
        nxt = int(np.argmax(dist))
        if dist[nxt] <= 0:  # only duplicates left (not the case for the cube)
            nxt = next(c for c in range(n_colours) if c not in order)
        order.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(rgb - rgb[nxt], axis=1))
        dist[order] = -1
    return order


def shape_order(n_shapes: int = 216) -> list[int]:
    """Shape ids, most distinct first: unrotated shapes (``turn`` 0) on a Latin-square walk
    over kinds and side counts (any 6 consecutive ones differ in both), then the rotated
    variants (half a step first)."""
    out = []
    for turn in (0, 3, 1, 4, 2, 5):
        for j in range(36):
            kind, sides = j % 6, (j + j // 6) % 6
            s = kind * 36 + sides * 6 + turn
            if s < n_shapes:
                out.append(s)
    return out


def _polygon(cx: float, cy: float, r: float, sides: int, turn: int, sx: float = 1.0, sy: float = 1.0,
             star: bool = False) -> list[tuple[float, float]]:
    step = 2 * math.pi / sides
    start = -math.pi / 2 + turn * step / 6
    pts = []
    for k in range(sides):
        a = start + k * step
        pts.append((cx + sx * r * math.cos(a), cy + sy * r * math.sin(a)))
        if star:
            a2 = a + step / 2
            pts.append((cx + sx * 0.45 * r * math.cos(a2), cy + sy * 0.45 * r * math.sin(a2)))
    return pts


def draw_shape(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, shape: int, colour: int) -> None:
    """Draw shape id ``shape`` in colour id ``colour`` centred at (cx, cy), radius ``r``."""
    kind, sides, turn = shape_params(shape)
    fill, outline = colour_rgb(colour), (0, 0, 0)
    width = max(1, round(r / 7))
    sx, sy = {"wide": (1.0, 0.55), "tall": (0.55, 1.0)}.get(kind, (1.0, 1.0))
    pts = _polygon(cx, cy, r, sides, turn, sx, sy, star=kind == "star")
    draw.polygon(pts, fill=fill, outline=outline, width=width)
    if kind == "ring":  # hollow: the inner polygon in background grey
        inner = _polygon(cx, cy, 0.5 * r, sides, turn)
        draw.polygon(inner, fill=BACKGROUND, outline=outline, width=width)
    elif kind == "dot":  # a small black disc in the middle
        d = 0.22 * r
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], fill=outline)


def render_context(colours: Sequence[int], shapes: Sequence[int], cells: Sequence[int], *, size: int = 224,
                   grid: int = 7) -> Image.Image:
    """One episode's context: object k (``colours[k]``, ``shapes[k]``) in grid cell ``cells[k]``
    (row-major, ``0..grid*grid-1``). Returns an RGB image ``size x size``."""
    if not (len(colours) == len(shapes) == len(cells)):
        raise ValueError(f"colours, shapes and cells differ in length: {len(colours)}, {len(shapes)}, {len(cells)}")
    if len(set(int(c) for c in cells)) != len(cells) or any(not 0 <= int(c) < grid * grid for c in cells):
        raise ValueError(f"cells must be distinct values in 0..{grid * grid - 1}, got {list(cells)}")
    im = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(im)
    cell = size / grid
    r = 0.42 * cell
    for c, s, pos in zip(colours, shapes, cells):
        row, col = divmod(int(pos), grid)
        draw_shape(draw, (col + 0.5) * cell, (row + 0.5) * cell, r, int(s), int(c))
    return im


def noise_image(rng: np.random.Generator, size: int = 224) -> Image.Image:
    """Uniform RGB noise (the noise control's source images: no task information)."""
    return Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8), "RGB")
