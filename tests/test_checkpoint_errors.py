"""Bad checkpoints and bad layer/LM arguments (issue 18, items 5, 7, 8): one line, exit code 2,
no traceback, decided from the checkpoint's header and the registry before any model loads;
a pickle is never unpickled."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from interp.io import NotSafetensorsError, read_meta
from interp.projector import Projector, ProjectorConfig

ROOT = Path(__file__).resolve().parents[1]


class Boom:
    def __reduce__(self):  # unpickling this would create a file: proof that nothing is unpickled
        return (open, ("/tmp/interp-pickle-was-executed", "w"))


def _pickle(path: Path) -> Path:
    path.write_bytes(pickle.dumps(Boom()))
    return path


def _checkpoint(path: Path, lm: str = "gemma-3-270m") -> Path:
    Projector(ProjectorConfig("linear", 1280, 640, 49, "efficientnet-lite0", lm, 1)).save(path)
    return path


def test_read_meta_names_a_pickle_and_never_runs_it(tmp_path):
    for name in ("x.pt", "x.safetensors"):
        with pytest.raises(NotSafetensorsError, match=r"looks like a Python pickle.*pickles are refused"):
            read_meta(_pickle(tmp_path / name))
    assert not Path("/tmp/interp-pickle-was-executed").exists()
    with pytest.raises(ValueError, match=r"not an interp projector checkpoint \(only safetensors are read; "
                                         r"pickles are refused\)"):
        Projector.read_config(tmp_path / "x.pt")
    assert Projector.read_config(_checkpoint(tmp_path / "p.safetensors")).lm == "gemma-3-270m"


def _patch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "interp.patch", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.integration
def test_patch_cli_refuses_bad_checkpoints_layers_and_lms_before_loading(tmp_path):
    ck = _checkpoint(tmp_path / "projector.safetensors")
    cases = [(["--checkpoint", str(_pickle(tmp_path / "x.pt"))], "pickles are refused"),
             (["--checkpoint", str(ck), "--layer", "999"], "--layer 999: gemma-3-270m has blocks 0..17"),
             (["--checkpoint", str(ck), "--layer", "x"], "expected a block index or 'all'"),
             (["--checkpoint", str(ck), "--lm", "smollm2-135m"], "trained for LM 'gemma-3-270m', not --lm 'smollm2-135m'"),
             # checked before any model loads, against the per-block hooks of the supported families
             (["--checkpoint", str(ck), "--layer", "3", "--hook", "hook_nonsense"], "--hook 'hook_nonsense': not a per-block hook")]
    for args, message in cases:
        r = _patch(*args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr[-800:])
        assert len([ln for ln in r.stderr.splitlines() if "error:" in ln]) == 1
    assert not Path("/tmp/interp-pickle-was-executed").exists()
