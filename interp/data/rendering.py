"""Rendering a source drawing (PNG or SVG) as one image of the embedded set: ``IMAGE_SIZE``
square RGB on white, the drawing cropped to its content and fitted into the central
``CONTENT_SIZE`` square."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from interp.io import sha256_file

IMAGE_SIZE = 128
CONTENT_SIZE = 112


def fit_drawing(im, size: int = IMAGE_SIZE, content: int = CONTENT_SIZE):
    """RGBA drawing -> RGB ``size`` square on white: cropped to its content (alpha), fitted
    into ``content`` keeping the aspect ratio, centred."""

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

    path = Path(path)
    if path.suffix.lower() == ".svg":
        import cairosvg  # deferred: needs the system libcairo; only SVG sources need it

        png = cairosvg.svg2png(url=str(path), output_width=2 * CONTENT_SIZE, output_height=2 * CONTENT_SIZE)
        im = Image.open(io.BytesIO(png))
    else:
        im = Image.open(path)
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
    return fit_drawing(im)


def render_job(job: tuple[str, str]) -> str:
    src, dst = job
    im = render(Path(src))
    im.save(dst, format="PNG", optimize=False, compress_level=6)
    return sha256_file(dst)
