"""The SAE study's sequences and their activations.

Per concept, image questions ("Is there a robin in the image?" + " Yes" + EOS, the format the
projector was trained on; BOS, image tokens, question, answer) and text prompts naming the
concept and a hypernym ("Is it true that a robin is a bird?" + " Yes" + EOS; more wordings in
:data:`TEXT_TEMPLATES`). Sequences are shuffled (seeded) and batched; the last
``holdout_frac`` of the batches are held out (reconstruction and the spliced loss are
measured there). Each batch's ``blocks.{l}.hook_resid_post`` goes to an
:class:`~interp.analysis.store.ActivationStore` (one shard per batch, resumable); the SAE
trains on every image, text and answer position (BOS and padding excluded).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from interp.analysis.store import ActivationStore
from interp.examples import ANSWER_PREFIX
from interp.sequence import Batch, Modality, Segment, build_batch
from interp.studies.taxonomy.questions import image_question, truth_question

ARTICLES = ("a ", "an ", "the ", "some ")

#: wordings of a text prompt naming a concept and one of its hypernyms (phrases with their
#: article, "a robin", "a bird"), each a true statement asked as a question answered " Yes"
TEXT_TEMPLATES = {
    "truth": lambda c, h: truth_question(c, h),                              # Is it true that a robin is a bird?
    "kind": lambda c, h: f"Is {c} a kind of {bare_name(h)}?",                # Is a robin a kind of bird?
    "photo": lambda c, h: f"Here is a photo of {c}. Does it show {h}?",     # Here is a photo of a robin. Does it ...
    "called": lambda c, h: f"Can {c} be called {h}?",                        # Can a robin be called a bird?
}
ROLE_OTHER, ROLE_CONCEPT, ROLE_HYPERNYM = 0, 1, 2
TRAINED = (Modality.IMAGE, Modality.TEXT, Modality.ANSWER)


@dataclass(frozen=True)
class SeqInfo:
    """One sequence: ``kind`` "image" or "text", its concept, the image record (or -1), the
    hypernym its text names (or "") and the prompt."""

    kind: str
    concept: str
    record: int
    hypernym: str
    prompt: str


def bare_name(phrase: str) -> str:
    """"a robin" -> "robin", "an item of clothing" -> "item of clothing"."""
    low = phrase.lower()
    return next((phrase[len(a):] for a in ARTICLES if low.startswith(a)), phrase)


def study_sequences(taxonomy, records, rows: Sequence[int], *, images_per_concept: int, text_per_concept: int,
                    max_concepts: int = 0, seed: int = 0, templates: Sequence[str] = ("truth",)) -> list[SeqInfo]:
    """Image and text sequences for the concepts of ``rows`` (indices into ``records``), shuffled:
    per concept its image questions, and per (hypernym, template of ``templates``) a text prompt
    (:data:`TEXT_TEMPLATES`)."""
    bad = [t for t in templates if t not in TEXT_TEMPLATES]
    if bad or not templates:
        raise ValueError(f"text templates {list(templates)}: valid names are {list(TEXT_TEMPLATES)} (at least one)")
    by_concept: dict[str, list[int]] = {}
    for i in sorted(rows, key=lambda i: records[i].key):
        by_concept.setdefault(records[i].concept, []).append(i)
    concepts = sorted(by_concept)
    if max_concepts:
        concepts = sorted(random.Random(seed).sample(concepts, min(max_concepts, len(concepts))))
    seqs = []
    for c in concepts:
        q = image_question(taxonomy.phrase(c))
        seqs += [SeqInfo("image", c, i, "", q) for i in by_concept[c][:images_per_concept]]
        hyps = sorted(taxonomy.hypernyms_of(c))
        for h in hyps[:text_per_concept or len(hyps)]:
            seqs += [SeqInfo("text", c, -1, h, TEXT_TEMPLATES[t](taxonomy.phrase(c), taxonomy.phrase(h))) for t in templates]
    random.Random(f"sae-{seed}").shuffle(seqs)
    return seqs


def build_batches(tokenizer, n_image_tokens: int, seqs: Sequence[SeqInfo], features: torch.Tensor,
                  batch_size: int) -> list[tuple[Batch, torch.Tensor | None]]:
    """(batch, its images' features ``[n_images, tokens, d_img]`` or None) per ``batch_size``
    sequences; ``features`` is indexed by :attr:`SeqInfo.record`."""
    out = []
    for s in range(0, len(seqs), batch_size):
        chunk = seqs[s:s + batch_size]
        items, recs = [], []
        for q in chunk:
            segs = [Segment("bos")]
            if q.kind == "image":
                segs.append(Segment("image", image=len(recs)))
                recs.append(q.record)
            items.append(segs + [Segment("text", q.prompt), Segment("answer", ANSWER_PREFIX + "Yes")])
        batch = build_batch(tokenizer, items, n_image_tokens)
        out.append((batch, features[recs] if recs else None))
    return out


def name_roles(tokenizer, batch: Batch, seqs: Sequence[SeqInfo], taxonomy) -> torch.Tensor:
    """``[batch, pos]``: ROLE_CONCEPT on the tokens of a text sequence's concept name,
    ROLE_HYPERNYM on its hypernym's name, ROLE_OTHER elsewhere (image sequences: all other)."""
    roles = torch.zeros(batch.shape, dtype=torch.long)
    for j, q in enumerate(seqs):
        if q.kind != "text":
            continue
        ids = batch.input_ids[j].tolist()
        for role, name in ((ROLE_CONCEPT, q.concept), (ROLE_HYPERNYM, q.hypernym)):
            span = word_span(tokenizer, ids, bare_name(taxonomy.phrase(name)))
            roles[j, span] = role
    return roles


def word_span(tokenizer, ids: list[int], word: str) -> list[int]:
    """Positions of ``word``'s tokens (" word" first, then "word") in ``ids``; [] if absent."""
    for variant in (" " + word, word):
        w = tokenizer(variant, add_special_tokens=False)["input_ids"]
        for i in range(len(ids) - len(w) + 1):
            if ids[i:i + len(w)] == w:
                return list(range(i, i + len(w)))
    return []


@dataclass
class Tokens:
    """The trained-on positions of a store, in store order: ``seq [n]`` (index into the
    sequences), ``pos [n]``, ``modality [n]``, ``token [n]`` (input id), ``role [n]``."""

    seq: torch.Tensor
    pos: torch.Tensor
    modality: torch.Tensor
    token: torch.Tensor
    role: torch.Tensor

    def __len__(self) -> int:
        return self.seq.shape[0]


def trained_mask(modality: torch.Tensor) -> torch.Tensor:
    """Bool ``[..., pos]``: image, text and answer positions (no BOS, no padding)."""
    return sum((modality == int(m) for m in TRAINED), torch.zeros_like(modality, dtype=torch.bool)).bool()


def token_table(batches: Sequence[tuple[Batch, torch.Tensor | None]], roles: Sequence[torch.Tensor]) -> Tokens:
    """The :class:`Tokens` of every trained-on position, batch by batch (the store's order)."""
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("seq", "pos", "modality", "token", "role")}
    offset = 0
    for (b, _), r in zip(batches, roles):
        m = trained_mask(b.modality.cpu())
        rows, pos = m.nonzero(as_tuple=True)
        parts["seq"].append(rows + offset)
        parts["pos"].append(pos)
        parts["modality"].append(b.modality.cpu()[m])
        parts["token"].append(b.input_ids.cpu()[m])
        parts["role"].append(r[m])
        offset += len(b)
    return Tokens(**{k: torch.cat(v) for k, v in parts.items()})


#: the token groups an SAE is measured on (name -> label): image tokens, the question and
#: answer tokens of image questions, every token of text prompts
TOKEN_GROUPS = {"image_tokens": "image tokens", "image_question_text": "image questions' text",
                "text_prompts": "text prompts"}


def token_groups(tokens: Tokens, seqs: Sequence[SeqInfo]) -> dict[str, torch.Tensor]:
    """Bool ``[n]`` masks over ``tokens`` for each of :data:`TOKEN_GROUPS`."""
    is_text_seq = sequence_mask(tokens, seqs, "text")
    is_image = tokens.modality == int(Modality.IMAGE)
    return {"image_tokens": is_image, "image_question_text": ~is_text_seq & ~is_image, "text_prompts": is_text_seq}


def sequence_mask(tokens: Tokens, seqs: Sequence[SeqInfo], kind: str) -> torch.Tensor:
    """Bool ``[n]``: the tokens of sequences of ``kind`` ("image", "text", or "all": every token)."""
    if kind == "all":
        return torch.ones(len(tokens), dtype=torch.bool)
    of_kind = torch.tensor([q.kind == kind for q in seqs], dtype=torch.bool)
    return of_kind[tokens.seq]


def batch_mask(tokens: Tokens, batch_size: int, batches: Sequence[int]) -> torch.Tensor:
    """Bool ``[n]``: the tokens of the given batch indices (sequence ``i`` is in batch
    ``i // batch_size``)."""
    return torch.isin(tokens.seq // batch_size, torch.as_tensor(list(batches), dtype=torch.long))


def has_group_measures(summary: Sequence[dict]) -> bool:
    """Whether summary rows carry the per-group measures (rows written before them do not)."""
    return bool(summary) and "ev_image_tokens" in summary[0]


def layer_acts(store: ActivationStore, name: str, shards: Sequence[int] | None = None) -> torch.Tensor:
    """``[n_tokens, d_model]``: the stored ``name`` at the trained-on positions of the given
    shards (default all), in store order."""
    keep = set(range(len(store.shards))) if shards is None else set(shards)
    out = []
    for i, (act, mod) in enumerate(store.iter_shards(name)):
        if i in keep:
            m = trained_mask(mod)
            out.append(act[m].float())
    return torch.cat(out) if out else torch.empty(0)


def split_batches(n_batches: int, holdout_frac: float) -> tuple[list[int], list[int]]:
    """(training batch indices, held-out batch indices): the last ``holdout_frac`` held out
    (at least one on each side when there are two or more batches)."""
    n_out = min(max(1, round(n_batches * holdout_frac)), n_batches - 1) if n_batches > 1 else 0
    return list(range(n_batches - n_out)), list(range(n_batches - n_out, n_batches))


def iter_batches(batches: Sequence[tuple[Batch, torch.Tensor | None]], device) -> Iterator[tuple[Batch, torch.Tensor | None]]:
    for b, f in batches:
        yield b.to(device), f
