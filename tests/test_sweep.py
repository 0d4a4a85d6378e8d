"""Sweeps: runs keyed by config hash, one job per index (SLURM array) or shard, finished runs
skipped, other configs refused; the same job under torchrun (2 gloo processes, LM sharded)
gives the single-process weights; the SLURM script and the Ray example drive the same calls."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from interp.studies.taxonomy.config import load_config
from interp.sweep import (SweepConflictError, list_runs, main, parse_shard, run_key, select, status)

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "experiments" / "quick.toml"
# a small slice of the embedded study with the tiny LM: 2 runs (original world + random-init control)
TINY = ["data.max_concepts=6", "model.lm='tiny-llama'", "model.pool_to=1", "train.epochs=1.0", "train.batch_size=8",
        "grid.worlds=['original']", "eval.lm_only=False", "eval.batch_size=32"]


def _tiny_cfg(out: Path, extra: list[str] = ()):
    from interp.sweep import parse_overrides

    return load_config(QUICK, parse_overrides(TINY + list(extra), str(out)))


def _args(out: Path, *more: str) -> list[str]:
    return [str(QUICK), "--out", str(out), "--no-progress"] + [a for s in TINY for a in ("--set", s)] + list(more)


def test_run_keys_depend_on_what_determines_a_result():
    cfg = load_config(QUICK)
    runs = list_runs(cfg)
    assert [r.index for r in runs] == list(range(4)) and len({r.key for r in runs}) == 4
    assert [r.key for r in list_runs(load_config(QUICK))] == [r.key for r in runs]  # stable
    same = [replace(cfg, out_dir="elsewhere"), replace(cfg, model=replace(cfg.model, device="cuda")),
            replace(cfg, train=replace(cfg.train, checkpoint_every=7, eval_every=3)),
            replace(cfg, grid=replace(cfg.grid, seeds=(42, 7)))]  # a bigger grid keeps the old runs' keys
    for other in same:
        keys = {r.run_id: r.key for r in list_runs(other)}
        assert all(keys[r.run_id] == r.key for r in runs)
    changed = replace(cfg, train=replace(cfg.train, lr=cfg.train.lr * 3))
    assert all(run_key(changed, r.spec) != r.key for r in runs)
    assert run_key(replace(cfg, model=replace(cfg.model, dtype="bfloat16")), runs[0].spec) != runs[0].key
    assert run_key(replace(cfg, warm_start=replace(cfg.warm_start, gain=2.0)), runs[0].spec) != runs[0].key
    assert run_key(replace(cfg, prototypes=replace(cfg.prototypes, refine_steps=7)), runs[0].spec) != runs[0].key


def test_list_overrides_become_tuples_like_toml_lists():
    from interp.sweep import parse_overrides

    over = parse_overrides(["grid.control_ablations=[]", "grid.worlds=['original', 'within']", "train.lr=3e-4",
                            "model.lm=qwen3-8b"])
    assert over == {"grid.control_ablations": (), "grid.worlds": ("original", "within"), "train.lr": 3e-4,
                    "model.lm": "qwen3-8b"}
    cfg = load_config(QUICK, over)  # a list here used to fail in GridConfig (tuple + list)
    assert cfg.grid.control_ablations == () and len(list_runs(cfg)) == 2
    assert run_key(cfg, list_runs(cfg)[0]) == run_key(load_config(QUICK, over), list_runs(cfg)[0])


def test_select_index_and_shards():
    runs = list_runs(load_config(QUICK, {"grid.seeds": (1, 2, 3)}))
    assert len(runs) == 12
    shards = [select(runs, shard=(i, 5)) for i in range(5)]
    assert sorted(r.index for s in shards for r in s) == list(range(12))
    assert select(runs, index=11) == [runs[11]]
    with pytest.raises(IndexError, match="runs 0..11"):
        select(runs, index=12)
    with pytest.raises(ValueError, match="i in 0..n-1"):
        parse_shard("5/5")
    with pytest.raises(ValueError, match="expected i/n"):
        parse_shard("half")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Run index 0 as a SLURM array task would (index from SLURM_ARRAY_TASK_ID), then a shard
    covering both runs."""
    from interp.data.images import verify

    ok, why = verify()
    if not ok:
        pytest.skip(f"embedded image set not built ({why}): run `python -m interp.data.build`")
    out = tmp_path_factory.mktemp("sweep")
    os.environ["SLURM_ARRAY_TASK_ID"] = "0"
    try:
        first = main(_args(out, "--run-index", "env"))
    finally:
        del os.environ["SLURM_ARRAY_TASK_ID"]
    statuses = [status(_tiny_cfg(out), r) for r in list_runs(_tiny_cfg(out))]
    second = main(_args(out, "--shard", "0/1"))
    return out, first, statuses, second


@pytest.mark.integration  # the fixture runs the embedded image encoder over real images
def test_one_job_per_index_then_skip(swept, capsys):
    out, first, statuses, second = swept
    assert [r["status"] for r in first] == ["ran"] and statuses == ["done", "pending"]
    assert [r["status"] for r in second] == ["skipped", "ran"]
    cfg = _tiny_cfg(out)
    for run in list_runs(cfg):
        rec = json.loads((out / "runs" / run.run_id / "sweep.json").read_text())
        assert rec["key"] == run.key and rec["state"] == "done" and rec["environment"]["packages"]["torch"]
        assert (out / "runs" / run.run_id / "rows.json").exists()
    main(_args(out, "--list", "--json"))
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["status"] for r in listed] == ["done", "done"] and listed[0]["key"] == list_runs(cfg)[0].key


