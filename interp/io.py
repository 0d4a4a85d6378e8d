"""Atomic file writes and run provenance.

A result or checkpoint is either the old file or the complete new one, never a half
written file: we write to a temporary file in the same folder and ``os.replace`` it.
Nothing here unpickles: tensors go to safetensors, configs and metadata to JSON.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import platform
import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from interp.cachecheck import read_header, safetensors_problem, tensor_digests
from interp.cachecheck import sha256_file  # noqa: F401  (re-exported: callers hash files through interp.io)

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(path: str | Path, rows: Iterable[dict], columns: Sequence[str] | None = None) -> None:
    """Write dict rows as a CSV table, atomically. ``columns``: the header (keys outside it
    are dropped, missing cells left empty; written even without rows); default: every key
    in first-seen order (nothing is written without rows)."""
    rows = list(rows)
    if columns is None:
        if not rows:
            return
        columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", restval="")
        w.writeheader()
        w.writerows(rows)


_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(nan|inf)")


def parse_cell(text: str) -> int | float | str:
    """A CSV cell as Python wrote it: an int, a float (``nan``/``inf`` included), else the text."""
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def read_csv(path: str | Path, types: Mapping[str, Callable[[str], Any]] | None = None) -> list[dict]:
    """Read a CSV table as dict rows. ``types``: a converter per column (other columns and
    empty cells stay text); default: every cell through :func:`parse_cell`."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if types is None:
        return [{k: parse_cell(v) for k, v in r.items()} for r in rows]
    return [{k: (types[k](v) if k in types and v != "" else v) for k, v in r.items()} for r in rows]


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> None:
    """Save tensors as safetensors, atomically; ``meta`` is stored as JSON in the header, beside
    the sha256 of every tensor's bytes (checked by :func:`load_tensors`)."""
    header = {"interp": json.dumps(meta or {}, sort_keys=True, default=str),
              "interp_sha256": json.dumps(tensor_digests(tensors), sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=header)


class NotSafetensorsError(ValueError):
    """A file handed to us as weights or a cache is not a readable safetensors file."""


class CorruptFileError(ValueError):
    """A safetensors file whose bytes differ from what was written (truncated or edited)."""


def _kind_of(path: Path) -> str:
    """What an unreadable weights file looks like, from its first bytes (for the message)."""
    head = path.read_bytes()[:4] if path.is_file() else b""
    if head[:1] == b"\x80":
        return "it looks like a Python pickle"
    if head[:2] == b"PK":
        return "it looks like a torch.save zip archive (pickle inside)"
    return "its header does not parse"


def header_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file's header (no tensor is read). A file that is
    not safetensors fails with :class:`NotSafetensorsError` naming it; nothing in it is ever
    unpickled."""

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise NotSafetensorsError(f"{path} is not a safetensors file ({_kind_of(path)}: {e}); only safetensors "
                                  f"are read, pickles are refused") from None


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``interp`` metadata of a file written by :func:`save_tensors`, from its header only
    (see :func:`header_metadata`)."""
    return json.loads(header_metadata(path).get("interp", "{}"))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a file written by :func:`save_tensors`: (tensors, meta); see :func:`read_meta`.
    A truncated file, or one whose tensors differ from the digests recorded when it was
    written, fails with :class:`CorruptFileError` naming the file (files written before the
    digests were recorded are checked for structure only)."""
    path = Path(path)
    problem = safetensors_problem(path)
    if problem and read_header(path) is not None:  # a header that parses, over the wrong bytes
        raise CorruptFileError(problem)
    header = header_metadata(path)  # anything else that is not safetensors: NotSafetensorsError
    meta, recorded = json.loads(header.get("interp", "{}")), json.loads(header.get("interp_sha256", "{}"))
    tensors = load_file(str(path))
    if recorded:
        found = tensor_digests(tensors)
        bad = sorted(k for k in set(recorded) | set(found) if recorded.get(k) != found.get(k))
        if bad:
            raise CorruptFileError(f"{path}: tensor {bad[0]!r} differs from the one written (the file was edited "
                                   "or damaged)")
    return tensors, meta


def load_valid_tensor(path: str | Path, want: Mapping[str, Any], dims: Sequence[int | None], *, what: str,
                      name: str = "features") -> torch.Tensor | None:
    """The one cache validator: tensor ``name`` of a cache file written by :func:`save_tensors`
    (its metadata holding ``shape``), as float32, when the file reads (structure and digests,
    :func:`load_tensors`), every ``want`` key equals the stored metadata, its shape is the
    recorded one and matches ``dims`` (None = any size; one entry per dimension), and its values
    are finite. Otherwise None, after one warning naming ``what``, the file and why: the caller
    recomputes and overwrites it."""
    try:
        tensors, meta = load_tensors(path)
        t = tensors[name]
    except Exception as e:  # truncated, edited, not safetensors, or no such tensor
        log.warning("%s %s is unreadable (%s): recomputing", what, path, e)
        return None
    for key, value in want.items():
        if meta.get(key) != value:
            log.warning("%s %s is stale (%s differs): recomputing", what, path, key)
            return None
    fits = t.ndim == len(dims) and all(d is None or n == d for n, d in zip(t.shape, dims))
    if list(t.shape) != meta.get("shape") or not fits or not torch.isfinite(t).all():
        log.warning("%s %s is corrupt (shape or non-finite values): recomputing", what, path)
        return None
    return t.float()


def stable_hash(obj: Any, n: int = 16) -> str:
    """A short hash of a JSON-serialisable object (sorted keys), for cache and run keys."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


_TRACKED = ("torch", "transformers", "transformer-lens", "nnsight", "numpy", "scikit-learn", "einops", "safetensors")


def code_hash() -> str:
    """sha256 (16 hex) over the source of the ``interp`` package (every ``.py`` and ``.json`` file,
    by relative path): two results with the same hash came from the same code."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".json") and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def environment() -> dict[str, Any]:
    """Versions of Python and of the packages a result depends on, the CPU, the thread count
    and a hash of the toolkit's own source (:func:`code_hash`).

    ``cpu_capability`` is the instruction set torch's CPU kernels dispatch to (``AVX512``,
    ``AVX2``, ...): float results are bit-identical only between machines that share it (a
    softmax or a norm sums in another order on AVX2 than on AVX512), so a number that does not
    reproduce to the digit on another machine is first checked here (docs/training.md)."""
    versions = {}
    for name in _TRACKED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "processor": platform.processor() or platform.machine(), "cpu_model": _cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads(),
            "interp_code": code_hash()}


def _cpu_model() -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return None
