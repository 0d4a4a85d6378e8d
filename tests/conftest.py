"""Shared fixtures: tiny random LMs for unit tests, embedded pretrained models for integration."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, min(2, os.cpu_count() or 1)))


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
