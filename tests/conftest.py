"""Shared fixtures: tiny random LMs for unit tests, embedded pretrained models for integration."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, min(2, os.cpu_count() or 1)))


EMBEDDED_FIXTURES = {"gemma", "smollm"}  # session fixtures that load embedded models (built before the guard)


@pytest.fixture(autouse=True)
def _unit_lane_guard(request, monkeypatch):
    """A test without the ``integration`` marker fails if it loads an embedded pretrained model
    (LM, tokenizer or encoder) or starts a process (a CLI, torchrun, a notebook kernel): so
    ``pytest -m "not integration"`` stays a fast unit lane (README)."""
    if request.node.get_closest_marker("integration"):
        yield
        return
    import subprocess

    from interp.models import encoders, lm

    used: list[str] = [f"the session fixture {n!r}" for n in request.fixturenames if n in EMBEDDED_FIXTURES]

    def flag(what, real):
        def wrapper(*args, **kwargs):
            used.append(what)
            return real(*args, **kwargs)
        return wrapper

    tiny = [0]  # > 0 while a tiny random LM loads: its tokenizer (SmolLM2's, from the cache) is allowed
    real_folder, real_load = lm.embedded_folder, lm.load_lm

    def folder(*args, **kwargs):
        if not tiny[0]:
            used.append("an embedded LM or tokenizer")
        return real_folder(*args, **kwargs)

    def load(name, *args, **kwargs):
        from interp.models.registry import get_spec

        is_tiny = get_spec(name, "lm").source == "tiny"
        tiny[0] += is_tiny
        try:
            return real_load(name, *args, **kwargs)
        finally:
            tiny[0] -= is_tiny

    monkeypatch.setattr(lm, "embedded_folder", folder)
    monkeypatch.setattr(lm, "load_lm", load)
    monkeypatch.setattr(encoders.EfficientNetLiteEncoder, "__init__",
                        flag("the embedded encoder", encoders.EfficientNetLiteEncoder.__init__))
    real_popen = subprocess.Popen.__init__

    def popen(self, args, *rest, **kwargs):
        # our own processes (a CLI, torchrun, a kernel, a script); library probes (uname, ldconfig)
        # and the PNG export of a figure (kaleido) do not count
        cmd = str(args).lower()
        if any(w in cmd for w in ("python", "torchrun", "kernel", "bash", "interp")) and not any(
                w in cmd for w in ("kaleido", "choreographer", "chrom")):
            used.append(f"a subprocess ({str(args)[:80]})")
        return real_popen(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", popen)
    yield
    if used:
        pytest.fail(f"{request.node.nodeid} loads {sorted(set(used))} but is not marked integration "
                    "(@pytest.mark.integration)", pytrace=False)


@pytest.fixture(scope="session")
def tiny_llama():
    from interp.models.hooked import HookedLM
    from interp.models.lm import load_lm

    return HookedLM(load_lm("tiny-llama", seed=0))


@pytest.fixture(scope="session")
def tiny_gemma():
    from interp.models.hooked import HookedLM
    from interp.models.lm import load_lm

    return HookedLM(load_lm("tiny-gemma3", seed=0))


@pytest.fixture(scope="session")
def gemma():
    from interp.models.hooked import HookedLM
    from interp.models.lm import load_lm

    return HookedLM(load_lm("gemma-3-270m"))


@pytest.fixture(scope="session")
def smollm():
    from interp.models.hooked import HookedLM
    from interp.models.lm import load_lm

    return HookedLM(load_lm("smollm2-135m"))


def make_vlm(lm, n_tokens: int = 16, d_img: int = 32, pool_to: int | None = None, kind: str = "mlp2x_gelu", seed: int = 0):
    from interp.vlm import HookedVLM

    proj = HookedVLM.new_projector(lm, "tiny-encoder", d_img, n_tokens, kind=kind, pool_to=pool_to, seed=seed)
    return HookedVLM(lm, proj)


def fresh_smollm_checkpoint(tmp_path_factory, smollm, pool_to: int):
    """A fresh (untrained) EfficientNet-Lite0 -> SmolLM2 projector saved as a checkpoint, for the
    CLIs that load one; skips when the embedded image set is not built."""
    from interp.data.images import verify
    from interp.vlm import HookedVLM

    ok, why = verify()
    if not ok:
        pytest.skip(f"embedded image set not built ({why})")
    path = tmp_path_factory.mktemp("ckpt") / "projector.safetensors"
    HookedVLM.new_projector(smollm, "efficientnet-lite0", 1280, 49, pool_to=pool_to).save(path)
    return path
