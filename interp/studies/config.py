"""Study configs: TOML files -> frozen dataclasses, validated, with a stable hash."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from interp.conditions import WORLDS, Ablation
from interp.io import stable_hash
from interp.train import TrainConfig


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
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
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
class StudyConfig:
    name: str = "quick"
    out_dir: str = "runs/quick"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def hash(self) -> str:
        return stable_hash(self.to_dict())


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


def _build(cls, raw: dict[str, Any], where: str):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in [{where}]: valid keys are {sorted(names)}")
    conv = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return cls(**conv)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read a study TOML (sections: top level name/out_dir, [data], [model], [train], [grid], [eval])."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no study config at {path}; presets are in experiments/ (quick.toml, full.toml, paper.toml)")
    raw = tomllib.loads(path.read_text())
    sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "grid": GridConfig, "eval": EvalConfig}
    top = {k: v for k, v in raw.items() if k not in sections}
    unknown = sorted(set(top) - {"name", "out_dir"})
    if unknown:
        raise ValueError(f"unknown top-level keys {unknown} in {path}: valid are name, out_dir and sections {sorted(sections)}")
    cfg = StudyConfig(**top, **{k: _build(cls, raw.get(k, {}), k) for k, cls in sections.items()})
    for key, value in (overrides or {}).items():
        value = tuple(value) if isinstance(value, list) else value  # as TOML lists become tuples
        section, _, name = key.partition(".")
        if name:
            cfg = replace(cfg, **{section: replace(getattr(cfg, section), **{name: value})})
        else:
            cfg = replace(cfg, **{section: value})
    return cfg
