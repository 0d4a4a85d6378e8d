"""An activation store that streams to disk: for caches that do not fit in memory.

Each forward batch becomes one safetensors shard (written atomically) holding the
requested hook points ``[batch, pos, ...]`` plus the batch's ``modality`` and
``attention_mask`` ``[batch, pos]``; ``index.json`` lists the finished shards, so an
interrupted collection resumes after the last complete shard. Reading is lazy: shards
are memory-mapped and sliced (``safetensors.safe_open``), so a reduction over a store
(a mean over image positions, one layer for a probe) never holds the whole cache.

    store = ActivationStore.create("runs/acts", names, meta={...})
    collect_to_store(vlm, batches, store)              # resumable
    img = store.reduce("blocks.9.hook_resid_post", "image")   # [rows, d_model]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from interp.io import read_json, save_tensors, write_json
from interp.sequence import Batch, Modality


@dataclass
class ActivationStore:
    root: Path
    names: list[str]
    shards: list[dict[str, Any]] = field(default_factory=list)  # {"file", "rows", "pos"}
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, root: str | Path, names: Sequence[str], meta: dict[str, Any] | None = None) -> "ActivationStore":
        """A new store, or the existing one at ``root`` if it was made for the same names and meta
        (to resume); a store made for something else raises instead of mixing the two."""
        root = Path(root)
        if (root / "index.json").exists():
            store = cls.open(root)
            if store.names != list(names) or store.meta != (meta or {}):
                raise ValueError(f"{root} holds a store for other hook points or settings "
                                 f"({store.names[:3]}..., meta {store.meta}); use another directory")
            return store
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root, list(names), [], dict(meta or {}))
        store._write_index()
        return store

    @classmethod
    def open(cls, root: str | Path) -> "ActivationStore":
        root = Path(root)
        if not (root / "index.json").exists():
            raise FileNotFoundError(f"no activation store at {root} (index.json missing)")
        idx = read_json(root / "index.json")
        return cls(root, idx["names"], idx["shards"], idx.get("meta", {}))

    def _write_index(self) -> None:
        write_json(self.root / "index.json", {"names": self.names, "shards": self.shards, "meta": self.meta})

    # -------------------------------------------------------------- writing
    def append(self, acts: dict[str, torch.Tensor], batch: Batch) -> None:
        """Write one shard: every stored name ``[batch, pos, ...]`` plus the batch's labels."""
        missing = [n for n in self.names if n not in acts]
        if missing:
            raise KeyError(f"activations missing for {missing[:3]}")
        file = f"shard_{len(self.shards):05d}.safetensors"
        tensors = {n: acts[n].detach().cpu().contiguous() for n in self.names}
        tensors["modality"] = batch.modality.cpu()
        tensors["attention_mask"] = batch.attention_mask.cpu()
        save_tensors(self.root / file, tensors)
        self.shards.append({"file": file, "rows": len(batch), "pos": batch.shape[1]})
        self._write_index()  # the shard exists before the index names it: a crash loses at most it

    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.shards)

    def nbytes(self) -> int:
        return sum((self.root / s["file"]).stat().st_size for s in self.shards)

    # -------------------------------------------------------------- reading
    def iter_shards(self, name: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(activation ``[rows, pos, ...]``, modality ``[rows, pos]``) per shard, memory-mapped."""

        if name not in self.names:
            raise KeyError(f"{name!r} is not in this store; stored: {self.names}")
        for s in self.shards:
            with safe_open(str(self.root / s["file"]), framework="pt") as f:
                yield f.get_tensor(name), f.get_tensor("modality")

    def reduce(self, name: str, modality: Modality | str | None = None, how: str = "mean") -> torch.Tensor:
        """``[rows, ...]``: per row, the mean over the positions of ``modality`` (``how='mean'``)
        or the last such position (``how='last'``); one shard in memory at a time."""
        out = []
        for act, mod in self.iter_shards(name):
            m = Modality[modality.upper()] if isinstance(modality, str) else modality
            mask = mod == int(m) if m is not None else mod != int(Modality.PAD)
            if how == "mean":
                w = mask.to(act.dtype).view(*mask.shape, *([1] * (act.ndim - 2)))
                out.append((act * w).sum(1) / w.sum(1).clamp(min=1))
            elif how == "last":
                pos = torch.arange(mask.shape[1]).expand_as(mask)
                idx = torch.where(mask, pos, -1).max(1).values
                out.append(act[torch.arange(act.shape[0]), idx])
            else:
                raise ValueError(f"how={how!r}: use 'mean' or 'last'")
        return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def collect_to_store(vlm, batches: Iterable[tuple[Batch, torch.Tensor | None]], store: ActivationStore,
                     progress: bool = True, total: int | None = None) -> ActivationStore:
    """Run each (batch, features) and append the store's hook points; batches already stored
    (by count) are skipped, so an interrupted collection resumes."""

    done = len(store.shards)
    for i, (batch, feats) in enumerate(tqdm(batches, total=total, desc="activations", disable=not progress)):
        if i < done:
            continue
        _, cache = vlm.run_with_cache(batch, feats, names=store.names, logits_at=None, device="cpu")
        store.append(dict(cache), batch)
    return store
