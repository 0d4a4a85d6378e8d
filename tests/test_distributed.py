"""Projector training under torchrun (DDP, gloo, 2 CPU processes) equals single-process training
on the same global batches; a run killed mid-way resumes (with the frozen LM's blocks sharded
by FSDP2 across the two processes) to the same weights; GPU-readiness options
(precision/autocast) run the same code path on CPU.

This file is also the torchrun worker: ``python -m torch.distributed.run --nproc_per_node 2
tests/test_distributed.py --worker RUN_DIR [--kill-at K] [--shard-lm]``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import make_vlm  # noqa: E402

from interp import distributed as D  # noqa: E402
from interp.examples import Example  # noqa: E402
from interp.train_projector import TrainConfig, resolve_precision, train_projector  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["bird", "fish", "tool", "fruit", "vehicle", "item of clothing"]
ANSWERS = ["Yes", "No", "Not at all"]  # answers of 1 and 3 tokens: ranks see unequal token counts
# 21 examples in batches of 5: per epoch 4 full batches and one of 1 example (rank 1 gets none);
# 1.4 epochs = 7 steps.
CFG = TrainConfig(epochs=1.4, batch_size=5, checkpoint_every=1, seed=3, lr=3e-3)
KILL_AFTER = 3  # the killed run dies in step 4, after rank 0 checkpointed step 3


def _examples(n: int = 21) -> list[Example]:
    return [Example(i % 6, f"Is there a {WORDS[i % 6]} in the image?", ANSWERS[i % 3], "leaf", "c", WORDS[i % 6])
            for i in range(n)]


def _features() -> torch.Tensor:
    return torch.randn(6, 16, 32, generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------ worker
def _worker(run_dir: str, kill_at: int | None, shard_lm: bool) -> None:
    torch.set_num_threads(1)
    info = D.setup("cpu")
    assert info.world_size == 2 and info.backend == "gloo", info
    from interp.models.hooked import HookedLM
    from interp.models.lm import load_lm

    vlm = make_vlm(HookedLM(load_lm("tiny-llama", seed=0)), seed=1 + info.rank)  # DDP broadcasts rank 0's init
    if shard_lm:
        held = D.shard_lm(vlm.lm, info)
        assert abs(held - 0.5) < 0.01, held  # each rank holds half of the blocks' weights
    if kill_at is not None and info.rank == 0:
        calls = {"n": 0}

        def die(module, args):  # one projector call per step: the (kill_at+1)-th call is step kill_at+1
            calls["n"] += 1
            if calls["n"] == kill_at + 1:
                os.kill(os.getpid(), signal.SIGKILL)

        vlm.projector.register_forward_pre_hook(die)
    train_projector(vlm, _features(), _examples(), CFG, run_dir, progress=False)
    D.teardown()


def _torchrun(run_dir: Path, kill_at: int | None = None, shard_lm: bool = False,
              timeout: float = 400) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).resolve()), "--worker", str(run_dir)]
    if kill_at is not None:
        cmd += ["--kill-at", str(kill_at)]
    if shard_lm:
        cmd += ["--shard-lm"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------- tests
def _reference(tiny_llama, tmp_path: Path) -> tuple[list[dict[str, torch.Tensor]], dict]:
    """Single-process run, one step per call: the projector state after every step, and the summary."""
    vlm = make_vlm(tiny_llama, seed=1)
    states = []
    while True:
        out = train_projector(vlm, _features(), _examples(), CFG, tmp_path / "ref", progress=False, stop_after=1)
        states.append({k: v.clone() for k, v in vlm.projector.state_dict().items()})
        if "stopped_at" not in out:
            return states, out


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 2e-5) -> float:
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < atol, f"max |difference| {worst:.3g} >= {atol}"
    return worst


@pytest.mark.integration
def test_ddp_two_processes_match_single_process_and_resume_after_kill_with_sharded_lm(tiny_llama, tmp_path):
    from interp.projector import Projector

    states, ref = _reference(tiny_llama, tmp_path)
    assert ref["steps"] == 7 and len(states) == 7 and ref["world_size"] == 1
    # the weights move (else "equal" would prove nothing)
    assert float((states[-1]["net.0.weight"] - states[0]["net.0.weight"]).abs().max()) > 1e-3

    run = tmp_path / "ddp"
    killed = _torchrun(run, kill_at=KILL_AFTER)
    assert killed.returncode != 0, "the killed run should fail"
    assert (run / "checkpoint.pt").exists() and not (run / "projector.safetensors").exists(), killed.stderr[-2000:]
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert int(ckpt["step"]) == KILL_AFTER
    # N = 3 steps of 2-process DDP (unequal shards, token-weighted loss) == 3 single-process steps
    _close(ckpt["projector"], states[KILL_AFTER - 1])

    resumed = _torchrun(run, shard_lm=True)  # resume with the LM sharded (FSDP2): same numbers
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    proj, _ = Projector.load(run / "projector.safetensors")
    _close(proj.state_dict(), states[-1])
    summary = __import__("json").loads((run / "train.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 7
    assert summary["losses"] == pytest.approx(ref["losses"], abs=1e-4)
    assert not (run / "checkpoint.pt").exists()


def test_single_process_helpers_are_no_ops(tmp_path):
    info = D.current()
    assert not info.enabled and info.is_main and info.world_size == 1
    assert D.shard([1, 2, 3], info) == [1, 2, 3]
    assert D.shard(list(range(7)), D.DistInfo(rank=1, world_size=3)) == [1, 4]
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(D.all_reduce_sum(t, info), t)
    assert D.on_main(lambda: 5, info=info) == 5 and D.on_main(lambda: 5, info=D.DistInfo(1, 2)) is None
    assert D.local_device("cpu") == torch.device("cpu")
    assert D.local_device("cuda", D.DistInfo(rank=3, world_size=4, local_rank=1)) == torch.device("cuda", 1)
    assert D.default_backend("cuda") == "nccl" and D.default_backend("cpu") == "gloo"
    assert D.setup("cpu") == info  # no WORLD_SIZE: nothing started


def test_bad_launcher_environment_is_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match="RANK=5 must be in 0..1"):
        D.launched()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK='x'"):
        D.launched()


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision(None, torch.float32, cpu) is None
    assert resolve_precision(None, torch.bfloat16, cpu) == torch.bfloat16
    assert resolve_precision("float32", torch.bfloat16, cpu) is None
    assert resolve_precision("bfloat16", torch.float32, cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="valid values are"):
        resolve_precision("fp8", torch.float32, cpu)


def test_bf16_autocast_path_runs_on_cpu_and_keeps_fp32_master_weights(tiny_llama, tmp_path):
    """The GPU set-up's code path (bf16 autocast) on CPU: fp32 projector and optimizer state,
    finite losses close to the fp32 run's, and a different numeric path (it really ran bf16)."""
    cfg = TrainConfig(epochs=1.0, batch_size=7, seed=3, lr=3e-3)
    a, b = make_vlm(tiny_llama, seed=1), make_vlm(tiny_llama, seed=1)
    s32 = train_projector(a, _features(), _examples(), cfg, tmp_path / "fp32", progress=False, precision="float32")
    s16 = train_projector(b, _features(), _examples(), cfg, tmp_path / "bf16", progress=False, precision="bfloat16")
    assert s32["precision"] == "float32" and s16["precision"] == "bfloat16-autocast"
    assert all(p.dtype == torch.float32 for p in b.projector.parameters())
    assert all(torch.isfinite(torch.tensor(s16["losses"])))
    assert s16["losses"] != s32["losses"]
    assert s16["losses"][0] == pytest.approx(s32["losses"][0], rel=0.05)


@pytest.mark.integration
def test_bf16_lm_trains_under_auto_precision(tmp_path):
    """A frozen LM held in bf16 (the paper set-up) with an fp32 projector: auto precision
    picks bf16 autocast and the projector still learns."""
    from interp.models.hooked import HookedLM
    from interp.models.lm import load_lm

    lm = HookedLM(load_lm("tiny-llama", seed=0, dtype=torch.bfloat16))
    vlm = make_vlm(lm, seed=1)
    s = train_projector(vlm, _features(), _examples(42), TrainConfig(epochs=4, batch_size=7, lr=3e-3), tmp_path,
                        progress=False)
    assert s["precision"] == "bfloat16-autocast" and s["lm_dtype"] == "bfloat16"
    assert sum(s["losses"][-3:]) < sum(s["losses"][:3])


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True)
    ap.add_argument("--kill-at", type=int, default=None)
    ap.add_argument("--shard-lm", action="store_true")
    args = ap.parse_args()
    _worker(args.worker, args.kill_at, args.shard_lm)
