"""The cross-modal task-vector study's config (TOML, sectioned): the VLM and its checkpoint, the
tasks and splits, the methods, function vectors and the curve; the method labels and the
brief's published numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.configfile import Hashed, load_sectioned
from interp.io import stable_hash


SOURCES = ("text_examples", "instruction", "image_examples", "instruction+examples", "text_examples_vlm")
TARGETS = ("text", "image")
IMAGE_SOURCES = ("image_examples",)
LABELS = {
    "no_context": "no context",
    "prompting_text": "prompting (text examples)",
    "prompting_image": "prompting (image examples)",
    "text_examples": "patch: text examples",
    "instruction": "patch: instruction",
    "image_examples": "patch: image examples",
    "instruction+examples": "patch: instruction + text examples",
    "text_examples_vlm": "patch: text examples, VLM prompt (image first)",
    "random": "patch: random vector (norm of text-example vector)",
    "constant": "best constant answer (chance line)",
    "fv_third": "function vector, added at L/3",
    "fv_val": "function vector, layer chosen on val",
}
# Idefics2-8B, exact match (brief, section B); (method, target) -> value
PUBLISHED = {("no_context", "image"): 0.01, ("prompting_text", "image"): 0.18, ("text_examples", "image"): 0.51,
             ("text_examples", "text"): 0.65}


# ------------------------------------------------------------------ config
@dataclass(frozen=True)
class ModelConfig:
    """``checkpoint``: a projector trained by the taxonomic study (its LM and encoder are used).

    ``fallback`` says what to do when ``checkpoint`` does not exist: ``"error"`` (default),
    ``"partial"`` (the projector weights of the unfinished training state ``checkpoint.pt`` in
    the same folder, if there is one, else error), ``"fresh"`` (a seeded untrained projector for
    ``lm``/``encoder``: image-query results then say little). ``lm``, ``encoder``,
    ``projector``, ``pool_to`` describe the projector built for ``"partial"``/``"fresh"``;
    the report names which one was used."""

    checkpoint: str = "runs/quick/runs/lm-original-100pct-s42/projector.safetensors"
    fallback: str = "error"
    lm: str = "gemma-3-270m"
    encoder: str = "efficientnet-lite0"
    projector: str = "mlp2x_gelu"
    pool_to: int = 1
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.fallback not in FALLBACKS:
            raise ValueError(f"model.fallback={self.fallback!r}: valid are {list(FALLBACKS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype={self.dtype!r}: valid are {sorted(DTYPES)}")


FALLBACKS = ("error", "partial", "fresh")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class DataConfig:
    """``tasks``: names of task files in ``task_dir`` (default: ``interp/data/tasks``);
    ``max_val``/``max_test``: items used per split (0 = all; the files hold 30 and 100 at most)."""

    tasks: tuple[str, ...] = ("hypernym", "animal_young", "food_colour", "object_material", "country_capital", "antonym")
    task_dir: str = ""
    max_val: int = 0
    max_test: int = 0
    image_seed: int = 0


@dataclass(frozen=True)
class MethodConfig:
    """Task vectors: ``n_examples`` demonstrations per prompt, ``n_prompts`` prompts averaged;
    ``layers`` swept (empty = all); ``test_all_layers`` also sweeps the test split (figures)."""

    sources: tuple[str, ...] = SOURCES
    targets: tuple[str, ...] = TARGETS
    n_examples: int = 5
    n_prompts: int = 16
    layers: tuple[int, ...] = ()
    test_all_layers: bool = False
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [s for s in self.sources if s not in SOURCES]
        if bad:
            raise ValueError(f"unknown sources {bad}: valid sources are {list(SOURCES)}")
        bad = [t for t in self.targets if t not in TARGETS]
        if bad:
            raise ValueError(f"unknown targets {bad}: valid targets are {list(TARGETS)}")
        if self.n_examples < 1 or self.n_prompts < 1 or self.batch_size < 1:
            raise ValueError(f"n_examples={self.n_examples}, n_prompts={self.n_prompts}, batch_size={self.batch_size} "
                             f"must all be >= 1")


@dataclass(frozen=True)
class FunctionVectorConfig:
    enabled: bool = True
    n_examples: int = 10
    n_prompts: int = 16
    n_shuffled: int = 16
    top_k: int = 10


@dataclass(frozen=True)
class CurveConfig:
    """Accuracy against the number of examples, at the layers chosen on validation."""

    enabled: bool = True
    n_examples: tuple[int, ...] = (1, 2, 4, 8, 16, 30)
    seeds: tuple[int, ...] = (0, 1, 2)
    max_test: int = 50
    sources: tuple[str, ...] = ("text_examples", "image_examples", "instruction+examples")

    def __post_init__(self) -> None:
        bad = [s for s in self.sources if s not in SOURCES]
        if bad:
            raise ValueError(f"unknown curve sources {bad}: valid sources are {list(SOURCES)}")
        if any(k < 1 for k in self.n_examples):
            raise ValueError(f"curve n_examples {self.n_examples} must all be >= 1")


@dataclass(frozen=True)
class TaskVectorConfig(Hashed):
    name: str = "task_vectors_quick"
    out_dir: str = "runs/task_vectors_quick"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    fv: FunctionVectorConfig = field(default_factory=FunctionVectorConfig)
    curve: CurveConfig = field(default_factory=CurveConfig)

    def task_hash(self, task: str) -> str:
        """What a task's results depend on (not the task list, out_dir or name)."""
        d = self.to_dict()
        d["data"] = {k: v for k, v in d["data"].items() if k != "tasks"}
        return stable_hash({"task": task, **{k: v for k, v in d.items() if k not in ("name", "out_dir")}})


SECTIONS = {"model": ModelConfig, "data": DataConfig, "method": MethodConfig, "fv": FunctionVectorConfig,
            "curve": CurveConfig}


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TaskVectorConfig:
    """Read a task-vector TOML (top level name/out_dir; sections [model] [data] [method] [fv] [curve])."""
    return load_sectioned(path, TaskVectorConfig, SECTIONS, overrides=overrides,
                          presets="experiments/task_vectors_quick.toml, experiments/task_vectors_full.toml")
