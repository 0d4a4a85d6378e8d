"""Task vectors (Hendel et al. 2023; cross-modal: Luo et al. 2024) on a HookedVLM.

A task is specified by a prompt: text examples ``robin : bird\\ncow : mammal\\nsparrow :``,
an instruction ``Name the category ...\\nsparrow :``, or image examples (the input word
replaced by the image tokens). The residual stream at the last delimiter token (" :") at
layer ``l`` (``blocks.{l}.hook_resid_post``), averaged over several such prompts, is the
task vector. Patched into the same layer and position of a zero-shot query (``sparrow :``
or ``<image> :``) it should make the model answer as if it had seen the task.

Everything here is batched:
- :func:`last_resid` runs many prompts per forward pass and keeps only the last position of
  the layers asked for (the run stops after the deepest one);
- :func:`patch_sweep` runs the queries ONCE, caches their residual stream, then for each layer
  restarts the forward pass at ``l + 1`` from the cache with the last position replaced (or
  shifted) by every candidate vector at once (the batch axis holds vectors x queries);
- :func:`score` reads the argmax over the full vocabulary at the last position only.

:func:`patch_one` is the plain hook version (one query, one full forward pass) that the
fast path is tested and benchmarked against.

An *input* is a ``str`` (text) or an ``int`` (a row of the image feature tensor passed
along); prompts are lists of :class:`~interp.sequence.Segment` with global image rows,
localised per batch so that the projector only sees the images a batch uses.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator, Sequence

import torch

from interp.sequence import Batch, Segment
from interp.vlm import HookedVLM, capture

SEP = " :"
NL = "\n"
Input = str | int


# ----------------------------------------------------------------- prompts
def _merge(segs: list[Segment]) -> list[Segment]:
    """Join adjacent text segments (so a text prompt tokenizes exactly like the plain string)."""
    out: list[Segment] = []
    for s in segs:
        if s.kind == "text" and out and out[-1].kind == "text":
            out[-1] = Segment("text", out[-1].text + s.text)
        else:
            out.append(s)
    return out


def _input(x: Input) -> list[Segment]:
    if isinstance(x, bool) or not isinstance(x, (str, int)):
        raise TypeError(f"an input is a word (str) or an image row (int); got {x!r}")
    return [Segment("image", image=x)] if isinstance(x, int) else [Segment("text", x)]


def icl_prompt(demos: Sequence[tuple[Input, str]], query: Input, *, instruction: str | None = None,
               prefix_image: int | None = None) -> list[Segment]:
    """``BOS [image] [instruction\\n] x1 : y1\\n ... xk : yk\\n xq :`` as segments.

    ``demos``: (input, answer) pairs, each input a word or an image row; ``query`` likewise.
    ``prefix_image``: an image placed right after BOS (the VLM's own format), text follows.
    """
    segs: list[Segment] = [Segment("bos")]
    if prefix_image is not None:
        segs += _input(int(prefix_image))
    if instruction:
        segs.append(Segment("text", instruction + NL))
    for x, y in demos:
        segs += _input(x) + [Segment("text", f"{SEP} {y}{NL}")]
    segs += _input(query) + [Segment("text", SEP)]
    return _merge(segs)


def answer_token_ids(tokenizer, answers: Sequence[str]) -> list[int]:
    """First token of each answer as it follows the delimiter (``" " + answer``), deduplicated."""
    ids = [tokenizer(" " + a, add_special_tokens=False)["input_ids"][0] for a in answers]
    return list(dict.fromkeys(int(i) for i in ids))


def sep_token_id(tokenizer) -> int:
    ids = tokenizer(SEP, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"the delimiter {SEP!r} is not one token for this tokenizer: {ids}")
    return int(ids[0])


# ------------------------------------------------------------------ batches
def localise(prompts: Sequence[list[Segment]], features: torch.Tensor | None) -> tuple[list[list[Segment]], torch.Tensor | None]:
    """Renumber image rows to ``0..m-1`` and return the ``m`` feature rows they use."""
    rows: dict[int, int] = {}
    out = []
    for p in prompts:
        new = []
        for s in p:
            if s.kind == "image":
                if features is None:
                    raise ValueError("a prompt has an image but no image features were given")
                if not 0 <= s.image < features.shape[0]:
                    raise ValueError(f"image row {s.image} is out of range: {features.shape[0]} image features given")
                s = replace(s, image=rows.setdefault(s.image, len(rows)))
            new.append(s)
        out.append(new)
    if not rows:
        return out, None
    return out, features[torch.tensor(list(rows))]


def batches(vlm: HookedVLM, prompts: Sequence[list[Segment]], features: torch.Tensor | None,
            batch_size: int) -> Iterator[tuple[Batch, torch.Tensor | None]]:
    """Tokenized right-padded batches of ``prompts`` with their (local) image features."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    for s in range(0, len(prompts), batch_size):
        local, feats = localise(prompts[s:s + batch_size], features)
        yield vlm.build(local), feats


def last_token_index(batch: Batch) -> torch.Tensor:
    return batch.attention_mask.sum(1) - 1


def check_layers(vlm: HookedVLM, layers: Sequence[int] | None) -> list[int]:
    if layers is None:
        return list(range(vlm.lm.n_layers))
    layers = [vlm.lm.check_layer(int(l)) for l in layers]
    if not layers:
        raise ValueError("no layers given")
    return layers


# --------------------------------------------------------------- extraction
@torch.no_grad()
def last_resid(vlm: HookedVLM, prompts: Sequence[list[Segment]], features: torch.Tensor | None = None, *,
               layers: Sequence[int] | None = None, batch_size: int = 32) -> torch.Tensor:
    """``blocks.{l}.hook_resid_post`` at each prompt's last position: ``[n_prompts, n_layers, d_model]``.

    The forward pass stops after the deepest layer asked for.
    """
    layers = check_layers(vlm, layers)
    out = []
    for batch, feats in batches(vlm, prompts, features, batch_size):
        got: dict[str, torch.Tensor] = {}
        names = [f"blocks.{l}.hook_resid_post" for l in layers]
        stop = max(layers) + 1
        vlm.run_with_hooks(batch, feats, fwd_hooks=capture(got, names, at=last_token_index(batch), device="cpu"),
                           logits_at=None, stop_at_layer=stop if stop < vlm.lm.n_layers else None)
        out.append(torch.stack([got[n].float() for n in names], 1))
    return torch.cat(out)


def task_vector(vlm: HookedVLM, prompts: Sequence[list[Segment]], features: torch.Tensor | None = None, *,
                layers: Sequence[int] | None = None, batch_size: int = 32) -> torch.Tensor:
    """Mean last-position residual over task-specification prompts: ``[n_layers, d_model]``."""
    if not prompts:
        raise ValueError("a task vector needs at least one prompt")
    return last_resid(vlm, prompts, features, layers=layers, batch_size=batch_size).mean(0)


def random_like(vectors: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Random directions with the norms of ``vectors [..., d]`` (the random-vector baseline)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(vectors.shape, generator=g, dtype=torch.float32)
    return r / r.norm(dim=-1, keepdim=True) * vectors.float().norm(dim=-1, keepdim=True)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine along the last axis: ``[..., d] x [..., d] -> [...]``."""
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)


# ----------------------------------------------------------------- patching
@torch.no_grad()
def _query_pass(vlm: HookedVLM, batch: Batch, feats: torch.Tensor | None, layers: list[int]):
    """One clean pass over the queries: resid_post at ``layers`` (all positions) and the
    normalised final residual at the last position."""
    got: dict[str, torch.Tensor] = {}
    names = {l: f"blocks.{l}.hook_resid_post" for l in layers}
    final = vlm.run_with_hooks(batch, feats, fwd_hooks=capture(got, list(names.values())), logits_at=None).resid
    last = last_token_index(batch)
    return {l: got[n] for l, n in names.items()}, final[torch.arange(len(batch)), last]


@torch.no_grad()
def patch_sweep(vlm: HookedVLM, queries: Sequence[list[Segment]], features: torch.Tensor | None,
                vectors: torch.Tensor, layers: Sequence[int], *, mode: str = "replace",
                batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch every vector into every query's last position at every layer, batched.

    Args:
        queries: zero-shot prompts (each ends with the delimiter).
        vectors: ``[len(layers), n_vectors, d_model]``: the candidates for each layer (e.g. the
            task vectors of several sources); ``[len(layers), d_model]`` is one vector.
        mode: ``"replace"`` the residual (task vectors) or ``"add"`` to it (function vectors).

    Returns:
        (patched ``[len(layers), n_vectors, n_queries, d_model]``, clean ``[n_queries, d_model]``):
        normalised final residuals at the last position, ready for :func:`score`.
    """
    if mode not in ("replace", "add"):
        raise ValueError(f"mode={mode!r}: use 'replace' or 'add'")
    layers = check_layers(vlm, layers)
    if vectors.ndim == 2:
        vectors = vectors[:, None]
    if vectors.ndim != 3 or vectors.shape[0] != len(layers) or vectors.shape[-1] != vlm.lm.d_model:
        raise ValueError(f"vectors must be [len(layers)={len(layers)}, n_vectors, d_model={vlm.lm.d_model}]; "
                         f"got {tuple(vectors.shape)}")
    n_vec = vectors.shape[1]
    q_per_chunk = max(1, batch_size // n_vec)
    patched, clean = [], []
    L = vlm.lm.n_layers
    for batch, feats in batches(vlm, queries, features, q_per_chunk):
        cache, final = _query_pass(vlm, batch, feats, layers)
        clean.append(final.float().cpu())
        n = len(batch)
        last = last_token_index(batch).repeat(n_vec)
        rows = torch.arange(n * n_vec)
        mask = batch.attention_mask.repeat(n_vec, 1)
        per_layer = []
        for li, l in enumerate(layers):
            x = cache[l].repeat(n_vec, 1, 1).clone()
            v = vectors[li].to(x.device, x.dtype).repeat_interleave(n, 0)  # row j*n+i: vector j, query i
            x[rows, last] = v if mode == "replace" else x[rows, last] + v
            if l + 1 < L:
                out = vlm.forward(None, embeds=x, attention_mask=mask, start_at_layer=l + 1, logits_at=None).resid[rows, last]
            else:
                out = vlm.lm.final_norm(x[rows, last])
            per_layer.append(out.float().cpu().view(n_vec, n, -1))
        patched.append(torch.stack(per_layer))
    return torch.cat(patched, 2), torch.cat(clean)


@torch.no_grad()
def run_last(vlm: HookedVLM, prompts: Sequence[list[Segment]], features: torch.Tensor | None = None, *,
             batch_size: int = 32) -> torch.Tensor:
    """Normalised final residual at each prompt's last position (no patching): ``[n, d_model]``."""
    out = []
    for batch, feats in batches(vlm, prompts, features, batch_size):
        final = vlm(batch, feats, logits_at=None).resid
        out.append(final[torch.arange(len(batch)), last_token_index(batch)].float().cpu())
    return torch.cat(out)


@torch.no_grad()
def patch_one(vlm: HookedVLM, query: list[Segment], features: torch.Tensor | None, vector: torch.Tensor, layer: int,
              *, mode: str = "replace") -> torch.Tensor:
    """Reference: one query, one full forward pass with a hook on ``blocks.{layer}.hook_resid_post``
    that replaces (or shifts) the last position. Returns the normalised final residual ``[d_model]``."""
    (batch, feats), = batches(vlm, [query], features, 1)
    last = int(last_token_index(batch)[0])

    def hook(t, hook):
        t = t.clone()
        t[0, last] = vector.to(t.dtype) if mode == "replace" else t[0, last] + vector.to(t.dtype)
        return t

    final = vlm.run_with_hooks(batch, feats, fwd_hooks=[(f"blocks.{vlm.lm.check_layer(layer)}.hook_resid_post", hook)],
                               logits_at=None).resid
    return final[0, last].float().cpu()


# ------------------------------------------------------------------ scoring
@torch.no_grad()
def top_tokens(vlm: HookedVLM, resid: torch.Tensor, *, chunk: int = 256) -> torch.Tensor:
    """Argmax over the full vocabulary of normalised final residuals ``[..., d_model] -> [...]``."""
    flat = resid.reshape(-1, resid.shape[-1])
    w = vlm.lm.hf.lm_head.weight
    out = [(flat[s:s + chunk].to(w.device, w.dtype) @ w.T).argmax(-1).cpu() for s in range(0, len(flat), chunk)]
    return torch.cat(out).view(resid.shape[:-1]) if out else torch.empty(resid.shape[:-1], dtype=torch.long)


@torch.no_grad()
def set_choice(vlm: HookedVLM, resid: torch.Tensor, candidate_ids: Sequence[int]) -> torch.Tensor:
    """Argmax restricted to ``candidate_ids`` (returned as token ids): ``[..., d_model] -> [...]``."""
    ids = torch.tensor(list(candidate_ids))
    w = vlm.lm.unembed_rows(ids.to(vlm.lm.device)).float().cpu()
    return ids[(resid.float() @ w.T).argmax(-1)]


def correct(pred: torch.Tensor, accepted: Sequence[Sequence[int]]) -> torch.Tensor:
    """Bool ``[..., n]``: is ``pred[..., i]`` one of query ``i``'s accepted first tokens."""
    if pred.shape[-1] != len(accepted):
        raise ValueError(f"{pred.shape[-1]} predictions per row but {len(accepted)} queries")
    width = max(len(a) for a in accepted)
    acc = torch.full((len(accepted), width), -1, dtype=torch.long)
    for i, a in enumerate(accepted):
        acc[i, :len(a)] = torch.tensor(list(a))
    return (pred.unsqueeze(-1) == acc).any(-1)


def score(vlm: HookedVLM, resid: torch.Tensor, accepted: Sequence[Sequence[int]],
          candidate_ids: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Exact match of the first answer token over the full vocabulary (``em``, the brief's
    metric) and, if ``candidate_ids`` is given, over the task's answer set (``set``).
    ``resid [..., n, d_model]`` -> bool tensors ``[..., n]``."""
    out = {"em": correct(top_tokens(vlm, resid), accepted)}
    if candidate_ids is not None:
        out["set"] = correct(set_choice(vlm, resid, candidate_ids), accepted)
    return out
