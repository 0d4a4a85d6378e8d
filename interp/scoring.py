"""Batched yes/no scoring: one forward pass per batch, only the Yes and No logits.

The score of an example is ``log P(" Yes") - log P(" No")`` at the last question token,
which equals the difference of the two logits (the softmax normaliser cancels), so no
full-vocabulary product is computed. Prediction: "Yes" when the score is > 0.
"""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from interp.examples import Example, QuestionTokens, example_batch
from interp.sequence import Segment, build_batch, single_token_id
from interp.vlm import HookedVLM


def yes_no_ids(tokenizer, yes: str = " Yes", no: str = " No") -> torch.Tensor:
    """``[2]`` token ids of the two answers (each must be one token)."""
    return torch.tensor([single_token_id(tokenizer, yes), single_token_id(tokenizer, no)])


@torch.no_grad()
def score_examples(
    vlm: HookedVLM,
    features: torch.Tensor,
    examples: Sequence[Example],
    *,
    batch_size: int = 64,
    progress: bool = True,
    desc: str = "score",
    share_prefix: bool = True,
) -> torch.Tensor:
    """``[n]`` Yes-minus-No log-probability margins, batched.

    With ``share_prefix`` (default) the BOS + image-token prefix of each image runs once
    and its KV cache serves every question about that image (an image has 2 leaf and
    2 x n_hypernyms questions); only the question tokens run per question.
    """
    if not share_prefix:
        return _score_plain(vlm, features, examples, batch_size=batch_size, progress=progress, desc=desc)
    lm, tok = vlm.lm, vlm.tokenizer
    tokens = QuestionTokens(tok)
    ids = yes_no_ids(tok).to(lm.device)
    by_image: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        by_image.setdefault(ex.image, []).append(i)
    chunks, cur = [], []
    for img in sorted(by_image):
        cur.append(img)
        if sum(len(by_image[j]) for j in cur) >= batch_size:
            chunks.append(cur)
            cur = []
    if cur:
        chunks.append(cur)
    out = torch.empty(len(examples))
    for imgs in tqdm(chunks, desc=desc, disable=not progress, unit="batch"):
        prefix = build_batch(tok, [[Segment("bos"), Segment("image", image=j)] for j in range(len(imgs))],
                             vlm.n_image_tokens).to(lm.device)
        _, kv = vlm.forward_with_kv(prefix, features[torch.tensor(imgs)])
        q_idx = [i for j in imgs for i in by_image[j]]
        rows = torch.tensor([k for k, j in enumerate(imgs) for _ in by_image[j]])
        suffix = build_batch(tok, [[Segment("text", ids=tokens(examples[i].question))] for i in q_idx], 0).to(lm.device)
        h = vlm.forward(suffix, past=kv.select(rows), logits_at=None).resid
        last = h[torch.arange(len(q_idx), device=h.device), suffix.last("text")]
        logits = lm.unembed(last, ids)
        out[torch.tensor(q_idx)] = (logits[:, 0] - logits[:, 1]).float().cpu()
    return out


def _score_plain(vlm, features, examples, *, batch_size, progress, desc) -> torch.Tensor:
    """Batched scoring without prefix sharing (sorted by length to cut padding)."""
    tokens = QuestionTokens(vlm.tokenizer)
    ids = yes_no_ids(vlm.tokenizer)
    order = sorted(range(len(examples)), key=lambda i: len(tokens(examples[i].question)))
    out = torch.empty(len(examples))
    for s in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, unit="batch"):
        idx = order[s:s + batch_size]
        batch, feats = example_batch(tokens, [examples[i] for i in idx], features, vlm.n_image_tokens, with_answer=False)
        logits = vlm.token_logits(batch.to(vlm.lm.device), feats, ids, at="last")
        out[torch.tensor(idx)] = (logits[:, 0] - logits[:, 1]).float().cpu()
    return out


@torch.no_grad()
def score_one_at_a_time(vlm: HookedVLM, features: torch.Tensor, examples: Sequence[Example]) -> torch.Tensor:
    """The reference the original code used: one example per forward pass, full logits.
    Kept for the benchmark (same predictions, much slower)."""
    ids = yes_no_ids(vlm.tokenizer)
    tokens = QuestionTokens(vlm.tokenizer)
    out = torch.empty(len(examples))
    for i, ex in enumerate(examples):
        batch, feats = example_batch(tokens, [ex], features, vlm.n_image_tokens, with_answer=False)
        logp = torch.log_softmax(vlm(batch.to(vlm.lm.device), feats, logits_at="all").logits[-1], -1)
        out[i] = float(logp[ids[0]] - logp[ids[1]])
    return out


# ---------------------------------------------------------------- text only (no image)
def _text_batch(lm, prompts: Sequence[str], continuations: Sequence[str] | None = None):
    items = []
    for i, p in enumerate(prompts):
        segs = [Segment("bos"), Segment("text", p)]
        if continuations is not None:
            segs.append(Segment("answer", continuations[i]))
        items.append(segs)
    return build_batch(lm.tokenizer, items, 0, eos_after_answer=False).to(lm.device)


@torch.no_grad()
def text_yes_no(lm, questions: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> torch.Tensor:
    """``[n]`` Yes-minus-No margins of a bare LM (:class:`HookedLM`) on text questions."""
    ids = yes_no_ids(lm.tokenizer).to(lm.device)
    out = []
    for s in tqdm(range(0, len(questions), batch_size), desc="text yes/no", disable=not progress):
        batch = _text_batch(lm, questions[s:s + batch_size])
        resid = lm(lm.embed_tokens(batch.input_ids), batch.attention_mask)
        last = resid[torch.arange(len(batch)), batch.last("text")]
        logits = lm.unembed(last, ids)  # the softcap too (gemma-3 has none; gemma-2's is 30)
        out.append((logits[:, 0] - logits[:, 1]).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def continuation_logprob(lm, prompts: Sequence[str], continuations: Sequence[str], *, batch_size: int = 32,
                         progress: bool = False) -> torch.Tensor:
    """``[n]`` mean per-token log-probability of each continuation after its prompt
    (full-vocabulary log-softmax, but only at the continuation's positions)."""
    out = []
    for s in tqdm(range(0, len(prompts), batch_size), desc="cloze", disable=not progress):
        batch = _text_batch(lm, prompts[s:s + batch_size], continuations[s:s + batch_size])
        resid = lm(lm.embed_tokens(batch.input_ids), batch.attention_mask)
        predicts, targets = batch.answer_targets()
        logp = torch.log_softmax(lm.unembed(resid[predicts]).float(), -1)
        tok_lp = logp[torch.arange(len(targets)), targets]
        rows = torch.nonzero(predicts)[:, 0]
        sums = torch.zeros(len(batch)).index_add_(0, rows.cpu(), tok_lp.cpu())
        counts = torch.zeros(len(batch)).index_add_(0, rows.cpu(), torch.ones(len(rows)))
        out.append(sums / counts)
    return torch.cat(out)
