"""Training: the curriculum of the binding study, resumable.

A run is a list of segments; a segment is a list of phases; a phase is ``steps`` optimiser
steps whose batches hold a fraction ``slot_frac`` of "slot" examples (text with noise
tokens, the image version, or the image version with noise tokens) and text for the rest.
The regimes (see :data:`REGIMES`) share their first segment (text only), which is
therefore trained once per seed; their second segment is the brief's curriculum
"image only, then 20% image / 80% text" with the image slot filled by each regime's kind.

Loss: cross-entropy of the answer token at the query position, over the whole vocabulary.
Two training-only aids (off by default; docs/binding.md, "The recipe in the trainer"):
``lookups`` appends the one-hop lookups ``! x -> the token after x`` to every text sequence,
and ``mid_layer`` adds the cross-entropy of the first hop's result (the shape bound to the
queried colour) read from the residual after that block at every two-hop query.
AdamW, linear warmup then cosine decay within each segment, gradient clipping.

Resume: every batch is a pure function of (seed, segment name, step), and a checkpoint
(model + optimiser + step) is written atomically every ``checkpoint_every`` steps
(``torch.load(weights_only=True)`` on reload); a finished segment (``model.safetensors`` +
``train.json``) is skipped.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.io import atomic_path, environment, load_tensors, read_json, save_tensors, stable_hash, write_json
from interp.schedule import warmup_cosine
from interp.studies.binding.bank import Bank
from interp.studies.binding.model import BindingModel
from interp.studies.binding.task import (HOPS, Layout, TaskConfig, external_tokens, layout, lookup_order, noise_gaps,
                                         reassign, sample_episodes, train_queries)

SLOT_KINDS = ("text", "noise-text", "image", "noise-image")

#: what a phase trains: every weight, or the projector alone (the decoder frozen)
PHASE_TRAINS = ("all", "projector")

#: regime -> the kind of example that fills the image slot of the curriculum
REGIMES = {"text": "text", "noise-text": "noise-text", "image-text": "image", "noise-image-text": "noise-image"}


@dataclass(frozen=True)
class TrainConfig:
    """``text_steps``: segment 1 (text only, shared by all regimes); ``image_steps``: phase 2
    (100% slot examples); ``mix_steps``: phase 3 (``mix_frac`` slot examples, the rest text).

    ``queries``: answers scored per training sequence. 1 is the brief's layout (one query,
    loss on its answer). ``k > 1`` appends ``k - 1`` extra queries after the query's answer
    (:func:`~interp.studies.binding.task.episode_tokens`): ``k`` times the loss signal per forward
    pass, for the CPU presets; the main query's prefix is the single-query layout and the
    logged batch accuracy is on the main query. Evaluation and all analyses use the
    single-query layout.

    ``dense``: every bound pair is queried once per training sequence (main query first;
    :func:`~interp.studies.binding.task.train_queries`), replacing ``queries``. ``stages``: a
    curriculum run at the start of segment 1, before its ``text_steps`` of the brief's task:
    ``[hops, objects, steps]`` entries in order, e.g. ``[[1, 2, 1500], [1, 4, 1000], [2, 2, 2000]]``
    (one hop before two, few objects before many; ``hops = 1`` asks for the shape of a colour
    in a context without associations).

    ``lookups``: every text training sequence of the two-hop task also asks the ``2n``
    one-hop lookups ``! x`` (context colour -> its shape, association shape -> its item, in
    a random order; :func:`~interp.studies.binding.task.episode_tokens`); the vocabulary gets
    the ``!`` marker. ``mid_layer`` (> 0): at every scored two-hop query, the residual after
    that block is also scored on the queried colour's shape, with weight ``mid_weight``
    (:meth:`~interp.studies.binding.model.BindingModel.forward_with_mid`). Both are training
    only: evaluation is the brief's (the last layer, the main query, whole-vocabulary argmax).

    ``image_phase_trains``: what phase 2 (the slot-only phase) trains: ``"all"`` (the brief:
    decoder and projector) or ``"projector"`` (the decoder frozen, as in LLaVA's first stage:
    the projector learns to feed the text-trained circuit before anything else moves; the
    mix phase then trains everything). The same schedule applies to every regime, so the
    text continuation's decoder is frozen for as many steps.

    ``align_weight`` (> 0; needs ``mid_layer``): on image examples, the residual after block
    ``align_layer`` (0: ``mid_layer``) at every query is also pulled toward the residual the
    model computes there on the text version of the same episode (same pairs, associations and
    queries; no gradient through the text side), weight ``align_weight`` on the squared
    distance relative to the text state's squared norm. The first hop read from a picture then lands where the
    second hop reads it in text; training only, off by default.

    ``image_stages``: slot-only phases at fewer objects before phase 2, ``[[objects, steps],
    ...]`` (few objects before many, the curriculum that made the text segment learn at every
    seed); image kinds draw them from a bank rendered at that object count.

    ``continuation_lrs``: candidate learning rates of segment 2 (the regimes' continuation; the
    text segment keeps ``lr``). Each regime's continuation is trained at every candidate, on the
    same batches, and the one whose model answers the validation episodes of the regime's own
    slot kind best is kept (ties: the first listed): a held-out picture bank of its own for the
    image kinds, text episodes from another seed for the text kinds; never the evaluation sets.
    Empty (the default): one continuation at ``lr``."""

    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200
    min_lr_frac: float = 0.1
    clip: float = 1.0
    text_steps: int = 20000
    image_steps: int = 10000
    mix_steps: int = 10000
    mix_frac: float = 0.2
    queries: int = 1
    dense: bool = False
    stages: tuple[tuple[int, int, int], ...] = ()
    lookups: bool = False
    mid_layer: int = 0
    mid_weight: float = 1.0
    image_phase_trains: str = "all"
    align_weight: float = 0.0
    align_layer: int = 0
    image_stages: tuple[tuple[int, int], ...] = ()
    continuation_lrs: tuple[float, ...] = ()
    checkpoint_every: int = 250
    log_every: int = 50

    def __post_init__(self) -> None:
        stages = []
        for st in self.stages:
            if (not isinstance(st, (list, tuple)) or len(st) != 3 or any(type(v) is not int for v in st)
                    or st[0] not in HOPS or st[1] < 2 or st[2] < 1):
                raise ValueError(f"train.stages entry {list(st)}: must be [hops, objects, steps] with hops in "
                                 f"{list(HOPS)}, objects >= 2, steps >= 1 (integers)")
            stages.append(tuple(st))
        object.__setattr__(self, "stages", tuple(stages))
        image_stages = []
        for st in self.image_stages:
            if (not isinstance(st, (list, tuple)) or len(st) != 2 or any(type(v) is not int for v in st)
                    or st[0] < 2 or st[1] < 1):
                raise ValueError(f"train.image_stages entry {list(st)}: must be [objects, steps] with objects >= 2, "
                                 "steps >= 1 (integers)")
            image_stages.append(tuple(st))
        object.__setattr__(self, "image_stages", tuple(image_stages))
        lrs = tuple(self.continuation_lrs)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in lrs) or len(set(lrs)) != len(lrs):
            raise ValueError(f"train.continuation_lrs={list(lrs)}: must be distinct learning rates > 0, e.g. [1e-3, 2e-3] "
                             "(empty: one continuation at train.lr)")
        object.__setattr__(self, "continuation_lrs", tuple(float(v) for v in lrs))
        if self.batch_size < 1 or self.lr <= 0 or self.text_steps < 1:
            raise ValueError(f"invalid train config: batch_size={self.batch_size} (>=1), lr={self.lr} (>0), "
                             f"text_steps={self.text_steps} (>=1)")
        if self.queries < 1:
            raise ValueError(f"train.queries={self.queries}: must be >= 1 (answers scored per training sequence)")
        if self.mid_layer < 0 or self.mid_weight < 0:
            raise ValueError(f"train.mid_layer={self.mid_layer} (>= 0; 0 = off), train.mid_weight={self.mid_weight} "
                             "(>= 0)")
        if self.align_weight < 0 or (self.align_weight and not self.mid_layer):
            raise ValueError(f"train.align_weight={self.align_weight}: must be >= 0, and > 0 needs train.mid_layer "
                             f"(the block whose residual is aligned; now {self.mid_layer})")
        if self.align_layer < 0:
            raise ValueError(f"train.align_layer={self.align_layer}: must be >= 0 (0: train.mid_layer)")
        if self.image_phase_trains not in PHASE_TRAINS:
            raise ValueError(f"train.image_phase_trains={self.image_phase_trains!r}: valid values are {list(PHASE_TRAINS)}")
        if self.image_steps < 0 or self.mix_steps < 0 or not 0.0 <= self.mix_frac <= 1.0:
            raise ValueError(f"invalid curriculum: image_steps={self.image_steps} (>=0), mix_steps={self.mix_steps} "
                             f"(>=0), mix_frac={self.mix_frac} (0..1)")


@dataclass(frozen=True)
class Phase:
    """``steps`` optimiser steps with a ``slot_frac`` share of ``slot`` examples; ``hops``/``n``:
    the task (two hops and the config's ``n_objects`` unless a curriculum stage says otherwise);
    ``trains``: ``"all"`` or ``"projector"`` (the decoder gets no update)."""

    steps: int
    slot: str
    slot_frac: float
    hops: int = 2
    n: int | None = None
    trains: str = "all"


def text_segment(cfg: TrainConfig) -> list[Phase]:
    """Segment 1: the curriculum stages (if any), then ``text_steps`` of the brief's task."""
    return [*(Phase(k, "text", 0.0, h, n) for h, n, k in cfg.stages), Phase(cfg.text_steps, "text", 0.0)]


def curriculum(regime: str, cfg: TrainConfig) -> list[Phase]:
    """Segment 2 of ``regime``: the ``image_stages`` (slot only, fewer objects), phase 2 (slot
    only) then phase 3 (``mix_frac`` slot)."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}: valid regimes are {list(REGIMES)}")
    slot = REGIMES[regime]
    phases = (*(Phase(k, slot, 1.0, n=n, trains=cfg.image_phase_trains) for n, k in cfg.image_stages),
              Phase(cfg.image_steps, slot, 1.0, trains=cfg.image_phase_trains), Phase(cfg.mix_steps, slot, cfg.mix_frac))
    return [p for p in phases if p.steps > 0]


class Sources:
    """Makes training and evaluation batches of every kind.

    ``bank``: rendered training contexts (image kinds); ``noise_pool [m, d]``: noise tokens;
    ``n_noise``: noise tokens per noise example; ``n_image``: patch tokens per image;
    ``stage_banks``: banks rendered at other object counts (``train.image_stages``), by count;
    ``noise_every``: in the noise-image version, noise tokens go only into the gaps before
    every ``noise_every``-th patch (a picture's row length: between rows) instead of between
    any two patches (1).
    """

    def __init__(self, task: TaskConfig, vocab, bank: Bank | None = None, noise_pool: torch.Tensor | None = None,
                 n_noise: int = 0, n_image: int = 0, stage_banks: dict[int, Bank] | None = None, noise_every: int = 1):
        self.task, self.vocab, self.bank, self.noise_pool = task, vocab, bank, noise_pool
        self.stage_banks = dict(stage_banks or {})
        self.n_noise = n_noise or n_image
        self.n_image = n_image
        self.noise_every = noise_every

    def batch(self, kind: str, rng: np.random.Generator, size: int, n: int | None = None,
              bank: Bank | None = None, queries: int = 1, dense: bool = False,
              hops: int = 2, lookups: bool = False, twin: bool = False) -> tuple[Layout, torch.Tensor | None]:
        """(layout, external tokens ``[n_ext, d]`` or None) for ``size`` episodes of ``kind``;
        ``queries > 1`` or ``dense``: the multi-query training layout (see :class:`TrainConfig`);
        ``hops = 1``: the one-hop curriculum task (text only); ``lookups``: the one-hop lookups
        appended to text sequences of the two-hop task (the image kinds have no context tokens
        to look up)."""
        if hops != 2 and kind != "text":
            raise ValueError(f"the one-hop curriculum task is text only, not {kind!r}")
        if kind not in SLOT_KINDS:
            raise ValueError(f"unknown example kind {kind!r}: valid kinds are {SLOT_KINDS}")
        if kind in ("text", "noise-text"):
            ep = sample_episodes(rng, self.task, size, n)
            gaps = noise_gaps(rng, size, ep.n, self.n_noise) if kind == "noise-text" else None
            after = train_queries(rng, ep, queries, dense)
            order = lookup_order(rng, ep) if lookups and hops == 2 else None
            lay = layout(ep, self.vocab, "text", gaps=gaps, after=after, hops=hops, lookups=order)
            return lay, external_tokens(lay, None, self.noise_pool, rng)
        if bank is None and n is not None and n != self.task.n_objects:
            if n not in self.stage_banks:
                raise ValueError(f"no bank of {n}-object contexts (stage banks: {sorted(self.stage_banks)})")
            bank = self.stage_banks[n]
        bank = bank or self.bank
        if bank is None:
            raise ValueError(f"kind {kind!r} needs a bank of rendered contexts")
        rows = rng.integers(0, len(bank), size=size)
        ep = reassign(rng, bank.episodes.select(rows), self.task)
        gaps = noise_gaps(rng, size, self.n_image, self.n_noise, self.noise_every) if kind == "noise-image" else None
        after = train_queries(rng, ep, queries, dense)
        lay = layout(ep, self.vocab, "image", n_image=self.n_image, gaps=gaps, after=after)
        ext = external_tokens(lay, bank.features[torch.as_tensor(rows)], self.noise_pool, rng)
        if twin:
            lay.twin = layout(ep, self.vocab, "text", after=after)
        return lay, ext


def _phase_at(phases: list[Phase], step: int) -> Phase:
    for p in phases:
        if step < p.steps:
            return p
        step -= p.steps
    return phases[-1]


def answer_loss(model: BindingModel, lay: Layout, ext, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The training loss of a batch: ``loss``, the answer cross-entropy summed over the
    sequences (each sequence's mean over its scored queries), plus ``cfg.mid_weight`` times the
    intermediate-layer loss when ``cfg.mid_layer`` (each sequence's mean over its two-hop
    queries); ``hits``: correct main-query answers; with ``mid_layer``, ``mid_hits`` /
    ``mid_n``: correct first-hop readouts and their count."""
    pos, target = lay.scored
    align = bool(cfg.align_weight) and lay.twin is not None
    if align:
        logits, mid_logits, hs = model.forward_with_mid(lay, ext, pos, cfg.mid_layer, hidden=True)
        h = hs[cfg.align_layer or cfg.mid_layer]  # [batch, k, d]
    elif cfg.mid_layer:
        logits, mid_logits = model.forward_with_mid(lay, ext, pos, cfg.mid_layer)  # [batch, k, vocab] each
    else:
        logits = model(lay, ext, positions=pos)  # [batch, k, vocab]
    target = target.to(logits.device)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum") / pos.shape[1]
    out = {"loss": loss, "hits": (logits[:, 0].argmax(-1) == target[:, 0]).sum()}
    if cfg.mid_layer:
        mid = lay.scored_mid.to(logits.device)
        valid = mid != -100
        n_mid = int(valid.sum())
        if n_mid:
            ce = torch.nn.functional.cross_entropy(mid_logits.flatten(0, 1), mid.flatten(), ignore_index=-100,
                                                   reduction="sum")
            out["loss"] = loss + cfg.mid_weight * ce * len(mid) / n_mid
            out["mid_hits"] = ((mid_logits.argmax(-1) == mid) & valid).sum()
        out["mid_n"] = torch.tensor(n_mid)
    if align:
        with torch.no_grad():
            twin_pos = lay.twin.scored[0]
            if twin_pos.shape != pos.shape:
                raise ValueError(f"the text twin scores {tuple(twin_pos.shape)} queries, the image layout {tuple(pos.shape)}")
            ref = model.residuals(lay.twin, None, twin_pos)[cfg.align_layer or cfg.mid_layer]  # [batch, k, d]
        rel = (h - ref).pow(2).sum(-1) / ref.pow(2).sum(-1).clamp_min(1e-6)  # [batch, k]
        out["align"] = rel.mean(1).sum().detach()
        out["loss"] = out["loss"] + cfg.align_weight * rel.mean(1).sum()
    return out


def train_segment(model: BindingModel, sources: Sources, phases: list[Phase], cfg: TrainConfig, out: Path, *,
                  seed: int, name: str, progress: bool = True) -> dict:
    """Train ``model`` through ``phases`` and write ``out/model.safetensors`` + ``out/train.json``.

    A finished segment is loaded instead of retrained; an interrupted one resumes from
    ``out/checkpoint.pt``. Returns the training log (losses and accuracies per
    ``log_every`` steps, seconds, steps)."""
    out = Path(out)
    final, log_path, ckpt = out / "model.safetensors", out / "train.json", out / "checkpoint.pt"
    if final.exists() and log_path.exists():
        model.load_state(load_tensors(final)[0])
        return read_json(log_path)
    total = sum(p.steps for p in phases)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, warmup_cosine(total, min(cfg.warmup_steps, max(1, total // 10)), cfg.min_lr_frac))
    step, history, seconds = 0, [], 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True, map_location="cpu")
        model.load_state(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, seconds = int(state["step"]), float(state["seconds"])
        history = read_json(out / "history.json") if (out / "history.json").exists() else []
    model.train()
    acc_loss = acc_hit = acc_n = mid_hit = mid_n = 0.0
    slot = [0.0] * 5  # the slot examples' main-query hits, count, first-hop hits, count, alignment distance
    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc=f"train {name}", disable=not progress, mininterval=5)
    while step < total:
        phase = _phase_at(phases, step)
        rng = np.random.default_rng([seed, _name_seed(name), step])
        n_slot = int(round(phase.slot_frac * cfg.batch_size)) if phase.slot != "text" else 0
        parts = [(phase.slot, n_slot), ("text", cfg.batch_size - n_slot)]
        loss_sum = torch.zeros(())
        for kind, size in parts:
            if size <= 0:
                continue
            lay, ext = sources.batch(kind, rng, size, n=phase.n, queries=cfg.queries, dense=cfg.dense, hops=phase.hops,
                                     lookups=cfg.lookups, twin=bool(cfg.align_weight))
            res = answer_loss(model, lay, ext, cfg)
            (res["loss"] / cfg.batch_size).backward()
            loss_sum = loss_sum + res["loss"].detach()
            acc_hit += float(res["hits"])
            mid_hit += float(res.get("mid_hits", 0))
            mid_n += float(res.get("mid_n", 0))
            if kind != "text":  # the slot's own examples, apart from the text mixed in with them
                slot[0] += float(res["hits"])
                slot[1] += size
                slot[2] += float(res.get("mid_hits", 0))
                slot[3] += float(res.get("mid_n", 0))
                slot[4] += float(res.get("align", 0))
        if phase.trains == "projector":  # AdamW skips parameters without a gradient: the decoder stays put
            for p in model.hf.parameters():
                p.grad = None
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        step += 1
        bar.update(1)
        acc_loss += float(loss_sum)
        acc_n += cfg.batch_size
        if step % cfg.log_every == 0 or step == total:
            record = {"step": step, "slot": phase.slot, "hops": phase.hops, "objects": phase.n or sources.task.n_objects,
                      "loss": acc_loss / acc_n, "acc": acc_hit / acc_n, "lr": sched.get_last_lr()[0]}
            if mid_n:  # the first hop read out at block mid_layer (batch accuracy)
                record["mid_acc"] = mid_hit / mid_n
            if slot[1]:  # a mixed batch's acc averages text and slot examples: the slot's own
                record["slot_acc"] = slot[0] / slot[1]
                if slot[3]:
                    record["slot_mid_acc"] = slot[2] / slot[3]
                if cfg.align_weight:  # the image first hop's distance to the text one (relative)
                    record["slot_align"] = slot[4] / slot[1]
            history.append(record)
            bar.set_postfix(loss=f"{acc_loss / acc_n:.3f}", acc=f"{acc_hit / acc_n:.2f}",
                            **({"mid": f"{mid_hit / mid_n:.2f}"} if mid_n else {}),
                            **({phase.slot: f"{slot[0] / slot[1]:.2f}"} if slot[1] else {}))
            acc_loss = acc_hit = acc_n = mid_hit = mid_n = 0.0
            slot = [0.0] * 5
        if step % cfg.checkpoint_every == 0 and step < total:
            elapsed = seconds + time.perf_counter() - t0
            with atomic_path(ckpt) as tmp:
                torch.save({"model": model.state(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                            "step": step, "seconds": elapsed}, tmp)
            write_json(out / "history.json", history)
    bar.close()
    model.eval()
    seconds += time.perf_counter() - t0
    log = {"name": name, "steps": total, "seconds": seconds, "phases": [asdict(p) for p in phases],
           "history": history, "config": asdict(cfg), "model": model.describe(), "environment": environment()}
    save_tensors(final, model.state(), {"name": name, "steps": total})
    write_json(log_path, log)
    for p in (ckpt, out / "history.json"):
        p.unlink(missing_ok=True)
    return log


def _name_seed(name: str) -> int:
    """A stable integer from a segment name (so segments draw different batches)."""
    return int(stable_hash(name, n=8), 16)
