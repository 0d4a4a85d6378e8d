"""Training one SAE with the maintained library's sparse coder (EleutherAI ``sparsify``:
``SparseCoder``, its fused TopK encoder, FVU and AuxK losses, decoder-norm constraint) over
activations held in memory. ``sparsify``'s own ``Trainer`` drives a Hugging Face model over a
tokenized dataset, so the loop here is ours: seeded shuffles per epoch, Adam, and one
safetensors checkpoint per epoch (weights, optimizer moments, dead-latent counters) from
which an interrupted run resumes to the same weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from sparsify import SparseCoder, SparseCoderConfig
from tqdm.auto import tqdm

from interp.io import load_tensors, save_tensors, stable_hash
from interp.studies.sae.config import SaeTrainConfig

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class TrainResult:
    coder: Any                      # sparsify.SparseCoder
    epochs_done: int
    step_fvu: list[float] = field(default_factory=list)   # per step, over all epochs
    epoch_fvu: list[float] = field(default_factory=list)  # mean per epoch
    tokens_seen: int = 0
    seconds: float = 0.0
    resumed_from: int = 0


def new_coder(d_in: int, cfg: SaeTrainConfig, mean: torch.Tensor | None = None) -> SparseCoder:
    """A seeded ``sparsify.SparseCoder`` (TopK, unit-norm decoder rows); ``b_dec`` starts at the
    data mean ``[d_in]`` when given."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        coder = SparseCoder(d_in, SparseCoderConfig(activation="topk", num_latents=cfg.latents(d_in), k=cfg.k,
                                                    normalize_decoder=True))
    if mean is not None:
        coder.b_dec.data.copy_(mean.to(coder.b_dec.dtype))
    return coder


def _flat_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors = {f"opt.{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items() if torch.is_tensor(v)}
    return tensors, {"param_groups": sd["param_groups"]}


def _unflat_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def train_key(cfg: SaeTrainConfig, x: torch.Tensor) -> str:
    """What a checkpoint must match to be resumed: the train config and the data's shape/sum
    (``sequences`` left out at its default "all", so SAEs trained before it existed keep their key)."""
    d = asdict(cfg)
    if d["sequences"] == "all":
        del d["sequences"]
    return stable_hash({"cfg": d, "shape": list(x.shape), "sum": round(float(x.double().sum()), 3)})


def save_checkpoint(path: Path, coder: SparseCoder, opt: torch.optim.Optimizer, since_fired: torch.Tensor,
                    meta: dict[str, Any]) -> None:
    opt_t, opt_meta = _flat_optimizer(opt)
    tensors = {f"sae.{k}": v for k, v in coder.state_dict().items()} | opt_t | {"since_fired": since_fired}
    save_tensors(path, tensors, {**meta, **opt_meta})


def train_sae(x: torch.Tensor, cfg: SaeTrainConfig, ckpt_dir: str | Path | None = None, *,
              stop_after_epochs: int | None = None, progress: bool = False) -> TrainResult:
    """Train a TopK SAE on ``x [n_tokens, d_in]`` (float). With ``ckpt_dir``, a checkpoint is
    written after every epoch and a matching one is resumed. ``stop_after_epochs`` ends early
    (as an interruption would: tests)."""
    x = x.float()
    n, d_in = x.shape
    if n < 1:
        raise ValueError("no activation to train the SAE on")
    coder = new_coder(d_in, cfg, mean=x.mean(0))
    opt = torch.optim.Adam(coder.parameters(), lr=cfg.lr)
    since_fired = torch.zeros(coder.num_latents, dtype=torch.long)
    key = train_key(cfg, x)
    result = TrainResult(coder, 0)
    path = Path(ckpt_dir) / CHECKPOINT if ckpt_dir is not None else None
    if path is not None and path.exists():
        t, meta = load_tensors(path)
        if meta.get("key") == key:
            coder.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("sae.")})
            _unflat_optimizer(opt, t, meta)
            since_fired = t["since_fired"].long()
            result.epochs_done = result.resumed_from = int(meta["epoch"])
            result.step_fvu, result.epoch_fvu = list(meta["step_fvu"]), list(meta["epoch_fvu"])
            result.tokens_seen = int(meta["tokens_seen"])
    start = time.perf_counter()
    steps = math.ceil(n / cfg.batch_size)
    last = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
    for epoch in tqdm(range(result.epochs_done, last), desc="sae epochs", disable=not progress):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
        fvus = []
        for s in range(steps):
            xb = x[order[s * cfg.batch_size:(s + 1) * cfg.batch_size]]
            dead = since_fired > cfg.dead_after_tokens
            out = coder(xb, dead_mask=dead if cfg.auxk_alpha > 0 else None)
            loss = out.fvu + cfg.auxk_alpha * out.auxk_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            coder.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            coder.set_decoder_norm_to_unit_norm()
            fired = torch.zeros(coder.num_latents, dtype=torch.bool)
            fired[out.latent_indices[out.latent_acts > 0].flatten()] = True
            since_fired += len(xb)
            since_fired[fired] = 0
            fvus.append(float(out.fvu.detach()))
            result.tokens_seen += len(xb)
        result.step_fvu += fvus
        result.epoch_fvu.append(sum(fvus) / len(fvus))
        result.epochs_done = epoch + 1
        if path is not None:
            save_checkpoint(path, coder, opt, since_fired,
                            {"key": key, "epoch": epoch + 1, "step_fvu": result.step_fvu,
                             "epoch_fvu": result.epoch_fvu, "tokens_seen": result.tokens_seen})
    result.seconds = time.perf_counter() - start
    return result
