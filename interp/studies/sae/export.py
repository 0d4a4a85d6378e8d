"""Trained SAEs in SAELens's on-disk format, and a loader that reads them back.

A folder holds ``cfg.json`` (SAELens keys: ``architecture`` "topk" with ``k``, ``d_in``,
``d_sae``, ``hook_name`` ... flat as SAELens <= 5 wrote them, and again under ``metadata``
as SAELens 6 does) and ``sae_weights.safetensors`` with ``W_enc [d_in, d_sae]``,
``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]``. The encoding is SAELens's
TopK one: ``z = scatter(topk(relu((x - b_dec) W_enc + b_enc), k))``, the same as the
``sparsify`` coder that trained it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from einops import einsum
from safetensors.torch import load_file

from interp.io import read_json, save_tensors, write_json

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
WEIGHT_KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")


@dataclass
class SaeLensSAE:
    """An SAE in SAELens's parametrisation (weights as stored, no training state)."""

    W_enc: torch.Tensor  # [d_in, d_sae]
    b_enc: torch.Tensor  # [d_sae]
    W_dec: torch.Tensor  # [d_sae, d_in]
    b_dec: torch.Tensor  # [d_in]
    k: int
    apply_b_dec_to_input: bool = True

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    def encode_topk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [..., d_in]`` -> (values ``[..., k]`` (>= 0), latent indices ``[..., k]``)."""
        x = x.to(self.W_enc.dtype)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        pre = torch.relu(x @ self.W_enc + self.b_enc)
        vals, idx = pre.topk(self.k, dim=-1)
        return vals, idx

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., d_in]`` -> dense latent activations ``[..., d_sae]`` (k nonzero at most)."""
        vals, idx = self.encode_topk(x)
        return torch.zeros(*x.shape[:-1], self.d_sae, dtype=vals.dtype, device=vals.device).scatter(-1, idx, vals)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z [..., d_sae]`` -> ``[..., d_in]``."""
        return z @ self.W_dec + self.b_dec

    def decode_topk(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(values, indices ``[..., k]``) -> ``[..., d_in]``, without the dense code."""
        return einsum(vals, self.W_dec[idx], "... k, ... k d -> ... d") + self.b_dec

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., d_in]`` -> the SAE's reconstruction ``[..., d_in]`` (in x's dtype)."""
        return self.decode_topk(*self.encode_topk(x)).to(x.dtype)


def from_sparse_coder(coder) -> SaeLensSAE:
    """A ``sparsify.SparseCoder`` (encoder ``Linear(d_in, d_sae)``, ``W_dec [d_sae, d_in]``) in
    SAELens's parametrisation (copies, detached)."""
    if coder.cfg.activation != "topk" or coder.cfg.transcode or coder.W_skip is not None:
        raise ValueError("only plain TopK sparse autoencoders export to SAELens's 'topk' architecture")
    return SaeLensSAE(W_enc=coder.encoder.weight.detach().T.clone().contiguous(),
                      b_enc=coder.encoder.bias.detach().clone(), W_dec=coder.W_dec.detach().clone(),
                      b_dec=coder.b_dec.detach().clone(), k=int(coder.cfg.k))


def hook_layer(hook_name: str) -> int:
    m = re.match(r"blocks\.(\d+)\.", hook_name)
    return int(m.group(1)) if m else -1


def saelens_cfg(sae: SaeLensSAE, *, hook_name: str, model_name: str, context_size: int,
                dataset_path: str = "", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``cfg.json`` of an SAE: SAELens's flat keys plus its 6.x ``metadata`` block."""
    meta = {"model_name": model_name, "hook_name": hook_name, "hook_layer": hook_layer(hook_name),
            "hook_head_index": None, "context_size": context_size, "prepend_bos": True,
            "dataset_path": dataset_path, "model_from_pretrained_kwargs": {}, "sae_lens_training_version": None}
    return {"architecture": "topk", "d_in": sae.d_in, "d_sae": sae.d_sae, "k": sae.k,
            "activation_fn_str": "topk", "activation_fn_kwargs": {"k": sae.k},
            "dtype": str(sae.W_enc.dtype).removeprefix("torch."), "device": "cpu",
            "apply_b_dec_to_input": sae.apply_b_dec_to_input, "normalize_activations": "none",
            "finetuning_scaling_factor": False, "reshape_activations": "none",
            **meta, "metadata": meta, **(extra or {})}


def export_saelens(sae: SaeLensSAE, folder: str | Path, *, hook_name: str, model_name: str, context_size: int,
                   dataset_path: str = "", extra: dict[str, Any] | None = None) -> Path:
    """Write ``folder/cfg.json`` and ``folder/sae_weights.safetensors``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / WEIGHTS_FILE, {k: getattr(sae, k) for k in WEIGHT_KEYS})
    write_json(folder / CFG_FILE, saelens_cfg(sae, hook_name=hook_name, model_name=model_name,
                                             context_size=context_size, dataset_path=dataset_path, extra=extra))
    return folder


def load_saelens(folder: str | Path) -> tuple[SaeLensSAE, dict[str, Any]]:
    """(the SAE, its cfg dict) from a SAELens-format folder with a "topk" architecture."""
    folder = Path(folder)
    if not (folder / CFG_FILE).exists() or not (folder / WEIGHTS_FILE).exists():
        raise FileNotFoundError(f"{folder} is not a SAELens SAE folder ({CFG_FILE} and {WEIGHTS_FILE} expected)")
    cfg = read_json(folder / CFG_FILE)
    if cfg.get("architecture") != "topk":
        raise ValueError(f"{folder}: architecture {cfg.get('architecture')!r}; this loader reads 'topk' SAEs")
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    w = load_file(str(folder / WEIGHTS_FILE))
    missing = [key for key in WEIGHT_KEYS if key not in w]
    if missing or k is None:
        raise ValueError(f"{folder}: missing {missing or 'k'} in the SAE")
    sae = SaeLensSAE(**{key: w[key] for key in WEIGHT_KEYS}, k=int(k),
                     apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)))
    if (sae.d_in, sae.d_sae) != (cfg["d_in"], cfg["d_sae"]) or sae.W_dec.shape != (sae.d_sae, sae.d_in):
        raise ValueError(f"{folder}: weight shapes {tuple(sae.W_enc.shape)} / {tuple(sae.W_dec.shape)} do not match "
                         f"d_in={cfg['d_in']}, d_sae={cfg['d_sae']}")
    return sae, cfg
