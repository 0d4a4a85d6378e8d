"""Projector training with the LM frozen: resumable, atomic, logits only at answer tokens.

The core trainer: it knows no study. ``python -m interp.train`` (:mod:`interp.train`) trains
one run of a taxonomy study config with it; the study runner calls :func:`train_projector`
for every run of a grid. It runs in one process or under ``torchrun`` (PyTorch
DistributedDataParallel)::

    python -m interp.train experiments/paper.toml --world within --seed 42
    torchrun --nproc_per_node 4 -m interp.train experiments/paper.toml --world within --seed 42

Distributed: every rank holds the frozen LM (no gradients, not wrapped); only the
projector is wrapped in DDP, which all-reduces its gradients. Each global batch of
``batch_size`` examples (the same batches, in the same order, as in one process) is
split across ranks, and the loss is the global mean over answer tokens (each rank's
summed cross-entropy divided by the global token count), so the update equals the
single-process one up to float rounding. Rank 0 alone writes checkpoints and results.
GPU: the LM in bf16 on ``cuda`` (``model.dtype = "bfloat16"``) trains under bf16 autocast
with fp32 projector weights and optimizer state; ``precision`` selects it explicitly.

Recipe (the brief): AdamW lr 1e-3, weight decay 0, 3% linear warmup then cosine, grad clip
1.0, global batch 16; loss = cross-entropy on the answer and EOS tokens only.
Resume: a checkpoint (projector + optimizer + step, ``torch.load(weights_only=True)``)
is written atomically every ``checkpoint_every`` steps; the data order of every epoch
is a pure function of (seed, epoch), so a resumed run sees exactly the batches it would
have seen. A finished run (``projector.safetensors`` + ``train.json``) is skipped.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from interp import distributed as D
from interp.calibration import calibrate_answer_bias
from interp.diagnostics import learning_curve_figure, stage_history, verdict
from interp.examples import Example, QuestionTokens, example_batch
from interp.io import atomic_path, environment, read_json, write_csv, write_json
from interp.plots import save_figure
from interp.projector import Projector
from interp.schedule import warmup_cosine
from interp.vlm import HookedVLM

PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one projector run. ``calibrate_images``: the number of
    training images whose leaf questions calibrate the answers at the end (the caller passes
    them to :func:`train_projector`; 0 = off)."""

    epochs: float = 5.0
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_frac: float = 0.03
    clip: float = 1.0
    seed: int = 42
    checkpoint_every: int = 50
    max_steps: int | None = None
    eval_every: int = 0
    fresh_negatives: bool = False
    calibrate_images: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs <= 0 or self.lr <= 0:
            raise ValueError(f"invalid TrainConfig: batch_size={self.batch_size} (>=1), epochs={self.epochs} (>0), lr={self.lr} (>0)")
        if self.eval_every < 0:
            raise ValueError(f"invalid TrainConfig: eval_every={self.eval_every} (0 = off, else >= 1)")
        if self.calibrate_images < 0:
            raise ValueError(f"invalid TrainConfig: calibrate_images={self.calibrate_images} (0 = off, else >= 1)")


def lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    """Linear warmup to 1 over ``warmup`` steps, then cosine to 0 at ``total``."""
    return warmup_cosine(total, warmup)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The example order of an epoch: a pure function of (n, seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g)


def plan(n_examples: int, cfg: TrainConfig) -> tuple[int, int]:
    """(steps per epoch, total steps)."""
    per_epoch = math.ceil(n_examples / cfg.batch_size)
    total = math.ceil(cfg.epochs * per_epoch)
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    return per_epoch, total


