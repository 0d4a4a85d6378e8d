"""Projector training with the LM frozen: resumable, atomic, logits only at answer tokens.

``python -m interp.train`` trains one run (see ``--help``); the study runner calls
:func:`train_projector` for every run of a grid.

Recipe (the brief): AdamW lr 1e-3, weight decay 0, 3% linear warmup then cosine, grad clip
1.0, global batch 16; loss = cross-entropy on the answer and EOS tokens only.
Resume: a checkpoint (projector + optimizer + step, ``torch.load(weights_only=True)``)
is written atomically every ``checkpoint_every`` steps; the data order of every epoch
is a pure function of (seed, epoch), so a resumed run sees exactly the batches it would
have seen. A finished run (``projector.safetensors`` + ``train.json``) is skipped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from interp.examples import Example, QuestionTokens, example_batch
from interp.io import atomic_path, environment, read_json, write_json
from interp.vlm import HookedVLM


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one projector run."""

    epochs: float = 5.0
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_frac: float = 0.03
    clip: float = 1.0
    seed: int = 42
    checkpoint_every: int = 50
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs <= 0 or self.lr <= 0:
            raise ValueError(f"invalid TrainConfig: batch_size={self.batch_size} (>=1), epochs={self.epochs} (>0), lr={self.lr} (>0)")


def lr_lambda(total: int, warmup: int):
    """Linear warmup to 1 over ``warmup`` steps, then cosine to 0 at ``total``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


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


def _save_checkpoint(path: Path, vlm: HookedVLM, opt, sched, step: int, losses: list[float]) -> None:
    state = {"projector": vlm.projector.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "step": step, "losses": torch.tensor(losses)}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_projector(
    vlm: HookedVLM,
    features: torch.Tensor,
    examples: Sequence[Example],
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    meta: dict | None = None,
    stop_after: int | None = None,
) -> dict:
    """Train ``vlm.projector`` on ``examples`` (rows of ``features [n_images, tokens, d_img]``).

    Writes to ``run_dir``: ``checkpoint.pt`` while running, then ``projector.safetensors``
    and ``train.json`` (config, losses, timing, versions, ``meta``). Returns the summary.
    ``stop_after`` ends the call after that many steps (to test resuming).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final, summary_path, ckpt = run_dir / "projector.safetensors", run_dir / "train.json", run_dir / "checkpoint.pt"
    if final.exists() and summary_path.exists():
        from interp.projector import Projector

        proj, _ = Projector.load(final, lm=vlm.lm.name, encoder=vlm.projector.config.encoder)
        vlm.projector.load_state_dict(proj.state_dict())
        return read_json(summary_path)
    if not examples:
        raise ValueError("no training examples")

    tokens = QuestionTokens(vlm.tokenizer)
    per_epoch, total = plan(len(examples), cfg)
    opt = torch.optim.AdamW(vlm.projector.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, max(1, round(cfg.warmup_frac * total))))
    step, losses = 0, []
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True, map_location=vlm.lm.device)
        vlm.projector.load_state_dict(state["projector"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, losses = int(state["step"]), state["losses"].tolist()

    vlm.projector.train()
    t0, n_seen = time.perf_counter(), 0
    order, order_epoch = None, -1
    bar = tqdm(total=total, initial=step, desc=f"train {run_dir.name}", disable=not progress, unit="step")
    ran = 0
    while step < total:
        epoch, i = divmod(step, per_epoch)
        if epoch != order_epoch:
            order, order_epoch = epoch_order(len(examples), cfg.seed, epoch), epoch
        chunk = [examples[j] for j in order[i * cfg.batch_size:(i + 1) * cfg.batch_size].tolist()]
        batch, feats = example_batch(tokens, chunk, features, vlm.n_image_tokens, with_answer=True)
        loss = vlm.answer_loss(batch.to(vlm.lm.device), feats)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vlm.projector.parameters(), cfg.clip)
        opt.step()
        sched.step()
        step += 1
        ran += 1
        n_seen += len(chunk)
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        if step % cfg.checkpoint_every == 0 or step == total:
            _save_checkpoint(ckpt, vlm, opt, sched, step, losses)
        if stop_after is not None and ran >= stop_after and step < total:
            bar.close()
            return {"stopped_at": step}
    bar.close()
    vlm.projector.eval()
    elapsed = time.perf_counter() - t0
    summary = {
        "train_config": asdict(cfg),
        "projector": asdict(vlm.projector.config),
        "n_examples": len(examples),
        "steps": total,
        "steps_per_epoch": per_epoch,
        "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "losses": losses,
        "seconds_this_session": elapsed,
        "examples_per_second_this_session": n_seen / elapsed if elapsed > 0 else None,
        "environment": environment(),
        "meta": meta or {},
    }
    vlm.projector.save(final, extra={"train_config": asdict(cfg), "meta": json.loads(json.dumps(meta or {}, default=str))})
    write_json(summary_path, summary)
    ckpt.unlink(missing_ok=True)
    return summary


def main(argv: list[str] | None = None) -> None:
    """`python -m interp.train CONFIG --world W --ablation A --seed S [--random-init]`: one run."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m interp.train", description="Train one projector run of a study config.")
    ap.add_argument("config", help="study TOML, e.g. experiments/quick.toml")
    ap.add_argument("--world", default="original", help="original | within | across")
    ap.add_argument("--ablation", default="random:1.0", help="random:<rate> | systematic:<n>")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--random-init", action="store_true", help="the random-init LM control")
    ap.add_argument("--no-eval", action="store_true", help="train only")
    args = ap.parse_args(argv)
    from interp.studies.config import load_config
    from interp.studies.taxonomy import RunSpec, single_run

    cfg = load_config(args.config)
    spec = RunSpec(args.world, args.ablation, args.seed, args.random_init)
    rows = single_run(cfg, spec, evaluate=not args.no_eval)
    print(f"[train] {spec.run_id}: {len(rows)} result rows in {cfg.out_dir}/runs/{spec.run_id}")


if __name__ == "__main__":
    main()
