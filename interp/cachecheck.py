"""Cache files that verify themselves: size and sha256 recorded when written, checked when read.

Two kinds of cache use it:

- folders written by another library (the dequantized embedded LMs, written by HF
  ``save_pretrained``): :func:`record_folder` lists every file's size, sha256 and mtime in the
  folder's manifest, and :func:`folder_problems` checks them on every load. Sizes are always
  checked; a file's sha256 is recomputed when its mtime differs from the recorded one (an edit)
  or when ``full=True`` (``python -m interp.models --verify``), so a normal load does not hash a
  gigabyte;
- safetensors files written by :func:`interp.io.save_tensors`, which stores the sha256 of every
  tensor's bytes in the file's own header; :func:`tensor_digests` computes them and
  :func:`interp.io.load_tensors` compares them.

:func:`safetensors_problem` checks the structure of any safetensors file from its header alone:
the header parses and the file is exactly as long as the tensors it declares (a truncated file
is named, not reported as ``incomplete metadata``).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import torch


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 (hex) of a tensor's bytes in memory order, with its dtype and shape."""
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def tensor_digests(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """``{name: tensor_digest}`` for a dict of tensors."""
    return {k: tensor_digest(v) for k, v in sorted(tensors.items())}


def file_record(path: Path) -> dict:
    """``{"size", "sha256", "mtime_ns"}`` of one file."""
    st = path.stat()
    return {"size": st.st_size, "sha256": sha256_file(path), "mtime_ns": st.st_mtime_ns}


def record_folder(folder: Path, exclude: tuple[str, ...] = ()) -> dict[str, dict]:
    """:func:`file_record` of every regular file under ``folder`` (relative POSIX paths as keys)."""
    return {p.relative_to(folder).as_posix(): file_record(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in exclude}


def folder_problems(folder: Path, files: dict[str, dict], *, full: bool = False) -> list[str]:
    """What is wrong with ``folder`` against its records (``[]`` when intact); each problem names
    the file. ``full``: hash every file, not only those whose mtime changed."""
    problems = []
    for name, rec in files.items():
        p = folder / name
        if not p.is_file():
            problems.append(f"{p} is missing")
            continue
        st = p.stat()
        if st.st_size != rec["size"]:
            problems.append(f"{p} has {st.st_size} bytes, {rec['size']} were written (truncated or edited)")
        elif (full or st.st_mtime_ns != rec.get("mtime_ns")) and sha256_file(p) != rec["sha256"]:
            problems.append(f"{p} was edited (its sha256 differs from the one recorded when it was written)")
    return problems


def read_header(path: Path) -> dict | None:
    """The JSON header of a safetensors file (tensor entries and ``__metadata__``), or ``None``
    when the file is too short or its header does not parse. Reads the header bytes only."""
    parsed = _header(Path(path))
    return None if parsed is None else parsed[1]


def _header(path: Path) -> tuple[int, dict] | None:
    """(header length, header) of a safetensors file, or ``None`` when it does not parse."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return None
            (n,) = struct.unpack("<Q", head)
            if n > max(path.stat().st_size - 8, 0) or n > 100_000_000:
                return None
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return None
    return (n, header) if isinstance(header, dict) else None


def safetensors_problem(path: Path) -> str | None:
    """``None`` when ``path`` is a structurally whole safetensors file (its header parses and the
    file holds exactly the bytes the header declares), else what is wrong, naming the file."""
    path = Path(path)
    parsed = _header(path)
    if parsed is None:
        return f"{path}: no safetensors header parses (truncated, or not a safetensors file)"
    n, header = parsed
    size = path.stat().st_size
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    want = 8 + n + max(ends, default=0)
    if size != want:
        return f"{path} has {size} bytes, its header declares {want} (truncated or edited)"
    return None
