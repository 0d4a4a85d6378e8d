"""One writer per run directory: an advisory lock that training and evaluation take.

``with run_lock(run_dir):`` holds ``run_dir/.lock`` (``fcntl.flock``, exclusive, non-blocking)
and writes the holder's PID into it. A second process on the same directory fails at once
with :class:`RunLocked`, naming the holder's PID and the directory. The kernel releases the
lock when its holder exits, however it exits, so a lock left by a dead process (kill -9, a
crash) is simply taken over: there is no stale-lock state to clean up. Nested blocks in
the process that holds the lock pass through (the PID in the file is its own).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".lock"


class RunLocked(RuntimeError):
    """Another live process holds the run directory's lock."""


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the lock of ``run_dir`` (created if needed) for the ``with`` block."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            if holder == str(os.getpid()):  # this process holds it already (a nested block): reentrant
                yield path
                return
            raise RunLocked(f"{run_dir} is in use by process {holder} (lock {path}); wait for it to finish, "
                            f"stop it, or write to another folder (--out)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock
