"""The binding study's config: :class:`BindingConfig` (top level: name, out_dir, seeds, regimes,
device, threads, figures) with its sections (:class:`EvalConfig` here; task, model, image,
train and mech configs from their modules), read from TOML by :func:`load_config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.configfile import Hashed, load_sectioned
from interp.io import stable_hash
from interp.studies.binding.bank import ImageConfig
from interp.studies.binding.interventions import MechConfig
from interp.studies.binding.model import ModelConfig
from interp.studies.binding.task import TaskConfig
from interp.studies.binding.train import REGIMES, TrainConfig


@dataclass(frozen=True)
class EvalConfig:
    """``size``: text episodes per evaluation set; ``image_size``: held-out image episodes
    (at most ``image.eval_bank_size`` distinct contexts, each with fresh associations);
    ``mechanisms``: run the interchange / knockout / probe analyses."""

    size: int = 2000
    image_size: int = 512
    seed: int = 4242
    batch_size: int = 256
    mechanisms: bool = True

    def __post_init__(self) -> None:
        if self.size < 1 or self.image_size < 1 or self.batch_size < 1:
            raise ValueError(f"invalid eval config: size={self.size}, image_size={self.image_size}, "
                             f"batch_size={self.batch_size} (all >= 1)")


@dataclass(frozen=True)
class BindingConfig(Hashed):
    name: str = "binding-quick"
    out_dir: str = "runs/binding-quick"
    seeds: tuple[int, ...] = (0,)
    regimes: tuple[str, ...] = tuple(REGIMES)
    device: str = "cpu"
    threads: int = 0
    figures: bool = True
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    mech: MechConfig = field(default_factory=MechConfig)

    def __post_init__(self) -> None:
        bad = [r for r in self.regimes if r not in REGIMES]
        if bad:
            raise ValueError(f"unknown regimes {bad}: valid regimes are {list(REGIMES)}")
        if not self.seeds:
            raise ValueError("seeds is empty: give at least one seed, e.g. seeds = [0]")
        if self.needs_images and (self.image.colours > self.task.n_colours or self.image.shapes > self.task.n_shapes):
            raise ValueError(f"image.colours={self.image.colours}, image.shapes={self.image.shapes} exceed the task pools "
                             f"(task.n_colours={self.task.n_colours}, task.n_shapes={self.task.n_shapes}): the image "
                             f"pools are subsets of the task pools, valid 2..{self.task.n_colours} colours and "
                             f"2..{self.task.n_shapes} shapes")
        if self.train.align_layer >= self.model.n_layers:
            raise ValueError(f"train.align_layer={self.train.align_layer} is out of range: valid 1..{self.model.n_layers - 1}, "
                             "or 0 for train.mid_layer")
        if self.train.mid_layer >= self.model.n_layers:
            raise ValueError(f"train.mid_layer={self.train.mid_layer} is out of range: valid 1..{self.model.n_layers - 1} "
                             f"(a block below the last of model.n_layers={self.model.n_layers}), or 0 for off")

    @property
    def result_hash(self) -> str:
        """Hash of everything the results depend on (not the output folder, device, threads,
        figures or name): a results folder holds the results of one such config."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("name", "out_dir", "device", "threads", "figures")}
        for section, key, off in LATER_OPTIONS:  # options added after results existed: hashed only when set
            if d[section].get(key) == off:
                del d[section][key]
        return stable_hash(d)

    @property
    def needs_images(self) -> bool:
        return any(REGIMES[r] != "text" for r in self.regimes)


#: (section, option, its "off" value) of options added after result folders existed: left out of
#: :attr:`BindingConfig.result_hash` while off, so those folders keep their hash
LATER_OPTIONS = (("model", "ext_norm", "none"), ("train", "image_phase_trains", "all"), ("train", "align_weight", 0.0),
                 ("train", "image_stages", ()), ("train", "align_layer", 0),
                 ("train", "continuation_lrs", ()), ("image", "noise_scale", "encoder"),
                 ("image", "noise_between", "patches"))

SECTIONS = {"task": TaskConfig, "model": ModelConfig, "image": ImageConfig, "train": TrainConfig, "eval": EvalConfig,
            "mech": MechConfig}
TOP = ("name", "out_dir", "seeds", "regimes", "device", "threads", "figures")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> BindingConfig:
    """Read a binding-study TOML (top level: name, out_dir, seeds, regimes, device, threads,
    figures; sections [task], [model], [image], [train], [eval], [mech]) and apply overrides
    (``--set train.text_steps=100``, ``--set seeds=[0,1]``)."""
    return load_sectioned(path, BindingConfig, SECTIONS, top=TOP, overrides=overrides,
                          presets="experiments/binding_quick.toml, experiments/binding_full.toml")
