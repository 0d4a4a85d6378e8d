"""One writer per run directory (issue 18, item 3): a second process on a locked run folder
fails at once naming the holder's PID and the folder; a lock left by a killed process is
taken over; the CLIs turn it into one line and exit code 2 before any model loads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interp.runlock import LOCK_NAME, RunLocked, run_lock

ROOT = Path(__file__).resolve().parents[1]
HOLD = "import sys, time; from interp.runlock import run_lock\nwith run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)\n"


def _holder(folder: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.mark.integration
def test_second_process_is_refused_naming_the_holder_then_a_dead_holders_lock_is_taken(tmp_path):
    p = _holder(tmp_path)
    try:
        with pytest.raises(RunLocked, match=rf"{tmp_path} is in use by process {p.pid}"):
            with run_lock(tmp_path):
                pass
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert (tmp_path / LOCK_NAME).exists()  # left behind by the killed holder
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_nested_blocks_in_the_holder_pass_through(tmp_path):
    with run_lock(tmp_path):
        with run_lock(tmp_path):
            pass
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())


@pytest.mark.integration
def test_train_cli_refuses_a_locked_run_folder_with_one_line_and_exit_2(tmp_path):
    run_dir = tmp_path / "runs" / "lm-original-100pct-s42"
    p = _holder(run_dir)
    try:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "interp.train", "experiments/quick.toml", "--out", str(tmp_path),
                            "--no-eval"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert r.returncode == 2, r.stderr
    assert f"in use by process {p.pid}" in r.stderr and "Traceback" not in r.stderr
    assert not (run_dir / "checkpoint.pt").exists()
