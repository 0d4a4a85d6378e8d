"""Readouts made for image-token states, beside the logit lens (:mod:`interp.analysis.lens`).

Image tokens often do not decode through the unembedding, yet sit near words in the LM's
input-embedding space (LatentLens, V-Lens) or say what they hold when the LM is asked to
repeat them (Patchscope, Ghandeharioun et al. 2024). Over states ``[layers, n, d_model]``
(e.g. ``VLMCache.stack()`` at image positions):

- :func:`nearest_embeddings`: the ``top_k`` input-embedding rows closest by cosine, and the
  rank and cosine of chosen tokens;
- :func:`patchscope`: each state written into an identity prompt (``"cat -> cat; key -> key; ? ->"``)
  at the placeholder's position and a target layer; the frozen LM's next token after ``->``
  (top ids, log-probs, and the rank and log-prob of chosen tokens);
- :func:`concept_readout`, :func:`readout_rows`, :func:`first_naming_rows`: per concept, the
  readouts' ranks of the concept word and its hypernym word as tidy rows, and the first layer
  at which each readout names them (figures: :mod:`interp.analysis.image_lens_figures`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch
from einops import rearrange

from interp.analysis.lens import count_above
from interp.analysis.patching import block_hooks
from interp.models.hooked import HookedLM, KVPrefix
from interp.sequence import Segment
from interp.vlm import HookedVLM

IDENTITY_PROMPT = "cat -> cat; key -> key; ? ->"
PLACEHOLDER = "?"
TARGET_KINDS = ("concept", "hypernym")


# ------------------------------------------------------------------ checks
def check_states(states: torch.Tensor, d_model: int) -> tuple[int, int]:
    """``(layers, n)`` of ``states [layers, n, d_model]``; a ValueError for another shape."""
    if states.ndim != 3 or states.shape[-1] != d_model:
        raise ValueError(f"states of shape {tuple(states.shape)}: expected [layers, n, d_model] with d_model={d_model}")
    return int(states.shape[0]), int(states.shape[1])


def check_top_k(top_k: int, vocab: int) -> int:
    if not isinstance(top_k, int) or not 1 <= top_k <= vocab:
        raise ValueError(f"top_k={top_k!r} is out of range: valid values are 1..{vocab}")
    return top_k


def check_targets(targets: Sequence[int], vocab: int) -> torch.Tensor:
    """``[t]`` long token ids; a ValueError naming any id outside ``0..vocab-1``."""
    tgt = torch.tensor([int(t) for t in targets], dtype=torch.long)
    bad = [int(t) for t in tgt if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"target token ids {bad} are out of range: valid ids are 0..{vocab - 1}")
    return tgt


def check_positive(name: str, value: int) -> int:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is out of range: it must be an int >= 1")
    return value


# ------------------------------------------------------ top-k and target ranks
def top_and_targets(scores: torch.Tensor, top_k: int, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Over ``scores [rows, d_vocab]``: ``top_ids``, ``top_scores`` ``[rows, top_k]``, and the
    ``ranks`` (0 = top; ties do not count against) and ``scores`` of ``targets`` ``[rows, t]``."""
    v, i = scores.topk(top_k, dim=-1)
    t = scores[:, targets.to(scores.device)]
    ranks = count_above(scores, t) if len(targets) else torch.empty(scores.shape[0], 0, dtype=torch.long)
    return {"top_ids": i.cpu(), "top_scores": v.cpu(), "ranks": ranks.cpu(), "scores": t.cpu()}