@pytest.mark.integration  # the fixture runs the embedded image encoder over real images
def test_other_config_in_same_folder_is_refused(swept):
    out = swept[0]
    with pytest.raises(SweepConflictError, match="another configuration"):
        main(_args(out, "--set", "train.lr=0.01", "--run-index", "0"))


@pytest.mark.integration
def test_aggregate_writes_the_study_outputs(swept):
    out = swept[0]
    main(_args(out, "--aggregate"))
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) > 2 and (out / "report.md").exists()


@pytest.mark.integration
def test_torchrun_job_matches_single_process(swept, tmp_path):
    """`torchrun --nproc_per_node 2 -m interp.sweep ... --run-index 0 --shard-lm`: DDP on the
    projector, FSDP on the LM, rank-0 evaluation; same weights and scores as one process."""
    from interp.projector import Projector

    out, dist_out = swept[0], tmp_path / "dist"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "interp.sweep"] + _args(dist_out, "--run-index", "0", "--shard-lm")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = list_runs(_tiny_cfg(out))[0].run_id
    one, _ = Projector.load(out / "runs" / run_id / "projector.safetensors")
    two, _ = Projector.load(dist_out / "runs" / run_id / "projector.safetensors")
    worst = max(float((one.state_dict()[k] - two.state_dict()[k]).abs().max()) for k in one.state_dict())
    assert worst < 1e-4, worst
    train = json.loads((dist_out / "runs" / run_id / "train.json").read_text())
    assert train["world_size"] == 2
    score = {}
    for tag, root in (("one", out), ("two", dist_out)):
        lines = (root / "runs" / run_id / "scores.csv").read_text().splitlines()
        score[tag] = torch.tensor([float(line.rsplit(",", 1)[1]) for line in lines[1:]])
    assert len(score["one"]) == len(score["two"]) > 0
    assert torch.allclose(score["one"], score["two"], atol=1e-3)
    rec = json.loads((dist_out / "runs" / run_id / "sweep.json").read_text())
    assert rec["world_size"] == 2 and rec["key"] == list_runs(_tiny_cfg(out))[0].key


def test_count_and_bad_index_arguments(capsys, monkeypatch):
    main([str(QUICK), "--count"])
    assert capsys.readouterr().out.strip() == "4"
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    with pytest.raises(SystemExit):
        main([str(QUICK), "--run-index", "env"])
    assert "SLURM_ARRAY_TASK_ID is not set" in capsys.readouterr().err


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


@pytest.mark.integration
def test_slurm_script_submits_prepare_array_aggregate(tmp_path):
    script = ROOT / "examples" / "slurm_array.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    log = tmp_path / "calls.log"
    _stub(tmp_path / "sbatch", f'echo "sbatch $*" >> {log}; echo $RANDOM\n')
    _stub(tmp_path / "py", f'echo "py $*" >> {log}; [[ " $* " == *" --count "* ]] && echo 54; true\n')
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "PYTHON": str(tmp_path / "py"),
           "LOG_DIR": str(tmp_path / "logs"), "MAX_PARALLEL": "6"}
    done = subprocess.run(["bash", str(script), "submit", "experiments/paper.toml", "--set", "model.lm=qwen3-8b"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("py -m interp.sweep experiments/paper.toml --count --set model.lm=qwen3-8b")
    sb = [c for c in calls if c.startswith("sbatch")]
    assert len(sb) == 3 and "--prepare" in sb[0] and "--aggregate" in sb[2]
    assert "--array=0-53%6" in sb[1] and "--dependency=afterok:" in sb[1] and "slurm_array.sh" in sb[1]
    # inside an array task: one run by index; several GPUs -> torchrun
    for gpus, launcher in (("1", "py -m interp.sweep"), ("4", "py -m torch.distributed.run")):
        log.write_text("")
        task = subprocess.run(["bash", str(script), "experiments/paper.toml"], cwd=ROOT, capture_output=True, text=True,
                              env={**env, "SLURM_ARRAY_TASK_ID": "17", "GPUS_PER_RUN": gpus, "SHARD_LM": "1"})
        assert task.returncode == 0, task.stderr
        line = log.read_text().strip()
        assert line.startswith(launcher) and "--run-index 17" in line and "--shard-lm" in line, line
    no_task = subprocess.run(["bash", str(script), "experiments/paper.toml"], cwd=ROOT, env=env, capture_output=True,
                             text=True)
    assert no_task.returncode == 2 and "SLURM_ARRAY_TASK_ID is not set" in no_task.stderr


def test_ray_example_plans_the_same_runs_without_ray(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("ray_sweep", ROOT / "examples" / "ray_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    todo = mod.main([str(QUICK), "--out", str(tmp_path), "--dry-run"])
    cfg = load_config(QUICK, {"out_dir": str(tmp_path)})
    assert [t["key"] for t in todo] == [r.key for r in list_runs(cfg)]
    assert capsys.readouterr().out.count("would submit") == 4
