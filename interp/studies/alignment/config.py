"""The visual-alignment study's config: dataclass sections loaded from TOML (``load_config``),
``--set`` overrides, layer specs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp import configfile
from interp.analysis.class_features import DEFAULT_TEMPLATE, POOLS
from interp.configfile import Hashed, build_section, load_sectioned
from interp.studies.alignment.head import HeadConfig
from interp.studies.alignment.splits import SPLIT_MODES


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}



# ------------------------------------------------------------------- config
@dataclass(frozen=True)
class AlignDataConfig:
    """``images``/``taxonomy``/``max_concepts``/``seed`` as in the taxonomic study (the same
    feature cache is reused); ``template`` the class prompt (``{phrase}`` = the class with
    its article, ``{name}`` = the bare name); ``pool`` "last" (last prompt token) or "mean"."""

    images: str = "embedded"
    taxonomy: str = "embedded"
    max_concepts: int = 0
    seed: int = 0
    template: str = DEFAULT_TEMPLATE
    pool: str = "last"

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"data.pool {self.pool!r}: valid values are {list(POOLS)}")
        if "{phrase}" not in self.template and "{name}" not in self.template:
            raise ValueError(f"data.template {self.template!r} needs {{phrase}} or {{name}}")



@dataclass(frozen=True)
class AlignModelsConfig:
    """``lms``: a list of LM names (registered names, hub ids or local folders) or
    "available" (every registered non-tiny LM loadable here). ``random_seeds``: one
    random-init control per seed and LM (empty: none). ``layers``: "all", "last",
    "every:K" (0, K, 2K, ... and the last), "spaced:K" (K blocks evenly spaced in relative
    depth, first and last included: comparable across LMs of different depths) or a list
    of block indices (negative = from the end). ``score_layer``: the layer whose zero-shot top-1 is *the* alignment score of an
    LM (-1 = the last block). ``feature_cache``: where the LM features are cached (one
    safetensors file per LM variant, prompts and pool; "" = the toolkit cache)."""

    lms: tuple[str, ...] | str = ("gemma-3-270m", "smollm2-135m")
    random_seeds: tuple[int, ...] = (0,)
    encoder: str = "efficientnet-lite0"
    layers: tuple[int, ...] | str = "all"
    score_layer: int = -1
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 64
    feature_cache: str = ""  # folder of the cached LM features; "" = $INTERP_CACHE/alignment/lm_features

    def __post_init__(self) -> None:
        if isinstance(self.lms, str) and self.lms != "available":
            raise ValueError(f"models.lms = {self.lms!r}: give a list of LM names or \"available\"")
        if not isinstance(self.lms, str) and not self.lms:
            raise ValueError("models.lms is empty: name at least one LM or use \"available\"")
        if self.dtype not in DTYPES:
            raise ValueError(f"models.dtype {self.dtype!r}: valid values are {list(DTYPES)}")
        parse_layers(self.layers, 100)  # syntax check



@dataclass(frozen=True)
class AlignSplitConfig:
    """``modes``: "concept" and/or "hypernym" (whole top-level hypernyms held out);
    ``test_frac``: share of classes held out; ``seeds``: one split + head init per seed."""

    modes: tuple[str, ...] = ("concept",)
    test_frac: float = 0.25
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in SPLIT_MODES]
        if bad or not self.modes:
            raise ValueError(f"split.modes {list(self.modes)}: valid modes are {list(SPLIT_MODES)}")
        if not 0.0 < self.test_frac < 1.0:
            raise ValueError(f"split.test_frac={self.test_frac}: must be in (0, 1)")
        if not self.seeds:
            raise ValueError("split.seeds is empty: give at least one seed")



@dataclass(frozen=True)
class AlignEvalConfig:
    """``lm_only``: run the taxonomic study's LM-only hypernym test per LM variant (for the
    correlation); ``confusion_lm``: the LM of the confusion figure (default: the first)."""

    lm_only: bool = True
    batch_size: int = 64
    confusion_lm: str = ""



@dataclass(frozen=True)
class AlignmentConfig(Hashed):
    name: str = "alignment-quick"
    out_dir: str = "runs/alignment-quick"
    data: AlignDataConfig = field(default_factory=AlignDataConfig)
    models: AlignModelsConfig = field(default_factory=AlignModelsConfig)
    split: AlignSplitConfig = field(default_factory=AlignSplitConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    eval: AlignEvalConfig = field(default_factory=AlignEvalConfig)



SECTIONS = {"data": AlignDataConfig, "models": AlignModelsConfig, "split": AlignSplitConfig, "head": HeadConfig,
            "eval": AlignEvalConfig}



def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> AlignmentConfig:
    """Read an alignment TOML (top level ``name``/``out_dir``; sections [data], [models],
    [split], [head], [eval]); ``overrides`` maps "section.key" (or "name"/"out_dir") to values."""
    return load_sectioned(path, AlignmentConfig, SECTIONS, overrides=overrides,
                          presets="experiments/alignment_quick.toml, experiments/alignment_full.toml")



def apply_overrides(cfg: AlignmentConfig, overrides: dict[str, Any]) -> AlignmentConfig:
    return configfile.apply_overrides(cfg, overrides, SECTIONS)



def _spec_k(spec: str, minimum: int) -> int:
    """K of a layer spec ``'every:K'`` / ``'spaced:K'``, at least ``minimum``."""
    kind, _, text = spec.partition(":")
    try:
        k = int(text)
    except ValueError:
        k = minimum - 1
    if k < minimum:
        raise ValueError(f"layers {spec!r}: K in '{kind}:K' must be an integer >= {minimum}")
    return k



def parse_layers(spec: tuple[int, ...] | list[int] | str, n_layers: int) -> list[int]:
    """Block indices of a layer spec for an LM with ``n_layers`` blocks (see
    :class:`AlignModelsConfig`); raises naming the valid range."""
    if isinstance(spec, str):
        if spec == "all":
            return list(range(n_layers))
        if spec == "last":
            return [n_layers - 1]
        if spec.startswith("every:"):
            k = _spec_k(spec, 1)
            return sorted(set(range(0, n_layers, k)) | {n_layers - 1})
        if spec.startswith("spaced:"):
            k = _spec_k(spec, 2)
            return sorted({round(j * (n_layers - 1) / (k - 1)) for j in range(k)})
        raise ValueError(f"layers {spec!r}: use 'all', 'last', 'every:K', 'spaced:K' or a list of block indices")
    out = []
    for i in spec:
        if not isinstance(i, int) or not -n_layers <= i < n_layers:
            raise ValueError(f"layer {i!r} is out of range: valid layers are 0..{n_layers - 1} (or -{n_layers}..-1)")
        out.append(i % n_layers)
    if not out:
        raise ValueError("layers is an empty list: give at least one block index")
    return sorted(set(out))



def config_from_dict(d: dict[str, Any]) -> AlignmentConfig:
    """The inverse of :meth:`AlignmentConfig.to_dict` (e.g. from a study's config.json)."""
    top = {k: v for k, v in d.items() if k not in SECTIONS}
    return AlignmentConfig(**top, **{k: build_section(c, d.get(k, {}), k) for k, c in SECTIONS.items()})