def _save_checkpoint(path: Path, projector: nn.Module, opt, sched, step: int, losses: list[float],
                     diagnostics: list[dict], train_seconds: float) -> None:
    state = {"projector": projector.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "step": step, "losses": torch.tensor(losses, dtype=torch.float64),
             "diagnostics": json.dumps(diagnostics), "train_seconds": torch.tensor(train_seconds, dtype=torch.float64)}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def resolve_precision(precision: str | None, lm_dtype: torch.dtype, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run, or None for plain fp32.

    ``None`` (auto): bf16 autocast when the frozen LM is held in bf16 (the GPU set-up,
    ``model.dtype = "bfloat16"``), else none. ``"float32"``: none. ``"bfloat16"``: bf16
    autocast on the LM's device (also on CPU, which supports it; slower there).
    """
    if precision is None:
        return torch.bfloat16 if lm_dtype == torch.bfloat16 else None
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: valid values are {list(PRECISIONS)} or None (auto from the LM dtype)")
    return torch.bfloat16 if precision == "bfloat16" else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """bf16 autocast on ``device`` (a no-op context when ``dtype`` is None)."""
    return torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def verdict_now(record: dict) -> list[str]:
    """Warnings about one diagnostic record, skipped at step 0 (an untrained projector is at chance)."""
    return verdict([record]) if record["step"] > 0 else []


def postfix(diagnostics: list[dict]) -> dict[str, str]:
    """Progress-bar fields from the latest diagnostic record."""
    if not diagnostics:
        return {}
    last, out = diagnostics[-1], {}
    for key, label in (("heldout_leaf_f1", "val_f1"), ("token_cosine", "cos"), ("norm_ratio", "norm")):
        if last.get(key) is not None:
            out[label] = f"{last[key]:.2f}" if key != "heldout_leaf_f1" else f"{last[key]:.1f}"
    return out


class _Wrapped(nn.Module):
    """Stands in for ``vlm.projector`` while training: calls go through the DDP wrapper
    (so its gradient hooks fire); ``config`` is the projector's."""

    def __init__(self, ddp: nn.Module, projector: nn.Module):
        super().__init__()
        self.ddp = ddp
        self.config = projector.config

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.ddp(features)


@contextlib.contextmanager
def _data_parallel(vlm: HookedVLM, info: D.DistInfo) -> Iterator[nn.Module]:
    """Wrap ``vlm.projector`` in DistributedDataParallel for the block (world > 1); yields
    the module whose forward the training step must call (the wrapper or the projector)."""
    proj = vlm.projector
    if not info.enabled:
        yield proj
        return
    from torch.nn.parallel import DistributedDataParallel as DDP  # deferred: only multi-process runs need DDP

    dev = next(proj.parameters()).device
    ddp = DDP(proj, device_ids=[dev.index] if dev.type == "cuda" else None)
    wrapped = _Wrapped(ddp, proj)
    vlm.projector = wrapped
    try:
        yield wrapped
    finally:
        vlm.projector = proj


def answer_ce_sum(vlm: HookedVLM, batch, features: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy over the answer and EOS tokens, their count); logits only there."""
    predicts, targets = batch.answer_targets()
    if targets.numel() == 0:
        raise ValueError("the batch has no answer tokens to train on")
    out = vlm.forward(batch, features, logits_at=predicts)
    return nn.functional.cross_entropy(out.logits.float(), targets, reduction="sum"), int(targets.numel())


Examples = Sequence[Example] | Callable[[int], Sequence[Example]]
Monitor = Callable[[], dict]


def train_projector(
    vlm: HookedVLM,
    features: torch.Tensor,
    examples: Examples,
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    meta: dict | None = None,
    stop_after: int | None = None,
    precision: str | None = None,
    monitor: Monitor | None = None,
    measured: dict | None = None,
    calibrate: Sequence[Example] | None = None,
) -> dict:
    """Train ``vlm.projector`` on ``examples`` (rows of ``features [n_images, tokens, d_img]``).

    ``examples``: a list, or ``epoch -> list`` (the same number of examples every epoch, e.g.
    fresh distractors per epoch). ``monitor``: called every ``cfg.eval_every`` steps and at the
    end (and at step 0); returns held-out diagnostics (see :mod:`interp.diagnostics`), shown
    in the progress bar and recorded in ``train.json`` and ``diagnostics.csv``.
    ``measured``: the monitor's record for the projector as it is at step 0, when the caller
    has just measured it (the readout stage's last record): used instead of a second call.
    ``calibrate``: questions with balanced answers (training questions) on which the trained
    projector's output bias is calibrated at the end (:mod:`interp.calibration`); the
    result, with the monitor's record after it, is the summary's ``calibration``.

    Writes to ``run_dir``: ``checkpoint.pt`` while running, then ``projector.safetensors``,
    ``train.json`` (config, losses, diagnostics, timing, versions, ``meta``),
    ``diagnostics.csv`` and ``learning_curve.html/.png``. Returns the summary.
    ``stop_after`` ends the call after that many steps (to test resuming).
    ``precision``: None (auto: bf16 autocast when the LM is bf16), "float32" or "bfloat16".

    Under ``torchrun`` (a process group is running, see :mod:`interp.distributed`) every
    rank calls this with the same arguments: each global batch is split across ranks,
    the projector is wrapped in DDP, rank 0 writes. Single-process behaviour is unchanged.
    """
    info = D.current()
    run_dir = Path(run_dir)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    final, summary_path, ckpt = run_dir / "projector.safetensors", run_dir / "train.json", run_dir / "checkpoint.pt"
    if final.exists() and summary_path.exists():
        proj, _ = Projector.load(final, lm=vlm.lm.name, encoder=vlm.projector.config.encoder)
        vlm.projector.load_state_dict(proj.state_dict())
        return read_json(summary_path)
    epoch_examples = examples if callable(examples) else (lambda epoch: examples)
    n_examples = len(epoch_examples(0))
    if not n_examples:
        raise ValueError("no training examples")

    device = vlm.lm.device
    if vlm.lm.dtype == torch.float16:
        raise ValueError("training with the frozen LM in float16 would need loss scaling (GradScaler), which this "
                         "trainer does not do: use model.dtype = 'bfloat16' (GPU) or 'float32'")
    amp = resolve_precision(precision, vlm.lm.dtype, device)
    tokens = QuestionTokens(vlm.tokenizer)
    per_epoch, total = plan(n_examples, cfg)
    opt = torch.optim.AdamW(vlm.projector.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, max(1, round(cfg.warmup_frac * total))))
    step, losses, diagnostics, t_train = 0, [], [], 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True, map_location=device)
        vlm.projector.load_state_dict(state["projector"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, losses = int(state["step"]), state["losses"].tolist()
        diagnostics = json.loads(state.get("diagnostics", "[]"))
        t_train = float(state.get("train_seconds", 0.0))  # seconds in training steps, across sessions
    # every rank runs the monitor: with a sharded LM its forwards are collectives
    every = cfg.eval_every if monitor is not None else 0
    said: set[str] = set()

    def diagnose(at: int) -> None:
        if not every or any(d["step"] == at for d in diagnostics):
            return
        was = vlm.projector.training
        vlm.projector.eval()
        rec = {"step": at, "train_seconds": t_train, "loss": sum(losses[-every:]) / len(losses[-every:]) if losses else None,
               **monitor()}
        vlm.projector.train(was)
        diagnostics.append(rec)
        now = verdict_now(rec) if info.is_main else []
        for w in now:  # said once per kind of problem, again when it changes
            if w.split(":")[0] not in said:
                tqdm.write(f"[train] {run_dir.name}: {w}")
        said.clear()
        said.update(w.split(":")[0] for w in now)

    projector = vlm.projector  # the unwrapped module: what checkpoints hold
    if step == 0 and measured is not None and every and not diagnostics:
        keep = {k: v for k, v in measured.items() if k not in ("step", "train_seconds", "loss", "stage")}
        diagnostics.append({"step": 0, "train_seconds": 0.0, "loss": None, **keep})
    if step == 0:
        diagnose(0)
    projector.train()
    t0, n_seen = time.perf_counter(), 0
    order, order_epoch = None, -1
    bar = tqdm(total=total, initial=step, desc=f"train {run_dir.name}", disable=not (progress and info.is_main),
               unit="step")
    ran = 0
    with _data_parallel(vlm, info) as module:
        params = list(module.parameters())  # the projector's (through the DDP wrapper if any)
        while step < total:
            epoch, i = divmod(step, per_epoch)
            if epoch != order_epoch:
                current = epoch_examples(epoch)
                if len(current) != n_examples:
                    raise ValueError(f"epoch {epoch} has {len(current)} examples, epoch 0 had {n_examples}: "
                                     "an example function must give the same number every epoch")
                order, order_epoch = epoch_order(n_examples, cfg.seed, epoch), epoch
            t_step = time.perf_counter()
            chunk = [current[j] for j in order[i * cfg.batch_size:(i + 1) * cfg.batch_size].tolist()]
            mine = D.shard(chunk, info)
            # fewer examples than ranks in this batch: run one with weight 0, so that this rank
            # joins the collectives (DDP's gradient all-reduce, FSDP's all-gathers) with zeros
            weight = 1.0 if mine else 0.0
            with autocast(device, amp):
                batch, feats = example_batch(tokens, mine or chunk[:1], features, vlm.n_image_tokens, with_answer=True)
                ce, n_tok = answer_ce_sum(vlm, batch.to(device), feats)
            ce, n_tok = ce * weight, n_tok if mine else 0
            counts = D.all_reduce_sum(torch.tensor([float(n_tok), ce.item()], dtype=torch.float64), info)
            n_global, ce_global = float(counts[0]), float(counts[1])
            # DDP averages gradients over ranks: scale so the result is d(global mean CE)
            loss = ce * (info.world_size / n_global)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            opt.step()
            sched.step()
            step += 1
            ran += 1
            n_seen += len(chunk)
            losses.append(ce_global / n_global)
            t_train += time.perf_counter() - t_step
            if every and (step % every == 0 or step == total):
                diagnose(step)
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}", **postfix(diagnostics))
            if info.is_main and (step % cfg.checkpoint_every == 0 or step == total):
                _save_checkpoint(ckpt, projector, opt, sched, step, losses, diagnostics, t_train)
            if stop_after is not None and ran >= stop_after and step < total:
                bar.close()
                D.barrier(info)
                return {"stopped_at": step}
    bar.close()
    vlm.projector.eval()
    elapsed = time.perf_counter() - t0
    calibration = None
    if calibrate:
        t_cal = time.perf_counter()
        calibration = calibrate_answer_bias(vlm, features, calibrate)
        calibration["seconds"] = time.perf_counter() - t_cal
        if every and calibration["applied"]:
            calibration["diagnostics"] = [{"step": total, "train_seconds": t_train, "loss": None, **monitor()}]
        if info.is_main and calibration["applied"]:
            tqdm.write(f"[train] {run_dir.name}: answer mass {calibration['answer_mass']:.3f} (< "
                       f"{calibration['mass_floor']}): answers calibrated on {len(calibrate)} training questions, "
                       f"Yes rate {calibration['yes_rate_before']:.0f}% -> {calibration['yes_rate_after']:.0f}%")
    summary = {
        "train_config": asdict(cfg),
        "projector": asdict(vlm.projector.config),
        "n_examples": n_examples,
        "steps": total,
        "steps_per_epoch": per_epoch,
        "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "losses": losses,
        "diagnostics": diagnostics,
        "warnings": verdict(diagnostics + ((calibration or {}).get("diagnostics") or [])),
        "seconds_this_session": elapsed,
        "train_seconds": t_train,
        "examples_per_second_this_session": n_seen / elapsed if elapsed > 0 else None,
        "world_size": info.world_size,
        "device": str(device),
        "precision": "bfloat16-autocast" if amp is not None else "float32",
        "lm_dtype": str(vlm.lm.dtype).removeprefix("torch."),
        "environment": environment(),
        "meta": meta or {},
        "calibration": calibration,
    }
    if info.is_main:
        vlm.projector.save(final, extra={"train_config": asdict(cfg),
                                         "meta": json.loads(json.dumps(meta or {}, default=str))})
        # the whole history: a warm start's readout stage (meta["readout"], interp.warmstart), then these steps
        history, all_losses = stage_history(summary)
        if history:
            write_csv(run_dir / "diagnostics.csv", history)
            save_figure(learning_curve_figure(history, all_losses, title=f"learning curve: {run_dir.name}"),
                        run_dir / "learning_curve")
        write_json(summary_path, summary)
        ckpt.unlink(missing_ok=True)
    D.barrier(info)  # every rank returns once the results are on disk
    return summary
