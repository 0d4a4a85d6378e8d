"""Class features of a frozen LM (study-agnostic): the residual at the last token of a class
prompt ("A photo of a robin"), at every layer in one pass (``[layers, n_classes, d_model]``),
cached once as content-hashed safetensors; pooled image features.

- :func:`class_prompts`, :func:`lm_class_features`, :func:`cached_lm_class_features`,
  :func:`pool_image_features`.

The visual-alignment study (``interp.studies.alignment``) trains a contrastive head on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from interp.data.taxonomy import display_name
from interp.io import load_valid_tensor, save_tensors, stable_hash
from interp.sequence import Modality, Segment, build_batch


DEFAULT_TEMPLATE = "A photo of {phrase}"



POOLS = ("last", "mean")



FEATURE_FORMAT = 1



# ------------------------------------------------------------------ prompts
def class_prompts(classes: Sequence[str], phrase, template: str = DEFAULT_TEMPLATE) -> list[str]:
    """One prompt per class: ``template`` with ``{phrase}`` (the class with its article, from
    ``phrase(name)``, e.g. the taxonomy's ``phrase``: "a robin", "an apple", "bacon") and/or
    ``{name}`` (the bare display name) filled in."""
    if "{phrase}" not in template and "{name}" not in template:
        raise ValueError(f"prompt template {template!r} has neither {{phrase}} nor {{name}}: "
                         "e.g. 'A photo of {phrase}'")
    return [template.format(phrase=phrase(c), name=display_name(c)) for c in classes]



# -------------------------------------------------------------- LM features
@torch.no_grad()
def lm_class_features(lm, prompts: Sequence[str], *, pool: str = "last", batch_size: int = 64,
                      progress: bool = False) -> torch.Tensor:
    """Residual stream of every block for every prompt, in one forward pass per batch.

    Each prompt runs as [BOS, prompt tokens] through ``lm`` (a :class:`HookedLM`).
    ``pool="last"``: the residual at the last prompt token; ``"mean"``: the mean over the
    prompt tokens (BOS excluded).

    Returns:
        ``[n_layers, n_prompts, d_model]`` float32 on the CPU; row ``i`` is
        ``blocks.{i}.hook_resid_post``.
    """

    if pool not in POOLS:
        raise ValueError(f"pool {pool!r}: valid values are {list(POOLS)}")
    if not prompts:
        raise ValueError("no prompts: pass at least one class prompt")
    out = torch.empty(lm.n_layers, len(prompts), lm.d_model)
    for s in tqdm(range(0, len(prompts), batch_size), desc=f"LM features {lm.name}", disable=not progress):
        chunk = list(prompts[s:s + batch_size])
        batch = build_batch(lm.tokenizer, [[Segment("bos"), Segment("text", p)] for p in chunk], 0).to(lm.device)
        text = batch.mask(Modality.TEXT).to(lm.dtype)  # [b, pos]
        last = batch.last(Modality.TEXT)
        rows = torch.arange(len(chunk), device=lm.device)

        def grab(layer: int, t: torch.Tensor, _s: int = s, _n: int = len(chunk)) -> None:
            v = t[rows, last] if pool == "last" else (t * text[..., None]).sum(1) / text.sum(1, keepdim=True)
            out[layer, _s:_s + _n] = v.float().cpu()

        hooks = [(f"blocks.{i}.hook_resid_post", _layer_hook(i, grab)) for i in range(lm.n_layers)]
        lm(lm.embed_tokens(batch.input_ids), batch.attention_mask, fwd_hooks=hooks)
    if not torch.isfinite(out).all():
        raise FloatingPointError(f"non-finite LM features from {lm.name}")
    return out



def _layer_hook(layer: int, grab):
    """A read-only hook passing ``(layer, tensor)`` to ``grab``."""

    def fn(t: torch.Tensor, hook) -> None:
        grab(layer, t)

    return fn



def feature_cache_key(lm_tag: str, prompts: Sequence[str], pool: str, dtype: str = "float32") -> str:
    """Content hash of what a cached LM feature file depends on."""
    return stable_hash({"format": FEATURE_FORMAT, "lm": lm_tag, "prompts": list(prompts), "pool": pool,
                        "dtype": dtype}, n=24)



def feature_cache_path(cache_dir: Path, lm_tag: str, prompts: Sequence[str], pool: str,
                       dtype: str = "float32") -> Path:
    safe = lm_tag.replace("/", "__").replace("+", "_")
    return Path(cache_dir) / safe / f"{feature_cache_key(lm_tag, prompts, pool, dtype)}.safetensors"



def load_cached_features(path: Path, lm_tag: str, prompts: Sequence[str], pool: str) -> torch.Tensor | None:
    """The cached ``[layers, n, d]`` features at ``path`` if valid (same LM, prompts, pool,
    finite), else None (a stale or corrupt file is logged and ignored)."""
    path = Path(path)
    if not path.exists():
        return None
    return load_valid_tensor(path, {"lm": lm_tag, "prompts": list(prompts), "pool": pool}, (None, len(prompts), None),
                             what="LM feature cache")



def cached_lm_class_features(lm, prompts: Sequence[str], *, cache_dir: Path, pool: str = "last",
                             batch_size: int = 64, progress: bool = False,
                             tag: str | None = None) -> tuple[torch.Tensor, Path]:
    """:func:`lm_class_features`, stored once per (LM tag, prompts, pool, dtype) as
    safetensors under ``cache_dir``; ``tag`` names the weights (default ``lm.name``, which
    carries the random-init seed). Returns (features ``[layers, n, d]``, path)."""
    tag = tag or lm.name
    dtype = str(lm.dtype).removeprefix("torch.")
    path = feature_cache_path(cache_dir, tag, prompts, pool, dtype)
    feats = load_cached_features(path, tag, prompts, pool)
    if feats is None:
        feats = lm_class_features(lm, prompts, pool=pool, batch_size=batch_size, progress=progress)
        save_tensors(path, {"features": feats}, {"format": FEATURE_FORMAT, "lm": tag, "prompts": list(prompts),
                                                 "pool": pool, "dtype": dtype, "shape": list(feats.shape)})
    return feats, path



def pool_image_features(features: torch.Tensor) -> torch.Tensor:
    """Mean over encoder tokens: ``[n_images, tokens, d_img] -> [n_images, d_img]`` (2-D input
    is returned as float32)."""
    if features.ndim == 2:
        return features.float()
    if features.ndim != 3:
        raise ValueError(f"image features must be [n, tokens, d] or [n, d], got shape {tuple(features.shape)}")
    return features.float().mean(1)
