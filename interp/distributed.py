"""Process groups for ``torchrun`` and rank-aware writes.

One entry point serves one process and many: under ``torchrun`` (which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...) :func:`setup` starts the default
process group (``nccl`` on CUDA, ``gloo`` on CPU) and pins each rank to its GPU;
without it, everything is a no-op and :func:`current` reports a world of one.

Only rank 0 writes results and checkpoints (:func:`is_main`, :func:`on_main`); every
rank reads them, so a run folder must be on a filesystem all ranks share (as on any
SLURM cluster). Nothing here keeps global state beyond ``torch.distributed``'s own.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
BACKENDS = ("gloo", "nccl")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer (torchrun sets it)") from None


def launched() -> DistInfo:
    """What the launcher asked for (env vars), whether or not a group is running yet."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} must be in 0..{world - 1} (WORLD_SIZE={world})")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def current() -> DistInfo:
    """This process's place in the running process group (a world of one if none)."""
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        return DistInfo(rank=rank, world_size=world, local_rank=_env_int("LOCAL_RANK", rank),
                        backend=str(dist.get_backend()))
    return DistInfo()


def default_backend(device: str | torch.device) -> str:
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def setup(device: str | torch.device = "cpu", *, backend: str | None = None, timeout_minutes: float = 60.0) -> DistInfo:
    """Start the process group if launched by ``torchrun`` with ``WORLD_SIZE > 1``.

    ``device``: the run's device type (``"cuda"`` pins rank ``r`` to ``cuda:LOCAL_RANK``).
    ``timeout_minutes``: how long a collective (e.g. the barrier while rank 0 caches
    features) may wait. Idempotent; returns :func:`current`.
    """
    info = launched()
    if not info.enabled or (dist.is_available() and dist.is_initialized()):
        return current()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = backend or default_backend(device)
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: valid backends are {list(BACKENDS)}")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise RuntimeError("backend 'nccl' needs CUDA; use device='cpu' (gloo) on a machine without GPUs")
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return current()


def teardown() -> None:
    """End the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: str | torch.device, info: DistInfo | None = None) -> torch.device:
    """The device of this rank: ``"cuda"`` -> ``cuda:LOCAL_RANK`` under torchrun; else unchanged."""
    dev = torch.device(device)
    info = info or current()
    if dev.type == "cuda" and dev.index is None and info.enabled:
        return torch.device("cuda", info.local_rank)
    return dev


def is_main(info: DistInfo | None = None) -> bool:
    return (info or current()).is_main


def on_main(fn: Callable[..., T], *args: Any, info: DistInfo | None = None, **kwargs: Any) -> T | None:
    """Call ``fn`` on rank 0 only (e.g. an atomic write); other ranks get None."""
    return fn(*args, **kwargs) if is_main(info) else None


def barrier(info: DistInfo | None = None) -> None:
    info = info or current()
    if info.enabled:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo | None = None) -> torch.Tensor:
    """Sum of ``t`` over ranks (a new tensor; ``t`` itself unchanged)."""
    info = info or current()
    if not info.enabled:
        return t.clone()
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def shard(items: Sequence[T], info: DistInfo | None = None) -> list[T]:
    """This rank's share of ``items`` (strided: rank ``r`` takes ``r, r+W, r+2W...``)."""
    info = info or current()
    return list(items[info.rank::info.world_size])


def shard_lm(lm, info: DistInfo | None = None, *, reshard_after_forward: bool = True) -> float:
    """Shard a frozen LM's decoder blocks across ranks with FSDP2 (``fully_shard``), for an LM
    that does not fit on one device. Returns the fraction of block parameters this rank holds.

    Each block's weights are all-gathered for its forward (and again for the backward that
    carries gradients to the projector) and freed after; embeddings, final norm and
    unembedding stay replicated (they are small next to the blocks and read directly).
    Every rank must then run the same forward passes (training does; so does evaluation
    when every rank calls it). ``lm``: a :class:`interp.models.hooked.HookedLM`. A world of
    one leaves the LM untouched (returns 1.0).
    """
    info = info or current()
    blocks = lm.hf.model.layers
    total = sum(p.numel() for p in blocks.parameters())
    if not info.enabled:
        return 1.0
    from torch.distributed.fsdp import fully_shard  # deferred: only multi-process runs need FSDP

    for block in blocks:
        fully_shard(block, reshard_after_forward=reshard_after_forward)
    local = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in blocks.parameters())
    return local / total


def main_first(fn: Callable[[], T], info: DistInfo | None = None) -> T:
    """Run ``fn`` on rank 0, then on the other ranks (e.g. building a cache once)."""
    info = info or current()
    if info.is_main:
        out = fn()
        barrier(info)
        return out
    barrier(info)
    return fn()
