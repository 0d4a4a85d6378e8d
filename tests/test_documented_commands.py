"""Every command printed in the README, the docs and the notebooks runs (issue 18, item 6).

The commands are extracted from the files, not listed here, so a new command in a doc is
tested without touching this file:

- ``python -m interp.X ...`` runs in-process with ``--dry-run`` appended (the config and the
  arguments are checked; nothing loads: the unit-lane guard fails the test if a model would),
  or as printed when the module only reads (``interp.models``), or with ``--help`` when it
  builds files (``interp.data.build``);
- ``python path/to/script.py ...`` (benchmarks, figures, examples) runs with ``--help`` in a
  subprocess (integration).

Placeholders are filled with the embedded quick set-up: ``CONFIG`` with the matching quick
config, ``CHECKPOINT`` and the quick study's checkpoint path with a projector checkpoint the
test writes (training one is the study's job, not this test's).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from interp.studies.taxonomy.tables import RESULT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "DATA.md", *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "notebooks").glob("*.ipynb"))]
QUICK_CKPT = "runs/quick/runs/lm-original-100pct-s42/projector.safetensors"
QUICK_RUN = "runs/quick"
CONFIG_FOR = {"interp.task_vectors": "experiments/task_vectors_quick.toml",
              "interp.binding": "experiments/binding_quick.toml",
              "interp.alignment": "experiments/alignment_quick.toml",
              "interp.sae": "experiments/sae_quick.toml"}
READ_ONLY = {"interp.models"}  # run as printed
HELP_ONLY = {"interp.data.build", "interp.data.tasks.build"}  # they build files: --help only
COMMAND = re.compile(r"(?:\.venv/bin/)?python3? (-m interp[\w.]*|[\w./-]+\.py)((?:\\\n|[^\n`|\"#])*)")


def _text(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return "\n".join("".join(c["source"]) for c in cells)
    return path.read_text()


def documented() -> list[tuple[str, str, list[str]]]:
    """(where, target, argv) of every command in the docs; target is a module or a script path."""
    out, seen = [], set()
    for doc in DOCS:
        for m in COMMAND.finditer(_text(doc)):
            target = m.group(1).removeprefix("-m ")
            rest = re.sub(r"\[-[^\]]*\]", " ", m.group(2).replace("\\\n", " "))  # [--optional] synopsis parts
            rest = rest.strip().rstrip("&").strip()
            if target == "interp.sweep" and not rest:
                continue  # prose ("python -m interp.sweep" names the module)
            try:
                argv = shlex.split(rest)
            except ValueError:
                argv = rest.split()
            key = (target, tuple(argv))
            if key not in seen:
                seen.add(key)
                out.append((doc.name, target, argv))
    return out


def fill(target: str, argv: list[str]) -> list[str]:
    config = CONFIG_FOR.get(target, "experiments/quick.toml")
    subst = {"CONFIG": config, "...": config, "CHECKPOINT": QUICK_CKPT, "RUN_DIR": QUICK_RUN,
             "$SLURM_ARRAY_TASK_ID": "0"}
    return [subst.get(a, a) for a in argv]


COMMANDS = documented()
MODULES = [c for c in COMMANDS if c[1].startswith("interp")]
SCRIPTS = [c for c in COMMANDS if c[1].endswith(".py")]


def test_the_docs_print_commands():
    """The extraction works: the README's two kinds of command are found."""
    targets = {t for _, t, _ in COMMANDS}
    assert {"interp.run", "interp.patch", "interp.sweep", "interp.train"} <= targets
    assert any(t.startswith("benchmarks/") for t in targets)


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A working folder shaped like a checkout after the quick study: the repo's configs, a
    projector checkpoint for gemma-3-270m where the quick study writes its original-world run,
    and the study folder's config.json and results.csv header (what ``interp.report`` recognises)."""
    import torch

    from interp.projector import Projector, ProjectorConfig

    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    torch.manual_seed(0)
    ckpt = tmp_path / QUICK_CKPT
    Projector(ProjectorConfig(kind="mlp2x_gelu", d_in=1280, d_out=640, n_tokens_in=49, pool_to=1,
                              lm="gemma-3-270m", encoder="efficientnet-lite0")).save(ckpt)
    (tmp_path / QUICK_RUN / "config.json").write_text(json.dumps({"config": {"grid": {"worlds": ["original"]}}}))
    (tmp_path / QUICK_RUN / "results.csv").write_text(",".join(RESULT_COLUMNS) + "\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("where,target,argv", MODULES, ids=[f"{t} {' '.join(a)}"[:90] for _, t, a in MODULES])
def test_documented_module_command_runs(where, target, argv, checkout):
    argv = fill(target, argv)
    if target in HELP_ONLY:
        argv = ["--help"]
    elif target not in READ_ONLY:
        argv = argv + ["--dry-run"]
    module = importlib.import_module(target)
    if not hasattr(module, "main"):  # a package run with -m: its __main__
        module = importlib.import_module(target + ".__main__")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            module.main(argv)
            code = 0
        except SystemExit as e:
            code = e.code or 0
    assert code == 0, f"{where}: `python -m {target} {' '.join(argv)}` exited {code}: {err.getvalue()[-400:]}"
    if "--dry-run" in argv:
        assert "dry run" in err.getvalue(), out.getvalue()[-300:]


@pytest.mark.integration
@pytest.mark.parametrize("where,target,argv", SCRIPTS, ids=[f"{t} {' '.join(a)}"[:90] for _, t, a in SCRIPTS])
def test_documented_script_shows_help(where, target, argv):
    if not (ROOT / target).exists():
        pytest.fail(f"{where} prints `python {target}`, which does not exist")
    r = subprocess.run([sys.executable, target, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "usage" in r.stdout.lower(), f"{where}: python {target} --help: {r.stderr[-400:]}"
