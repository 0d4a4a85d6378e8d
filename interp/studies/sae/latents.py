"""What the latents of an SAE respond to: latents shared across modalities (firing on the
image tokens of a concept AND on the text tokens of its name or hypernym) against a
shuffled-concept baseline, and each top latent's top images and top text tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from interp.sequence import Modality
from interp.studies.sae.data import ROLE_CONCEPT, ROLE_HYPERNYM, SeqInfo, Tokens


def sequence_firing(tokens: Tokens, vals: torch.Tensor, idx: torch.Tensor, select: torch.Tensor, n_seq: int,
                    d_sae: int) -> torch.Tensor:
    """Bool ``[n_seq, d_sae]``: latent active (> 0) on any selected token (``select [n_tokens]``)
    of the sequence; ``vals``/``idx`` ``[n_tokens, k]``."""
    out = torch.zeros(n_seq, d_sae, dtype=torch.bool)
    on = (vals > 0) & select[:, None]
    rows = tokens.seq[:, None].expand_as(idx)[on]
    out[rows, idx[on]] = True
    return out


def concept_firing(seq_fire: torch.Tensor, seqs: Sequence[SeqInfo], kind: str, concepts: Sequence[str],
                   fire_frac: float) -> torch.Tensor:
    """Bool ``[n_concepts, d_sae]``: the latent fires on at least ``fire_frac`` of the
    concept's sequences of ``kind`` (False for a concept without such sequences)."""
    out = torch.zeros(len(concepts), seq_fire.shape[1], dtype=torch.bool)
    for ci, c in enumerate(concepts):
        rows = [i for i, q in enumerate(seqs) if q.kind == kind and q.concept == c]
        if rows:
            out[ci] = seq_fire[rows].float().mean(0) >= fire_frac
    return out


def classify(img: torch.Tensor, txt: torch.Tensor) -> list[str]:
    """Per latent, from ``img``/``txt`` ``[n_concepts, d_sae]``: "shared" (some concept in
    both), "image-only", "text-only", "both-unaligned" (both, never the same concept) or "none"."""
    shared = (img & txt).any(0)
    i, t = img.any(0), txt.any(0)
    return ["shared" if s else "both-unaligned" if a and b else "image-only" if a else "text-only" if b else "none"
            for s, a, b in zip(shared.tolist(), i.tolist(), t.tolist())]


def shared_count(img: torch.Tensor, txt: torch.Tensor) -> int:
    return int((img & txt).any(0).sum())


def sharing_summary(img: torch.Tensor, txt: torch.Tensor, *, shuffles: int, seed: int) -> dict[str, float]:
    """Counts per class and the shuffled baseline: the concept labels of the text side
    permuted (``shuffles`` times, seeded); mean, 95% range and a one-sided p-value."""
    classes = classify(img, txt)
    g = torch.Generator().manual_seed(seed)
    base = np.array([shared_count(img, txt[torch.randperm(txt.shape[0], generator=g)]) for _ in range(shuffles)])
    obs = shared_count(img, txt)
    out = {c: classes.count(c) for c in ("shared", "image-only", "text-only", "both-unaligned", "none")}
    out.update({"shuffled_shared_mean": float(base.mean()), "shuffled_shared_lo": float(np.percentile(base, 2.5)),
                "shuffled_shared_hi": float(np.percentile(base, 97.5)),
                "p_value": float((1 + (base >= obs).sum()) / (1 + shuffles)), "shuffles": shuffles})
    return out


@dataclass
class LatentFiring:
    """Per concept and modality, which latents fire (``[n_concepts, d_sae]`` each)."""

    concepts: list[str]
    image: torch.Tensor
    text: torch.Tensor


def latent_firing(tokens: Tokens, vals: torch.Tensor, idx: torch.Tensor, seqs: Sequence[SeqInfo], d_sae: int,
                  fire_frac: float) -> LatentFiring:
    """Image side: any image token of the concept's image questions; text side: the tokens
    of the concept's name or hypernym name in its text prompts."""
    concepts = sorted({q.concept for q in seqs})
    is_img = tokens.modality == int(Modality.IMAGE)
    is_name = (tokens.role == ROLE_CONCEPT) | (tokens.role == ROLE_HYPERNYM)
    img = concept_firing(sequence_firing(tokens, vals, idx, is_img, len(seqs), d_sae), seqs, "image", concepts,
                         fire_frac)
    txt = concept_firing(sequence_firing(tokens, vals, idx, is_name, len(seqs), d_sae), seqs, "text", concepts,
                         fire_frac)
    return LatentFiring(concepts, img, txt)


def latent_rows(firing: LatentFiring, tokens: Tokens, vals: torch.Tensor, idx: torch.Tensor) -> list[dict]:
    """One row per latent that fires at all: token counts per modality, its class and the
    concepts it is shared on."""
    d_sae = firing.image.shape[1]
    on = vals > 0
    mod = tokens.modality[:, None].expand_as(idx)
    n_img = torch.bincount(idx[on & (mod == int(Modality.IMAGE))], minlength=d_sae)
    n_all = torch.bincount(idx[on], minlength=d_sae)
    mass = torch.zeros(d_sae).index_add_(0, idx.flatten(), vals.flatten().float())
    classes = classify(firing.image, firing.text)
    both = firing.image & firing.text
    rows = []
    for j in torch.nonzero(n_all > 0).flatten().tolist():
        rows.append({"latent": j, "class": classes[j], "n_tokens": int(n_all[j]), "n_image_tokens": int(n_img[j]),
                     "image_share": float(n_img[j] / n_all[j]), "mass": float(mass[j]),
                     "n_concepts_image": int(firing.image[:, j].sum()), "n_concepts_text": int(firing.text[:, j].sum()),
                     "shared_concepts": " | ".join(c for ci, c in enumerate(firing.concepts) if both[ci, j])})
    return rows


def latent_activation(vals: torch.Tensor, idx: torch.Tensor, latent: int) -> torch.Tensor:
    """``[n_tokens]``: the latent's activation on every token (0 where not in its top k)."""
    return (vals * (idx == latent)).sum(-1)


def top_examples(latents: Sequence[int], tokens: Tokens, vals: torch.Tensor, idx: torch.Tensor,
                 seqs: Sequence[SeqInfo], records, decode, *, n_images: int, n_tokens: int) -> tuple[list[dict], list[dict]]:
    """(image rows, token rows) per latent: the image questions whose image tokens activate it
    most (one row per distinct image, with its path) and the text/answer tokens that do (decoded)."""
    img_rows, tok_rows = [], []
    is_img = tokens.modality == int(Modality.IMAGE)
    is_txt = (tokens.modality == int(Modality.TEXT)) | (tokens.modality == int(Modality.ANSWER))
    for rank, j in enumerate(latents):
        a = latent_activation(vals, idx, j)
        per_seq = torch.zeros(len(seqs)).scatter_reduce(0, tokens.seq[is_img], a[is_img], "amax", include_self=True)
        seen: set[int] = set()
        for s in torch.argsort(per_seq, descending=True).tolist():
            if len(seen) >= n_images or per_seq[s] <= 0:
                break
            rec = seqs[s].record
            if rec in seen:
                continue
            seen.add(rec)
            img_rows.append({"rank": rank, "latent": j, "activation": float(per_seq[s]), "concept": seqs[s].concept,
                             "record": rec, "path": str(records[rec].path)})
        at = torch.where(is_txt, a, torch.zeros_like(a))
        for t in torch.argsort(at, descending=True)[:n_tokens].tolist():
            if at[t] <= 0:
                break
            q = seqs[int(tokens.seq[t])]
            tok_rows.append({"rank": rank, "latent": j, "activation": float(at[t]), "token": decode(int(tokens.token[t])),
                             "concept": q.concept, "kind": q.kind, "prompt": q.prompt})
    return img_rows, tok_rows
