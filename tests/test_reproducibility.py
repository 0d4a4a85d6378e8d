"""Numbers reproduce from a fresh cache: two fresh processes, each with its own empty
``INTERP_CACHE`` (models dequantized, image set built, features encoded, prototypes learned
anew), train the same projector with the quick recipe and get bit-identical weights."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import sys, hashlib
from interp.studies.taxonomy.config import load_config
from interp.studies.taxonomy.jobs import run_spec
from interp.studies.taxonomy.run import RunSpec
cfg = load_config(sys.argv[1], {"out_dir": sys.argv[2], "model.lm": "smollm2-135m", "data.max_concepts": 16,
                                "train.max_steps": 6, "train.eval_every": 3, "eval.lm_only": False,
                                "prototypes.format_steps": 3, "prototypes.refine_steps": 3, "prototypes.batch_size": 8})
run_spec(cfg, RunSpec("original", "random:1.0", 42), evaluate=False, progress=False)
"""


def _run(tmp: Path, name: str) -> Path:
    from interp.paths import cache_root

    npm = cache_root() / "npm"
    if not (npm / "node_modules").exists():
        pytest.skip("npm image packages not installed (scripts/setup.sh)")
    cache = tmp / f"cache-{name}"
    cache.mkdir()
    (cache / "npm").symlink_to(npm)  # the npm packages are inputs, not built caches
    env = {**os.environ, "INTERP_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": name}
    py = sys.executable
    for cmd in ([py, "-m", "interp.models", "--prepare"], [py, "-m", "interp.data.build"],
                [py, "-c", SCRIPT, str(ROOT / "experiments" / "quick.toml"), str(tmp / f"out-{name}")]):
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{cmd[:3]} failed:\n{done.stderr[-3000:]}"
    return tmp / f"out-{name}" / "runs" / "lm-original-100pct-s42"


def test_two_fresh_processes_with_separate_caches_train_identical_weights(tmp_path):
    from interp.io import load_tensors, read_json

    a, b = _run(tmp_path, "1"), _run(tmp_path, "2")
    wa, _ = load_tensors(a / "projector.safetensors")
    wb, _ = load_tensors(b / "projector.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert (wa[k] == wb[k]).all(), f"{k} differs between the two fresh runs"
    ta, tb = read_json(a / "train.json"), read_json(b / "train.json")
    assert ta["losses"] == tb["losses"] and len(ta["losses"]) == 6
    assert ta["diagnostics"] == [{**d, "train_seconds": da["train_seconds"]} for d, da in zip(tb["diagnostics"], ta["diagnostics"])]
    assert ta["meta"]["prototypes"]["leaf_f1"] == tb["meta"]["prototypes"]["leaf_f1"]
