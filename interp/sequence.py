"""Sequences of a VLM: BOS, image tokens, text, answer, with a modality label per position.

A sequence is a list of :class:`Segment` s. :func:`build_batch` tokenizes and right-pads
them into a :class:`Batch` whose ``modality`` tensor says, at every position, whether it is
padding, BOS, an image token, text, or the answer (answer tokens and the EOS after them).
Caches, patch grids and plots slice by it, and "the last text token" is
``batch.last(Modality.TEXT)``, no arithmetic needed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Sequence

import torch


class Modality(IntEnum):
    """Label of a position in a VLM sequence."""

    PAD = 0
    BOS = 1
    IMAGE = 2
    TEXT = 3
    ANSWER = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Segment:
    """One piece of a sequence.

    ``kind`` is ``"bos"``, ``"image"`` (``image`` indexes the features passed with the
    batch), ``"text"`` or ``"answer"`` (followed by EOS when the batch asks for it).
    ``ids`` may hold pre-tokenized text to skip the tokenizer on hot paths.
    """

    kind: str
    text: str = ""
    image: int = -1
    ids: tuple[int, ...] | None = None


def vlm_item(image: int | None, prompt: str, answer: str | None = None) -> list[Segment]:
    """The study's sequence: BOS, image tokens (if any), prompt, answer (if any)."""
    segs = [Segment("bos")]
    if image is not None:
        segs.append(Segment("image", image=image))
    if not prompt:
        raise ValueError("empty prompt: a VLM sequence needs text after the image")
    segs.append(Segment("text", prompt))
    if answer is not None:
        segs.append(Segment("answer", answer))
    return segs


@dataclass
class Batch:
    """A right-padded batch. All tensors are ``[batch, pos]``.

    ``image_slot`` is, at an image position, the row of the flattened projected image
    tokens ``[n_images * n_image_tokens, d_model]`` that goes there, else -1.
    """

    input_ids: torch.Tensor
    modality: torch.Tensor
    attention_mask: torch.Tensor
    image_slot: torch.Tensor

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.input_ids.shape)  # type: ignore[return-value]

    def mask(self, *modalities: Modality | str) -> torch.Tensor:
        """Bool ``[batch, pos]``: positions with any of the given modalities."""
        out = torch.zeros_like(self.modality, dtype=torch.bool)
        for m in modalities:
            m = Modality[m.upper()] if isinstance(m, str) else m
            out |= self.modality == int(m)
        return out

    def last(self, modality: Modality | str = Modality.TEXT) -> torch.Tensor:
        """``[batch]`` index of the last position of ``modality`` in each row."""
        mask = self.mask(modality)
        if not bool(mask.any(dim=1).all()):
            raise ValueError(f"some rows have no {modality!s} position")
        pos = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        return torch.where(mask, pos, -1).max(dim=1).values

    def answer_targets(self, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(bool ``[batch, pos]`` of positions that predict an answer token, their target ids ``[n]``);
        ``rows`` (bool ``[batch]``) keeps those sequences' answers only."""
        is_answer = self.mask(Modality.ANSWER)
        if rows is not None:
            is_answer = is_answer & rows.to(is_answer.device)[:, None]
        predicts = torch.zeros_like(is_answer)
        predicts[:, :-1] = is_answer[:, 1:]
        return predicts, self.input_ids[is_answer]

    def labels(self, row: int) -> list[str]:
        """Modality names of one row (without padding), for plots."""
        n = int(self.attention_mask[row].sum())
        return [Modality(int(m)).label for m in self.modality[row, :n]]


def _text_ids(tokenizer, seg: Segment) -> list[int]:
    if seg.ids is not None:
        return list(seg.ids)
    return tokenizer(seg.text, add_special_tokens=False)["input_ids"]


def bos_id(tokenizer) -> int:
    """The BOS id (falls back to EOS for tokenizers without one, e.g. some instruct LMs)."""
    tid = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if tid is None:
        raise ValueError("tokenizer has neither a BOS nor an EOS token")
    return int(tid)


def build_batch(
    tokenizer,
    items: Sequence[Sequence[Segment]],
    n_image_tokens: int,
    *,
    eos_after_answer: bool = True,
    pad_to: int | None = None,
) -> Batch:
    """Tokenize and right-pad sequences into a :class:`Batch` (see module doc)."""
    if not items:
        raise ValueError("empty batch: pass at least one sequence")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows: list[tuple[list[int], list[int], list[int]]] = []
    for segs in items:
        ids: list[int] = []
        mods: list[int] = []
        slots: list[int] = []
        for seg in segs:
            if seg.kind == "bos":
                new, m = [bos_id(tokenizer)], Modality.BOS
            elif seg.kind == "image":
                if seg.image < 0:
                    raise ValueError("image segment without an image index")
                new, m = [pad] * n_image_tokens, Modality.IMAGE
                slots.extend(seg.image * n_image_tokens + j for j in range(n_image_tokens))
            elif seg.kind in ("text", "answer"):
                new = _text_ids(tokenizer, seg)
                if not new:
                    raise ValueError(f"empty {seg.kind} segment {seg.text!r}: nothing to tokenize")
                m = Modality.TEXT if seg.kind == "text" else Modality.ANSWER
                if seg.kind == "answer" and eos_after_answer:
                    new = new + [int(tokenizer.eos_token_id)]
            else:
                raise ValueError(f"unknown segment kind {seg.kind!r}: use bos, image, text or answer")
            if m != Modality.IMAGE:
                slots.extend([-1] * len(new))
            ids.extend(new)
            mods.extend([int(m)] * len(new))
        rows.append((ids, mods, slots))
    length = max(len(r[0]) for r in rows)
    if pad_to is not None:
        length = max(length, pad_to)
    b = len(rows)
    input_ids = torch.full((b, length), int(pad), dtype=torch.long)
    modality = torch.zeros((b, length), dtype=torch.long)
    mask = torch.zeros((b, length), dtype=torch.long)
    slot = torch.full((b, length), -1, dtype=torch.long)
    for i, (ids, mods, slots) in enumerate(rows):
        n = len(ids)
        input_ids[i, :n] = torch.tensor(ids)
        modality[i, :n] = torch.tensor(mods)
        mask[i, :n] = 1
        slot[i, :n] = torch.tensor(slots)
    return Batch(input_ids=input_ids, modality=modality, attention_mask=mask, image_slot=slot)


def single_token_id(tokenizer, word: str) -> int:
    """The id of ``word`` as one token (e.g. " Yes"); raise if it splits."""
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{word!r} is not a single token for this tokenizer: {ids}")
    return int(ids[0])