def stack_chunks(chunks: list[dict[str, torch.Tensor]], n_layers: int,
                 names: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """Concatenate per-chunk ``[rows, k]`` results over rows and unflatten them to
    ``[layers, n, k]``, renamed by ``names`` (chunk key -> result key)."""
    return {new: rearrange(torch.cat([c[old] for c in chunks]), "(l n) k -> l n k", l=n_layers)
            for old, new in names.items()}


# ------------------------------------------------------ nearest neighbours
def input_embedding_matrix(lm: HookedLM) -> torch.Tensor:
    """The LM's input embedding rows ``[d_vocab, d_model]``, float, detached.

    These are the stored rows: on the residual scale a token's embedding is ``embed_scale``
    times its row (Gemma: ``sqrt(d_model)``; :meth:`HookedLM.embed_tokens`). Cosine similarity
    does not change with that scale, so no scaled copy is made."""
    return lm.hf.get_input_embeddings().weight.detach().float()


def cosine_to_rows(x: torch.Tensor, rows: torch.Tensor, inv_row_norms: torch.Tensor) -> torch.Tensor:
    """Cosine of each ``x [m, d_model]`` with every row of ``rows [v, d_model]`` (whose inverse
    norms are ``inv_row_norms [v]``): ``[m, v]``."""
    x = x.float()
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return (x @ rows.T) * inv_row_norms


@torch.no_grad()
def nearest_embeddings(lm: HookedLM, states: torch.Tensor, *, top_k: int = 5, targets: Sequence[int] = (),
                       chunk: int = 256) -> dict[str, torch.Tensor]:
    """The input-embedding vocabulary items nearest to each state, by cosine similarity.

    ``states``: ``[layers, n, d_model]`` (e.g. ``cache.stack()`` at image positions). Returns
    ``top_ids`` / ``top_sims`` ``[layers, n, top_k]`` (most similar first) and, for ``targets``
    (token ids), their ``ranks`` ``[layers, n, len(targets)]`` (0 = nearest; the number of
    rows strictly more similar) and cosine ``sims``. Cosine is scale-free, so the stored rows
    and the residual-scale embeddings (``embed_scale`` times them) give the same answer.
    Similarities are computed for ``chunk`` states at a time: memory ``chunk x d_vocab``.
    """
    n_layers, _ = check_states(states, lm.d_model)
    emb = input_embedding_matrix(lm)
    vocab = emb.shape[0]
    check_top_k(top_k, vocab)
    tgt = check_targets(targets, vocab)
    check_positive("chunk", chunk)
    inv = 1.0 / emb.norm(dim=-1).clamp_min(torch.finfo(emb.dtype).tiny)  # [d_vocab]
    flat = rearrange(states, "l n d -> (l n) d")
    chunks = [top_and_targets(cosine_to_rows(flat[s:s + chunk].to(emb.device), emb, inv), top_k, tgt)
              for s in range(0, flat.shape[0], chunk)]
    return stack_chunks(chunks, n_layers, {"top_ids": "top_ids", "top_scores": "top_sims", "ranks": "ranks",
                                           "scores": "sims"})


# --------------------------------------------------------------- Patchscope
@dataclass(frozen=True)
class PatchscopePrompt:
    """A target prompt, tokenized: the sequence is BOS then ``ids`` (text token ids); a state is
    written at position ``at`` (the placeholder's last token; BOS is position 0) and the next
    token is read after the last one."""

    text: str
    ids: tuple[int, ...]
    at: int

    def segments(self) -> list[Segment]:
        """The whole prompt as segments (BOS, text), for ``vlm.build``."""
        return [Segment("bos"), Segment("text", ids=self.ids)]

    def prefix_segments(self) -> list[Segment]:
        """BOS and the text before position ``at`` (what a patch there cannot change)."""
        before = self.ids[:self.at - 1]
        return [Segment("bos")] + ([Segment("text", ids=before)] if before else [])

    def continuation_segments(self) -> list[Segment]:
        """The text from position ``at`` on (the patched token first)."""
        return [Segment("text", ids=self.ids[self.at - 1:])]


def patchscope_prompt(tokenizer, prompt: str = IDENTITY_PROMPT, placeholder: str = PLACEHOLDER) -> PatchscopePrompt:
    """Tokenize ``prompt`` as (text before, placeholder, text after), split at the LAST
    occurrence of ``placeholder``; spaces just before the placeholder go with it (``" ?"``,
    as a tokenizer joins them), so the pieces tokenize as the whole prompt usually does."""
    head, found, tail = prompt.rpartition(placeholder) if placeholder else ("", "", "")
    if not found:
        raise ValueError(f"placeholder {placeholder!r} does not occur in the target prompt {prompt!r}")
    stripped = head.rstrip(" ")
    mark = head[len(stripped):] + placeholder

    def ids(text: str) -> tuple[int, ...]:
        return tuple(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else ()

    head_ids, mark_ids = ids(stripped), ids(mark)
    if not mark_ids:
        raise ValueError(f"placeholder {placeholder!r} tokenizes to nothing")
    return PatchscopePrompt(prompt, head_ids + mark_ids + ids(tail), at=len(head_ids) + len(mark_ids))


def target_hooks(vlm: HookedVLM, n_layers: int, source_hooks: Sequence[str] | None,
                 target_layers: Sequence[int] | None) -> list[str]:
    """The hook each layer of states is written at: ``blocks.{target layer}.<the source's point>``.

    ``source_hooks``: full canonical names where the states were read, one per layer of states
    (default ``blocks.{i}.hook_resid_post``, i = 0.., as ``VLMCache.stack()`` gives them);
    ``target_layers``: one per layer of states (default: each source's own layer)."""
    lm = vlm.lm
    if source_hooks is None:
        if n_layers > lm.n_layers:
            raise ValueError(f"{n_layers} layers of states but {lm.name} has {lm.n_layers}: pass source_hooks")
        source_hooks = [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]
    sources = block_hooks(vlm, list(source_hooks))
    if len(sources) != n_layers:
        raise ValueError(f"{len(sources)} source hooks for {n_layers} layers of states: give one per layer")
    if target_layers is None:
        target_layers = [layer for layer, _ in sources]
    if len(target_layers) != n_layers:
        raise ValueError(f"{len(target_layers)} target layers for {n_layers} layers of states: give one per layer")
    return [lm.check_hook(f"blocks.{lm.check_layer(int(t))}.{name.split('.', 2)[2]}")
            for t, (_, name) in zip(target_layers, sources)]


def write_rows_hook(name: str, rows: torch.Tensor, states: torch.Tensor, at: int):
    """A hook that writes ``states [m, d_model]`` into batch rows ``rows [m]`` at position ``at``."""
    def hook(t: torch.Tensor, hook) -> torch.Tensor:
        if t.ndim != 3 or t.shape[-1] != states.shape[-1]:
            raise ValueError(f"hook {name!r} carries a tensor of shape {tuple(t.shape)}: a Patchscope writes "
                             f"[batch, pos, d_model] residual-stream points (d_model={states.shape[-1]})")
        t = t.clone()
        t[rows.to(t.device), at] = states.to(t.device, t.dtype)
        return t

    return hook


def prompt_prefix(vlm: HookedVLM, prompt: PatchscopePrompt) -> KVPrefix:
    """Keys and values of the target prompt before the patched position (one row)."""
    _, kv = vlm.forward_with_kv(vlm.build([prompt.prefix_segments()]))
    return kv


@torch.no_grad()
def patched_logits(vlm: HookedVLM, prompt: PatchscopePrompt, states: torch.Tensor, hooks: Sequence[str], *,
                   past: KVPrefix | None = None) -> torch.Tensor:
    """One forward: row ``i`` is the target prompt with ``states[i]`` (``[m, d_model]``) written at
    ``hooks[i]`` (full canonical names) at position ``prompt.at``; returns the next-token
    logits after the prompt's last token, ``[m, d_vocab]``.

    A patch cannot change the positions before ``prompt.at``, so they are not recomputed: the
    run continues from their keys and values (``past``, default :func:`prompt_prefix`)."""
    if states.ndim != 2 or len(hooks) != states.shape[0]:
        raise ValueError(f"states of shape {tuple(states.shape)} with {len(hooks)} hooks: expected [m, d_model], "
                         "one hook per row")
    past = prompt_prefix(vlm, prompt) if past is None else past
    names = list(hooks)
    fwd = []
    for name in dict.fromkeys(names):  # one hook per distinct point, writing its rows
        rows = torch.tensor([i for i, n in enumerate(names) if n == name])
        fwd.append((name, write_rows_hook(name, rows, states[rows], 0)))  # the continuation starts at prompt.at
    batch = vlm.build([prompt.continuation_segments()] * len(names))
    return vlm.run_with_hooks(batch, fwd_hooks=fwd, logits_at="last", past=past).logits


@torch.no_grad()
def patchscope(vlm: HookedVLM, states: torch.Tensor, *, source_hooks: Sequence[str] | None = None,
               target_layers: Sequence[int] | None = None, prompt: PatchscopePrompt | None = None, top_k: int = 5,
               targets: Sequence[int] = (), batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Patchscope (Ghandeharioun et al. 2024) of every state: what the frozen LM says next when
    the state replaces the placeholder of an identity prompt.

    ``states``: ``[layers, n, d_model]``, layer ``i`` read at ``source_hooks[i]`` (full canonical
    names, default ``blocks.{i}.hook_resid_post``); each is written at the same hook point of
    ``target_layers[i]`` (default: its own layer) at ``prompt.at`` (default
    :data:`IDENTITY_PROMPT` with ``?`` as placeholder). ``batch_size`` patched prompts run per
    forward, mixing layers. Returns ``top_ids`` / ``top_logprobs`` ``[layers, n, top_k]`` of
    the next token and, for ``targets`` (token ids), their ``ranks`` (0 = top) and
    ``logprobs`` ``[layers, n, len(targets)]``.

    When the next token is read at a later position than the patched one (as after ``->``), a
    state written at the LAST block's ``hook_resid_post`` changes nothing (no block follows to
    carry it there): read such states with a lower ``target_layers`` entry or at
    ``hook_resid_pre``."""
    n_layers, n = check_states(states, vlm.lm.d_model)
    hooks = target_hooks(vlm, n_layers, source_hooks, target_layers)
    check_top_k(top_k, vlm.lm.vocab_size)
    tgt = check_targets(targets, vlm.lm.vocab_size)
    check_positive("batch_size", batch_size)
    prompt = patchscope_prompt(vlm.tokenizer) if prompt is None else prompt
    past = prompt_prefix(vlm, prompt)
    flat = rearrange(states, "l n d -> (l n) d")
    row_hooks = [h for h in hooks for _ in range(n)]
    chunks = []
    for s in range(0, flat.shape[0], batch_size):
        logits = patched_logits(vlm, prompt, flat[s:s + batch_size], row_hooks[s:s + batch_size], past=past)
        chunks.append(top_and_targets(logits.float().log_softmax(-1), top_k, tgt))
    return stack_chunks(chunks, n_layers, {"top_ids": "top_ids", "top_scores": "top_logprobs", "ranks": "ranks",
                                           "scores": "logprobs"})


# ------------------------------------------------------------------ summary
@dataclass(frozen=True)
class TargetReadout:
    """One readout of one concept's states: ``ranks`` and ``scores`` ``[layers, n, 2]`` of the
    concept word (``[..., 0]``) and its hypernym word (``[..., 1]``) at ``n`` positions (e.g.
    the image's tokens); ``layers``: the layer number of each row (default 0..)."""

    concept: str
    readout: str
    ranks: torch.Tensor
    scores: torch.Tensor
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.ranks.ndim != 3 or self.ranks.shape[-1] != len(TARGET_KINDS) or self.ranks.shape != self.scores.shape:
            raise ValueError(f"{self.readout} of {self.concept!r}: ranks {tuple(self.ranks.shape)} and scores "
                             f"{tuple(self.scores.shape)} must both be [layers, n, 2] (concept, hypernym)")
        if self.layers is not None and len(self.layers) != self.ranks.shape[0]:
            raise ValueError(f"{self.readout} of {self.concept!r}: {len(self.layers)} layer numbers for "
                             f"{self.ranks.shape[0]} layers of ranks")


def score_key(result: Mapping[str, torch.Tensor]) -> str:
    """The per-target score of a readout's result: ``logprobs`` (:func:`logit_lens`,
    :func:`patchscope`) or ``sims`` (:func:`nearest_embeddings`)."""
    for key in ("logprobs", "sims"):
        if key in result:
            return key
    raise ValueError(f"a readout result has 'logprobs' or 'sims'; this one has {sorted(result)}")


def concept_readout(concept: str, readout: str, result: Mapping[str, torch.Tensor], *, targets: Sequence[int],
                    concept_id: int, hypernym_id: int, positions: Sequence[int] | None = None,
                    layers: Sequence[int] | None = None) -> TargetReadout:
    """One concept's slice of a readout run over many states with ``targets`` (the token ids it
    was given, in order): the columns of ``concept_id`` and ``hypernym_id`` at ``positions``
    (indices into the ``n`` axis; default all) of ``result["ranks"]`` and its score."""
    targets = [int(t) for t in targets]
    missing = [t for t in (concept_id, hypernym_id) if t not in targets]
    if missing:
        raise ValueError(f"token ids {missing} of {concept!r} are not among the readout's targets {targets}")
    cols = torch.tensor([targets.index(concept_id), targets.index(hypernym_id)])
    n = result["ranks"].shape[1]
    pos = torch.arange(n) if positions is None else torch.tensor(list(positions), dtype=torch.long)
    bad = [int(p) for p in pos if not 0 <= p < n]
    if bad or not len(pos):
        raise ValueError(f"positions {pos.tolist()} of {concept!r}: give at least one, each in 0..{n - 1}")
    return TargetReadout(concept, readout, result["ranks"][:, pos][..., cols],
                         result[score_key(result)][:, pos][..., cols],
                         None if layers is None else tuple(int(l) for l in layers))


def best_over_positions(ranks: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[layers, n, t]`` -> ``[layers, t]``: the best (lowest) rank over positions and the
    score at that position."""
    best, where = ranks.min(dim=1)
    return best, scores.gather(1, where.unsqueeze(1)).squeeze(1)


def readout_rows(readouts: Iterable[TargetReadout]) -> list[dict]:
    """Tidy rows ``concept, readout, layer, target (concept|hypernym), rank, score``: per layer
    the best rank over the readout's positions (a concept is named at a layer if any of its
    image tokens names it) and the score there (log-prob or cosine)."""
    rows = []
    for r in readouts:
        ranks, scores = best_over_positions(r.ranks, r.scores)
        layers = r.layers if r.layers is not None else tuple(range(ranks.shape[0]))
        rows += [{"concept": r.concept, "readout": r.readout, "layer": layer, "target": kind,
                  "rank": int(ranks[i, k]), "score": float(scores[i, k])}
                 for i, layer in enumerate(layers) for k, kind in enumerate(TARGET_KINDS)]
    return rows


def first_naming_rows(rows: Iterable[Mapping], *, top_k: int = 5) -> list[dict]:
    """Per (concept, readout, target) of :func:`readout_rows`: ``first_layer``, the first layer
    whose rank is below ``top_k`` (the readout first names the concept / its hypernym), None
    if no layer does; ``best_rank`` over layers; ``top_k``. In first-seen order."""
    check_positive("top_k", top_k)
    groups: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for r in rows:
        groups.setdefault((r["concept"], r["readout"], r["target"]), []).append((int(r["layer"]), int(r["rank"])))
    out = []
    for (concept, readout, target), pairs in groups.items():
        named = [layer for layer, rank in pairs if rank < top_k]
        out.append({"concept": concept, "readout": readout, "target": target,
                    "first_layer": min(named) if named else None, "best_rank": min(rank for _, rank in pairs),
                    "top_k": top_k})
    return out
