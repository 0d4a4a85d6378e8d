"""The SAE study's config: dataclass sections loaded from TOML (``load_config``), with
``--set`` overrides and one-line errors (see :mod:`interp.configfile`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp import configfile
from interp.configfile import Hashed, build_section, load_sectioned
from interp.studies.alignment.config import parse_layers

SPLITS = ("train", "val", "test", "all")
#: which sequences' tokens an SAE trains on: both kinds, text prompts only, image questions only
TRAIN_SEQUENCES = ("all", "text", "image")
#: the wordings of the text prompts (:data:`interp.studies.sae.data.TEXT_TEMPLATES`, same order)
TEXT_TEMPLATE_NAMES = ("truth", "kind", "photo", "called")


@dataclass(frozen=True)
class SaeDataConfig:
    """The taxonomic study's setting. ``study_config``: its TOML (images, taxonomy, model);
    ``checkpoint``: a trained projector (``projector.safetensors``; "" = an untrained projector
    of the study config's kind); ``lm``/``encoder``: override the study config's ("" = keep;
    with a checkpoint, the checkpoint's). Sequences: per concept of ``split`` ("all" = train,
    val and test together: on the train renderings a warm-started projector gives every
    rendering of a concept its prototype, on held-out ones a mixture; at most
    ``max_concepts``, 0 = all), ``images_per_concept`` image questions ("Is there a robin in
    the image?" + " Yes") and ``text_per_concept`` text prompts naming the concept and one of its
    hypernyms ("Is it true that a robin is a bird?" + " Yes"; 0 = every hypernym), each in
    every wording of ``text_templates`` (names in :data:`interp.studies.sae.data.TEXT_TEMPLATES`:
    "truth", "kind", "photo", "called"; more wordings, more distinct text tokens per concept)."""

    study_config: str = "experiments/quick.toml"
    checkpoint: str = ""
    lm: str = ""
    encoder: str = ""
    split: str = "train"
    max_concepts: int = 0
    images_per_concept: int = 4
    text_per_concept: int = 0
    text_templates: tuple[str, ...] = ("truth",)
    batch_size: int = 16
    holdout_frac: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"data.split {self.split!r}: valid splits are {list(SPLITS)}")
        for key in ("max_concepts", "text_per_concept"):
            if getattr(self, key) < 0:
                raise ValueError(f"data.{key} = {getattr(self, key)}: must be >= 0")
        for key in ("images_per_concept", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"data.{key} = {getattr(self, key)}: must be >= 1")
        bad = [t for t in self.text_templates if t not in TEXT_TEMPLATE_NAMES]
        if bad or not self.text_templates or len(set(self.text_templates)) != len(self.text_templates):
            raise ValueError(f"data.text_templates = {list(self.text_templates)}: distinct names from "
                             f"{list(TEXT_TEMPLATE_NAMES)}, at least one")
        if not 0.0 < self.holdout_frac < 1.0:
            raise ValueError(f"data.holdout_frac = {self.holdout_frac}: must be in (0, 1) (held-out batches "
                             "measure reconstruction and the spliced loss)")


@dataclass(frozen=True)
class SaeModelConfig:
    """``layers``: the blocks whose ``hook_resid_post`` gets an SAE: a list of block indices
    (negative = from the end), "last", "every:K" or "spaced:K" (as in the alignment study)."""

    layers: tuple[int, ...] | str = (-1,)
    device: str = "cpu"

    def __post_init__(self) -> None:
        parse_layers(self.layers, 100)  # syntax check; the range is checked against the LM


@dataclass(frozen=True)
class SaeTrainConfig:
    """The library's TopK sparse coder (EleutherAI ``sparsify``): ``n_latents`` (0 =
    ``expansion_factor`` x d_model) and ``k`` active latents per token; Adam at ``lr`` over
    shuffled batches of ``batch_size`` tokens for ``epochs``; the AuxK loss (weight
    ``auxk_alpha``) revives latents silent for ``dead_after_tokens`` tokens. One checkpoint
    per epoch (resumable). ``sequences``: the sequences whose tokens it trains on, "all" (image
    questions and text prompts), "text" (text prompts only: a dictionary that never saw an
    image, then applied to image tokens) or "image" (image questions only)."""

    expansion_factor: int = 8
    n_latents: int = 0
    k: int = 16
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 20
    auxk_alpha: float = 1 / 32
    dead_after_tokens: int = 10_000
    seed: int = 0
    sequences: str = "all"

    def __post_init__(self) -> None:
        if self.sequences not in TRAIN_SEQUENCES:
            raise ValueError(f"train.sequences = {self.sequences!r}: valid values are {list(TRAIN_SEQUENCES)}")
        for key in ("expansion_factor", "k", "batch_size", "epochs", "dead_after_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} = {getattr(self, key)}: must be >= 1")
        if self.n_latents < 0:
            raise ValueError(f"train.n_latents = {self.n_latents}: must be >= 0 (0 = expansion_factor x d_model)")
        if self.n_latents and self.k > self.n_latents:
            raise ValueError(f"train.k = {self.k} is more than train.n_latents = {self.n_latents}")
        if not self.lr > 0:
            raise ValueError(f"train.lr = {self.lr}: must be > 0")
        if self.auxk_alpha < 0:
            raise ValueError(f"train.auxk_alpha = {self.auxk_alpha}: must be >= 0")

    def latents(self, d_in: int) -> int:
        return self.n_latents or self.expansion_factor * d_in


@dataclass(frozen=True)
class SaeEvalConfig:
    """``fire_frac``: a latent belongs to a concept in a modality when it fires on at least
    this share of the concept's sequences of that modality (image tokens / the name and
    hypernym tokens); ``shuffles``: permutations of the concept labels for the baseline;
    ``top_latents`` latents described by their ``top_images`` images and ``top_tokens`` tokens."""

    fire_frac: float = 0.5
    shuffles: int = 200
    top_latents: int = 8
    top_images: int = 6
    top_tokens: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.fire_frac <= 1.0:
            raise ValueError(f"eval.fire_frac = {self.fire_frac}: must be in (0, 1]")
        for key in ("shuffles", "top_latents", "top_images", "top_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"eval.{key} = {getattr(self, key)}: must be >= 1")


@dataclass(frozen=True)
class SaeConfig(Hashed):
    name: str = "sae-quick"
    out_dir: str = "runs/sae-quick"
    data: SaeDataConfig = field(default_factory=SaeDataConfig)
    model: SaeModelConfig = field(default_factory=SaeModelConfig)
    train: SaeTrainConfig = field(default_factory=SaeTrainConfig)
    eval: SaeEvalConfig = field(default_factory=SaeEvalConfig)


SECTIONS = {"data": SaeDataConfig, "model": SaeModelConfig, "train": SaeTrainConfig, "eval": SaeEvalConfig}


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SaeConfig:
    """Read an SAE TOML (top level ``name``/``out_dir``; sections [data], [model], [train],
    [eval]); ``overrides`` maps "section.key" (or "name"/"out_dir") to values."""
    return load_sectioned(path, SaeConfig, SECTIONS, overrides=overrides, presets="experiments/sae_quick.toml")


def apply_overrides(cfg: SaeConfig, overrides: dict[str, Any]) -> SaeConfig:
    return configfile.apply_overrides(cfg, overrides, SECTIONS)


def config_from_dict(d: dict[str, Any]) -> SaeConfig:
    """The inverse of :meth:`SaeConfig.to_dict` (e.g. from a run's config.json)."""
    top = {k: v for k, v in d.items() if k not in SECTIONS}
    return SaeConfig(**top, **{k: build_section(c, d.get(k, {}), k) for k, c in SECTIONS.items()})
