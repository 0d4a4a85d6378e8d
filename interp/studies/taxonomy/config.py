"""Study configs: TOML files -> frozen dataclasses, validated, with a stable hash."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.configfile import Hashed, load_sectioned
from interp.projector import KINDS as PROJECTOR_KINDS, POOLS
from interp.studies.taxonomy.conditions import WORLDS, Ablation
from interp.studies.taxonomy.prototypes import PrototypeConfig
from interp.train_projector import TrainConfig
from interp.warmstart import WarmStartConfig


@dataclass(frozen=True)
class DataConfig:
    """``images``: "embedded" or a THINGS-layout folder; ``taxonomy``: "embedded", "things"
    (``shared/data/things_taxonomy.tsv``) or a TSV path; ``max_concepts``: 0 = all."""

    images: str = "embedded"
    taxonomy: str = "embedded"
    max_concepts: int = 0
    seed: int = 0


DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ModelConfig:
    lm: str = "gemma-3-270m"
    encoder: str = "efficientnet-lite0"
    projector: str = "mlp2x_gelu"
    pool_to: int | None = None
    pool: str = "mean"  # how image tokens are pooled to pool_to: "mean" or "max"
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.projector not in PROJECTOR_KINDS:
            raise ValueError(f"model.projector {self.projector!r}: valid kinds are {list(PROJECTOR_KINDS)}")
        if self.pool not in POOLS:
            raise ValueError(f"model.pool {self.pool!r}: valid are {list(POOLS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype {self.dtype!r}: valid dtypes are {list(DTYPES)}")
        if self.device.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise ValueError(f"model.device {self.device!r}: use cpu, cuda, cuda:<i> or mps")
        if self.pool_to is not None and self.pool_to < 1:
            raise ValueError(f"model.pool_to {self.pool_to}: must be >= 1 (or absent for every patch token)")


@dataclass(frozen=True)
class GridConfig:
    """Runs = worlds x ablations x seeds with the pretrained LM, plus ``control_ablations`` x
    seeds (original world) with the random-init LM."""

    worlds: tuple[str, ...] = ("original",)
    ablations: tuple[str, ...] = ("random:1.0",)
    control_ablations: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (42,)

    def __post_init__(self) -> None:
        bad = [w for w in self.worlds if w not in WORLDS]
        if bad:
            raise ValueError(f"unknown worlds {bad}: valid worlds are {list(WORLDS)}")
        for a in self.ablations + self.control_ablations:
            parse_ablation(a)


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 64
    lm_only: bool = True
    lm_only_things: bool = True


@dataclass(frozen=True)
class StudyConfig(Hashed):
    name: str = "quick"
    out_dir: str = "runs/quick"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    prototypes: PrototypeConfig = field(default_factory=PrototypeConfig)


def parse_ablation(text: str) -> Ablation:
    """"random:0.3" or "systematic:10" -> :class:`Ablation`."""
    kind, _, value = text.partition(":")
    try:
        if kind == "random":
            return Ablation("random", rate=float(value))
        if kind == "systematic":
            return Ablation("systematic", n_categories=int(value))
    except ValueError as e:
        raise ValueError(f"bad ablation {text!r}: {e}") from None
    raise ValueError(f"bad ablation {text!r}: use 'random:<rate in 0..1>' or 'systematic:<n categories>'")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "grid": GridConfig, "eval": EvalConfig,
            "warm_start": WarmStartConfig, "prototypes": PrototypeConfig}


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read a study TOML (top level name/out_dir; sections [data], [model], [train], [grid],
    [eval]); ``overrides`` maps "section.key" (or "name"/"out_dir") to values."""
    return load_sectioned(path, StudyConfig, SECTIONS, overrides=overrides,
                          presets="experiments/ (quick.toml, full.toml, paper.toml)")
