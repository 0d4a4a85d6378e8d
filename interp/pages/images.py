"""Small image thumbnails as ``data:`` URIs, so a page carries its images inside it."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image


def thumbnail_uri(path: str | Path, size: int = 96, quality: int = 85) -> str | None:
    """A JPEG thumbnail (longest side ``size`` px; transparency flattened on white) of the image
    at ``path`` as a ``data:image/jpeg;base64,...`` URI; None when the file is missing or does
    not decode (the page shows a placeholder)."""
    try:
        with Image.open(path) as im:
            im.load()
            rgba = im.convert("RGBA")
    except (OSError, ValueError):
        return None
    rgba.thumbnail((size, size), Image.Resampling.LANCZOS)
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    buf = io.BytesIO()
    flat.save(buf, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
