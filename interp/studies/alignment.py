"""The visual-alignment study (brief, section D), end to end.

``run(config)``: cache pooled image features once (the taxonomic study's feature cache),
then for every LM variant (each requested LM and its random-init controls) cache the
last-token residual of every class prompt at every layer, and for every unit
(LM variant x layer x split mode x seed) train an alignment head on the training classes
and score zero-shot classification on the held-out classes. Units are resumable: a unit
whose result file exists with the same key is skipped (an LM whose units are all done is
not even loaded). Then the LM-only hypernym test of the taxonomic study per LM variant,
the correlation of the alignment score with it, a tidy results table, a summary, a
markdown report and plotly figures. Everything lands in ``config.out_dir``::

    results.csv       one row per unit (top-1/top-5 on held-out classes, chance, fit, ...)
    summary.csv       per LM variant x split x layer: mean and 95% t-interval over seeds
    lm_only.csv       the LM-only test per LM variant; correlation.json: score vs LM-only
    report.md         scores per LM, per layer, correlation; figures/*.html|png
    units/<lm>/<split>-L<layer>-s<seed>.json   per unit: row, held-out classes, predictions
    lm_only/<lm>.json, config.json, summary.json

LM availability: ``models.lms = "available"`` takes every registered (non-tiny) LM that
can be loaded here and skips the others with a logged message; an explicit list fails at
once, before any work, if one of its LMs cannot be loaded (the message says what to do).
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from interp.analysis.alignment import (DEFAULT_TEMPLATE, NO_GROUP, POOLS, SPLIT_MODES, HeadConfig, class_prompts,
                                       cached_lm_class_features, class_split, feature_cache_path,
                                       load_cached_features, pool_image_features, top_hypernyms, train_head,
                                       zero_shot)
from interp import configfile, io
from interp.configfile import Hashed, build_section, load_sectioned
from interp.io import environment, read_json, stable_hash, write_csv, write_json, write_text
from interp.metrics import mean_ci, pearson

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LM_ONLY_METRICS = ("macro_f1", "pairwise_acc", "cloze_acc")


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


# ----------------------------------------------------------------- LM variants
@dataclass(frozen=True)
class LMVariant:
    """A registered LM (``base``) with its pretrained weights or a seeded random init."""

    base: str
    random_init: bool = False
    seed: int = 0

    @property
    def tag(self) -> str:
        return self.base + (f"+random{self.seed}" if self.random_init else "")

    @property
    def init(self) -> str:
        return "random" if self.random_init else "pretrained"

    @property
    def safe_tag(self) -> str:
        return self.tag.replace("/", "__")


def check_lm(name: str) -> str:
    """The registered name of ``name`` if it can be loaded here, else raise
    :class:`ModelUnavailableError` saying what to do (no weights are loaded)."""
    from interp.models.lm import ModelUnavailableError, resolve_hf_source
    from interp.models.registry import get_spec

    spec = get_spec(name, "lm")
    if spec.source in ("hub", "local"):
        resolve_hf_source(spec)  # raises ModelUnavailableError when offline and not cached
    else:
        ok, why = spec.available()
        if not ok:
            raise ModelUnavailableError(f"{spec.name} is not available here: {why}")
    return spec.name


def resolve_lms(cfg: AlignModelsConfig) -> tuple[list[str], list[tuple[str, str]]]:
    """(LMs to run, [(skipped LM, why)]). "available": every registered non-tiny LM, the
    unavailable ones skipped; an explicit list: all must be loadable, else raise."""
    from interp.models.lm import ModelUnavailableError
    from interp.models.registry import LMS

    if cfg.lms == "available":
        ok, skipped = [], []
        for spec in LMS:
            if spec.source == "tiny":
                continue
            try:
                ok.append(check_lm(spec.name))
            except ModelUnavailableError as e:
                skipped.append((spec.name, str(e)))
        if not ok:
            raise ModelUnavailableError("no registered LM is available here: " + "; ".join(w for _, w in skipped))
        return ok, skipped
    errors, names = [], []
    for name in cfg.lms:
        try:
            names.append(check_lm(name))
        except ModelUnavailableError as e:
            errors.append(f"{name}: {e}")
    if errors:
        raise ModelUnavailableError("the config asks for LMs that cannot be loaded here (remove them, or use "
                                    "models.lms = \"available\" to skip what is missing):\n  " + "\n  ".join(errors))
    return names, []


def lm_variants(names: Sequence[str], random_seeds: Sequence[int]) -> list[LMVariant]:
    return [v for n in names for v in [LMVariant(n)] + [LMVariant(n, True, s) for s in random_seeds]]


def _load_hooked(variant: LMVariant, cfg: AlignModelsConfig):
    from interp.models.hooked import HookedLM
    from interp.models.lm import load_lm

    return HookedLM(load_lm(variant.base, device=cfg.device, dtype=DTYPES[cfg.dtype],
                            random_init=variant.random_init, seed=variant.seed))


def _n_layers(name: str) -> int:
    from interp.models.registry import get_spec

    return get_spec(name, "lm").n_layers


# ---------------------------------------------------------------------- data
@dataclass
class AlignData:
    taxonomy: Any
    classes: list[str]  # sorted leaf names
    prompts: list[str]  # one per class
    image_feats: torch.Tensor  # [n_images, d_img] pooled
    image_class: torch.Tensor  # [n_images] index into classes
    tops: dict[str, frozenset[str]]  # class -> top-level hypernyms
    manifest_hash: str


def load_align_data(cfg: AlignmentConfig, progress: bool = True) -> AlignData:
    """Classes, prompts and pooled image features (through the taxonomic study's
    :func:`load_data`, so its content-hashed feature cache is shared)."""
    from interp.models.encoders import load_encoder
    from interp.studies.config import DataConfig, ModelConfig, StudyConfig
    from interp.studies.taxonomy import load_data

    d = cfg.data
    scfg = StudyConfig(data=DataConfig(images=d.images, taxonomy=d.taxonomy, max_concepts=d.max_concepts, seed=d.seed),
                       model=ModelConfig(encoder=cfg.models.encoder, device=cfg.models.device))
    encoder = load_encoder(cfg.models.encoder, device=cfg.models.device)
    sd = load_data(scfg, encoder, progress=progress)
    classes = sorted(sd.taxonomy.leaves)
    index = {c: i for i, c in enumerate(classes)}
    return AlignData(sd.taxonomy, classes, class_prompts(classes, sd.taxonomy.phrase, d.template),
                     pool_image_features(sd.features), torch.tensor([index[r.concept] for r in sd.records]),
                     {c: top_hypernyms(sd.taxonomy, c) or frozenset({NO_GROUP}) for c in classes}, sd.manifest_hash)


# --------------------------------------------------------------------- units
@dataclass(frozen=True)
class Unit:
    variant: LMVariant
    layer: int
    n_layers: int
    mode: str
    seed: int

    @property
    def unit_id(self) -> str:
        return f"{self.mode}-L{self.layer:02d}-s{self.seed}"

    def path(self, out: Path) -> Path:
        return out / "units" / self.variant.safe_tag / f"{self.unit_id}.json"


def unit_key(cfg: AlignmentConfig, data: AlignData, unit: Unit) -> str:
    """What a unit's result depends on: a changed config part reruns it."""
    return stable_hash({"data": asdict(cfg.data), "encoder": cfg.models.encoder, "dtype": cfg.models.dtype,
                        "head": asdict(cfg.head), "test_frac": cfg.split.test_frac, "variant": asdict(unit.variant),
                        "layer": unit.layer, "mode": unit.mode, "seed": unit.seed, "manifest": data.manifest_hash})


def run_unit(text_feats: torch.Tensor, data: AlignData, unit: Unit, cfg: AlignmentConfig) -> dict[str, Any]:
    """Train and score one unit. ``text_feats [n_classes, d_model]`` at ``unit.layer``."""
    split = class_split(data.classes, mode=unit.mode, test_frac=cfg.split.test_frac, seed=unit.seed,
                        taxonomy=data.taxonomy)
    index = {c: i for i, c in enumerate(data.classes)}
    train, test = [index[c] for c in split.train], [index[c] for c in split.test]
    res = train_head(text_feats, data.image_feats, data.image_class, train, cfg.head, seed=unit.seed,
                     device=cfg.models.device)
    zs = zero_shot(res.head, text_feats, data.image_feats, data.image_class, test)
    fit = zero_shot(res.head, text_feats, data.image_feats, data.image_class, train, ks=(1,))
    names = list(split.test)
    true_names = [names[t] for t in zs["true"]]
    pred_names = [names[p[0]] for p in zs["pred"]]
    same = [bool(data.tops[a] & data.tops[b]) for a, b in zip(true_names, pred_names)]
    same_chance = [sum(bool(data.tops[a] & data.tops[c]) for c in names) / len(names) for a in true_names]
    v = unit.variant
    row = {"lm": v.tag, "lm_base": v.base, "lm_init": v.init, "lm_seed": v.seed if v.random_init else -1,
           "layer": unit.layer, "n_layers": unit.n_layers, "rel_depth": unit.layer / max(1, unit.n_layers - 1),
           "split": unit.mode, "seed": unit.seed, "n_train_classes": len(train), "n_test_classes": len(test),
           "n_dropped_classes": len(split.dropped),
           "n_test_images": zs["n_images"], "top1": zs["top1"], "top5": zs["top5"], "chance1": zs["chance1"],
           "chance5": zs["chance5"], "macro_top1": zs["macro_top1"], "train_top1": fit["top1"],
           "same_group_top1": 100.0 * float(np.mean(same)), "same_group_chance": 100.0 * float(np.mean(same_chance)),
           "loss_first": float(np.mean(res.losses[:10])), "loss_last": float(np.mean(res.losses[-10:])),
           "seconds": res.seconds, "held_out_groups": "|".join(split.held_out_groups)}
    return {"row": row, "test_classes": names, "true": zs["true"], "pred": zs["pred"]}


# ------------------------------------------------------------------ LM-only
def lm_only_path(out: Path, variant: LMVariant) -> Path:
    return out / "lm_only" / f"{variant.safe_tag}.json"


def run_lm_only(lm, data: AlignData, variant: LMVariant, cfg: AlignmentConfig, out: Path,
                progress: bool = True) -> dict[str, Any]:
    from interp.studies.taxonomy import lm_only_test

    path = lm_only_path(out, variant)
    key = stable_hash({"taxonomy": data.taxonomy.hash, "variant": asdict(variant), "dtype": cfg.models.dtype})
    if path.exists() and read_json(path).get("key") == key:
        return read_json(path)["result"]
    res = {**lm_only_test(lm, data.taxonomy, cfg.eval.batch_size, progress), "lm": variant.tag,
           "lm_base": variant.base, "lm_init": variant.init}
    write_json(path, {"key": key, "result": res, "environment": environment()})
    return res


# -------------------------------------------------------------------- driver
def run(cfg: AlignmentConfig, *, progress: bool = True, source: str = "CONFIG") -> dict[str, Any]:
    """Run the study (resumable) and write tables, report and figures; returns the summary."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names, skipped = resolve_lms(cfg.models)
    for name, why in skipped:
        print(f"[alignment] skipping {name}: {why}")
    write_json(out / "config.json", {"config": cfg.to_dict(), "hash": cfg.hash, "source": source,
                                     "lms": names, "skipped_lms": skipped, "environment": environment()})
    data = load_align_data(cfg, progress)
    print(f"[alignment] {len(data.classes)} classes, {len(data.image_class)} images; LMs {names} "
          f"(+ random-init seeds {list(cfg.models.random_seeds)}); splits {list(cfg.split.modes)} x seeds "
          f"{list(cfg.split.seeds)}")
    from interp.paths import cache_dir

    feat_dir = Path(cfg.models.feature_cache) if cfg.models.feature_cache else cache_dir("alignment", "lm_features")
    write_json(out / "class_groups.json", {c: sorted(g) for c, g in data.tops.items()})
    rows: list[dict] = []
    lm_only: list[dict] = []
    for variant in lm_variants(names, cfg.models.random_seeds):
        n_layers = _n_layers(variant.base)
        lm = None
        if n_layers == 0:  # unregistered hub id / folder: the shape is known after loading
            lm = _load_hooked(variant, cfg.models)
            n_layers = lm.n_layers
        layers = parse_layers(cfg.models.layers, n_layers)
        score = parse_layers([cfg.models.score_layer], n_layers)[0]
        layers = sorted(set(layers) | {score})
        units = [Unit(variant, layer, n_layers, m, s) for m in cfg.split.modes for layer in layers
                 for s in cfg.split.seeds]
        keys = {u: unit_key(cfg, data, u) for u in units}
        done = {}
        for u in units:
            p = u.path(out)
            if p.exists():
                got = read_json(p)
                if got.get("key") == keys[u]:
                    done[u] = got
                else:
                    log.info("alignment: %s/%s is stale (config changed): rerunning", variant.tag, u.unit_id)
        todo = [u for u in units if u not in done]
        fpath = feature_cache_path(feat_dir, variant.tag, data.prompts, cfg.data.pool, cfg.models.dtype)
        feats = load_cached_features(fpath, variant.tag, data.prompts, cfg.data.pool) if todo else None
        need_lm_only = cfg.eval.lm_only and _stale_lm_only(out, variant, data, cfg)
        if (todo and feats is None) or need_lm_only:
            lm = lm or _load_hooked(variant, cfg.models)
        if todo and feats is None:
            feats, fpath = cached_lm_class_features(lm, data.prompts, cache_dir=feat_dir, pool=cfg.data.pool,
                                                    batch_size=cfg.models.batch_size, progress=progress,
                                                    tag=variant.tag)
        if cfg.eval.lm_only:
            if lm is not None:
                lm_only.append(run_lm_only(lm, data, variant, cfg, out, progress))
            else:
                lm_only.append(read_json(lm_only_path(out, variant))["result"])
        del lm
        gc.collect()
        for u in tqdm(todo, desc=f"align {variant.tag}", disable=not progress or not todo):
            res = run_unit(feats[u.layer], data, u, cfg)
            write_json(u.path(out), {"key": keys[u], **res, "features": str(fpath)})
            done[u] = {"key": keys[u], **res}
        rows += [done[u]["row"] for u in units]
    result = write_outputs(cfg, rows, lm_only, out, skipped)
    result["seconds"] = time.perf_counter() - t0
    write_json(out / "summary.json", result)
    return result


def _stale_lm_only(out: Path, variant: LMVariant, data: AlignData, cfg: AlignmentConfig) -> bool:
    path = lm_only_path(out, variant)
    key = stable_hash({"taxonomy": data.taxonomy.hash, "variant": asdict(variant), "dtype": cfg.models.dtype})
    return not path.exists() or read_json(path).get("key") != key


# ------------------------------------------------------------------- outputs
ROW_FIELDS = ["lm", "lm_base", "lm_init", "lm_seed", "layer", "n_layers", "rel_depth", "split", "seed",
              "n_train_classes", "n_test_classes", "n_dropped_classes", "n_test_images", "top1", "top5", "chance1",
              "chance5", "macro_top1", "train_top1", "same_group_top1", "same_group_chance", "loss_first", "loss_last", "seconds",
              "held_out_groups"]
NUMERIC = {"lm_seed": int, "layer": int, "n_layers": int, "rel_depth": float, "seed": int, "n_train_classes": int,
           "n_test_classes": int, "n_dropped_classes": int, "n_test_images": int, "top1": float, "top5": float,
           "chance1": float, "chance5": float, "macro_top1": float, "train_top1": float, "same_group_top1": float,
           "same_group_chance": float, "loss_first": float, "loss_last": float, "seconds": float}


def read_csv(path: Path, numeric: dict[str, type] | None = None) -> list[dict]:
    """A table of this study, its numeric columns (default :data:`NUMERIC`) parsed."""
    return io.read_csv(path, NUMERIC if numeric is None else numeric)


def summarize(rows: list[dict]) -> list[dict]:
    """Per (LM variant, split, layer): mean and 95% t-interval over seeds of top-1/top-5,
    mean chance and fit (training-class top-1)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["lm"], r["split"], int(r["layer"])), []).append(r)
    out = []
    for (lm, split, layer), rs in sorted(groups.items()):
        t1, h1, n = mean_ci([r["top1"] for r in rs])
        t5, h5, _ = mean_ci([r["top5"] for r in rs])
        out.append({"lm": lm, "lm_base": rs[0]["lm_base"], "lm_init": rs[0]["lm_init"], "split": split, "layer": layer,
                    "n_layers": rs[0]["n_layers"], "rel_depth": rs[0]["rel_depth"], "n_seeds": n,
                    "top1": t1, "top1_ci": h1, "top5": t5, "top5_ci": h5,
                    "chance1": float(np.mean([r["chance1"] for r in rs])),
                    "chance5": float(np.mean([r["chance5"] for r in rs])),
                    "train_top1": float(np.mean([r["train_top1"] for r in rs])),
                    "same_group_top1": float(np.mean([r["same_group_top1"] for r in rs])),
                    "same_group_chance": float(np.mean([r["same_group_chance"] for r in rs])),
                    "n_test_classes": float(np.mean([r["n_test_classes"] for r in rs]))})
    return out


SUMMARY_FIELDS = ["lm", "lm_base", "lm_init", "split", "layer", "n_layers", "rel_depth", "n_seeds", "top1", "top1_ci",
                  "top5", "top5_ci", "chance1", "chance5", "train_top1", "same_group_top1", "same_group_chance",
                  "n_test_classes"]
SUMMARY_NUMERIC = {"layer": int, "n_layers": int, "rel_depth": float, "n_seeds": int, "top1": float,
                   "top1_ci": float, "top5": float, "top5_ci": float, "chance1": float, "chance5": float,
                   "train_top1": float, "same_group_top1": float, "same_group_chance": float,
                   "n_test_classes": float}


def lm_scores(summary: list[dict], score_layer: int) -> list[dict]:
    """Per (LM variant, split): the score at ``score_layer`` (negative = from the end) and
    at the best layer (max of the seed means: optimistic, selected on the test classes)."""
    by: dict[tuple[str, str], list[dict]] = {}
    for s in summary:
        by.setdefault((s["lm"], s["split"]), []).append(s)
    out = []
    for (lm, split), ss in sorted(by.items()):
        n = ss[0]["n_layers"]
        want = score_layer % n
        at = [s for s in ss if s["layer"] == want]
        best = max(ss, key=lambda s: s["top1"])
        sc = at[0] if at else {"top1": float("nan"), "top1_ci": float("nan"), "top5": float("nan"),
                               "top5_ci": float("nan"), "chance1": best["chance1"], "n_seeds": 0}
        out.append({"lm": lm, "lm_base": ss[0]["lm_base"], "lm_init": ss[0]["lm_init"], "split": split,
                    "score_layer": want, "n_layers": n, "n_test_classes": sc.get("n_test_classes", float("nan")),
                    "top1": sc["top1"], "top1_ci": sc["top1_ci"],
                    "top5": sc["top5"], "top5_ci": sc["top5_ci"], "chance1": sc["chance1"],
                    "n_seeds": sc["n_seeds"], "best_layer": best["layer"], "best_top1": best["top1"],
                    "best_top1_ci": best["top1_ci"]})
    return out


def correlations(scores: list[dict], lm_only: list[dict]) -> list[dict]:
    """Pearson r of the alignment score (at the score layer, and at the best layer) with each
    LM-only metric, over LM variants, per split; n is the number of LM variants."""
    by_lm = {r["lm"]: r for r in lm_only}
    out = []
    for split in sorted({s["split"] for s in scores}):
        ss = [s for s in scores if s["split"] == split and s["lm"] in by_lm]
        for which in ("top1", "best_top1"):
            for m in LM_ONLY_METRICS:
                x = [by_lm[s["lm"]][m] for s in ss]
                y = [s[which] for s in ss]
                r, p = pearson(x, y)
                out.append({"split": split, "score": which, "lm_only_metric": m, "r": r, "p": p, "n": len(ss),
                            "lms": [s["lm"] for s in ss]})
    return out


def _fmt(m: float, h: float) -> str:
    if m != m:
        return "-"
    return f"{m:.1f}" if h != h else f"{m:.1f} ± {h:.1f}"


def paired_differences(rows: list[dict], score_layer: int) -> list[dict]:
    """Top-1 at the score layer of LM ``a`` minus LM ``b``, paired over seeds (the same seed
    is the same class split and head initialisation for every LM), per split: every pair
    of pretrained LMs and every LM against its random-init control. Mean and 95%
    t-interval of the per-seed differences."""
    at: dict[tuple[str, str], dict[int, float]] = {}
    meta: dict[str, dict] = {}
    for r in rows:
        if int(r["layer"]) == score_layer % int(r["n_layers"]):
            at.setdefault((r["lm"], r["split"]), {})[int(r["seed"])] = float(r["top1"])
            meta[r["lm"]] = r
    lms = sorted(meta)
    pre = [m for m in lms if meta[m]["lm_init"] == "pretrained"]
    pairs = [(a, b) for i, a in enumerate(pre) for b in pre[i + 1:]]
    pairs += [(a, b) for a in pre for b in lms if meta[b]["lm_init"] == "random" and meta[b]["lm_base"] ==
              meta[a]["lm_base"]]
    out = []
    for split in sorted({r["split"] for r in rows}):
        for a, b in pairs:
            xa, xb = at.get((a, split), {}), at.get((b, split), {})
            seeds = sorted(set(xa) & set(xb))
            m, h, n = mean_ci([xa[s] - xb[s] for s in seeds])
            out.append({"split": split, "a": a, "b": b, "diff_top1": m, "diff_ci": h, "n_seeds": n})
    return out


def report_markdown(cfg: AlignmentConfig, summary: list[dict], scores: list[dict], lm_only: list[dict],
                    corr: list[dict], skipped: Sequence[tuple[str, str]] = (),
                    diffs: Sequence[dict] = ()) -> str:
    """The study's report; every number comes from the tables passed in."""
    h = cfg.head
    lines = [f"# Visual alignment of language models: `{cfg.name}`", "",
             f"Class prompt `{cfg.data.template}` ({cfg.data.pool} token, `blocks.{{i}}.hook_resid_post`), image "
             f"encoder `{cfg.models.encoder}` (mean-pooled), images `{cfg.data.images}`, taxonomy "
             f"`{cfg.data.taxonomy}`. Head: {h.text_layers}-layer text MLP (width {h.text_hidden}, BatchNorm, ReLU, "
             f"dropout {h.dropout}, L2 norm), image side {h.image_side}, InfoNCE with fixed logit scale "
             f"{h.logit_scale:.2f}, AdamW lr {h.lr}, wd {h.weight_decay}, {h.steps} steps of {h.batch_size} distinct "
             f"classes, warmup {h.warmup_frac:.0%} then cosine. Held out: about {cfg.split.test_frac:.0%} of the "
             f"classes per seed (seeds {list(cfg.split.seeds)}), never seen in training; the **alignment score** is "
             f"zero-shot top-1 (%) among the held-out classes at the score layer, mean ± 95% t-interval over seeds.",
             ""]
    if skipped:
        lines += ["Skipped (not available here): " + ", ".join(n for n, _ in skipped), ""]
    for split in sorted({s["split"] for s in scores}):
        what = ("random classes held out" if split == "concept" else
                "whole top-level hypernyms held out; classes straddling held-out and training hypernyms dropped")
        lines += [f"## Split by {split} ({what})", "",
                  "| LM | init | layer | held-out classes | top-1 | top-5 | chance top-1 | best layer* | top-1 there |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s in [s for s in scores if s["split"] == split]:
            lines.append(f"| {s['lm_base']} | {s['lm_init']} | {s['score_layer']}/{s['n_layers'] - 1} | "
                         f"{s['n_test_classes']:.0f} | {_fmt(s['top1'], s['top1_ci'])} | "
                         f"{_fmt(s['top5'], s['top5_ci'])} | {s['chance1']:.1f} | {s['best_layer']} | "
                         f"{_fmt(s['best_top1'], s['best_top1_ci'])} |")
        lines += ["", "*best layer: chosen on the held-out classes themselves, so optimistic; the score layer is "
                  "fixed in advance.", ""]
        dd = [d for d in diffs if d["split"] == split]
        if dd:
            lines += ["Paired differences at the score layer (same seed = same split and head init):", "",
                      "| LM a | LM b | top-1 a − b | seeds |", "|---|---|---|---|"]
            lines += [f"| {d['a']} | {d['b']} | {_fmt(d['diff_top1'], d['diff_ci'])} | {d['n_seeds']} |" for d in dd]
            lines.append("")
        lines += ["Per layer (mean ± 95% CI over seeds; fit = top-1 among the training classes on their own "
                  "images; same-group = share of top-1 predictions sharing a top-level hypernym with the truth, "
                  "vs its chance):", "",
                  "| LM | layer | top-1 | top-5 | fit | same-group (chance) |", "|---|---|---|---|---|---|"]
        for s in [s for s in summary if s["split"] == split]:
            lines.append(f"| {s['lm']} | {s['layer']} | {_fmt(s['top1'], s['top1_ci'])} | "
                         f"{_fmt(s['top5'], s['top5_ci'])} | {s['train_top1']:.1f} | "
                         f"{s['same_group_top1']:.1f} ({s['same_group_chance']:.1f}) |")
        lines.append("")
    if lm_only:
        lines += ["## LM-only hypernym test (the taxonomic study's, same taxonomy)", "",
                  "Macro F1 of Yes/No answers to \"Is it true that X is a Y?\" (a base LM that says Yes to "
                  "everything sits at the majority F1), and two bias-free variants: pairwise (true hypernym vs its "
                  "distractor by Yes−No margin) and cloze (\"X is a kind of\" + hypernym vs distractor).", "",
                  "| LM | macro F1 | majority F1 | yes rate | pairwise acc | cloze acc |", "|---|---|---|---|---|---|"]
        for r in lm_only:
            lines.append(f"| {r['lm']} | {r['macro_f1']:.1f} | {r['majority_f1']:.1f} | {r['yes_rate']:.2f} | "
                         f"{r['pairwise_acc']:.1f} | {r['cloze_acc']:.1f} |")
        lines += ["", "## Alignment score vs LM-only test (Pearson over LM variants)", "",
                  "| split | score | LM-only metric | r | p | n |", "|---|---|---|---|---|---|"]
        for c in corr:
            r = "-" if c["r"] != c["r"] else f"{c['r']:.2f}"
            p = "-" if c["p"] != c["p"] else f"{c['p']:.3f}"
            lines.append(f"| {c['split']} | {c['score']} | {c['lm_only_metric']} | {r} | {p} | {c['n']} |")
        lines += ["", "With so few LM variants (n above, pretrained and random-init together) a correlation is a "
                  "description, not evidence; the published one (r = 0.768) is over dozens of LMs."]
    return "\n".join(lines) + "\n"


def tables(cfg: AlignmentConfig, rows: list[dict], lm_only: list[dict]) -> dict[str, Any]:
    """Summary, scores, paired differences and correlations from the per-unit rows."""
    summary = summarize(rows)
    scores = lm_scores(summary, cfg.models.score_layer)
    return {"summary": summary, "scores": scores, "diffs": paired_differences(rows, cfg.models.score_layer),
            "correlation": correlations(scores, lm_only) if lm_only else []}


def write_outputs(cfg: AlignmentConfig, rows: list[dict], lm_only: list[dict], out: Path,
                  skipped: Sequence[tuple[str, str]] = (), *, fig_dir: Path | None = None,
                  study_dir: Path | None = None, echo: bool = True) -> dict[str, Any]:
    """Tables (CSV/JSON), report.md and figures into ``out`` (figures into ``fig_dir``,
    default ``out/figures``); ``study_dir`` (default ``out``) holds the per-unit files the
    confusion figures read."""
    out = Path(out)
    t = tables(cfg, rows, lm_only)
    write_csv(out / "results.csv", rows, ROW_FIELDS)
    write_csv(out / "summary.csv", t["summary"], SUMMARY_FIELDS)
    write_csv(out / "scores.csv", t["scores"], list(t["scores"][0]) if t["scores"] else [])
    write_csv(out / "differences.csv", t["diffs"], ["split", "a", "b", "diff_top1", "diff_ci", "n_seeds"])
    if lm_only:
        write_csv(out / "lm_only.csv", lm_only, list(lm_only[0]))
    write_json(out / "correlation.json", t["correlation"])
    text = report_markdown(cfg, t["summary"], t["scores"], lm_only, t["correlation"], skipped, t["diffs"])
    write_text(out / "report.md", text)
    files = write_figures(study_dir or out, fig_dir or out / "figures", score_layer=cfg.models.score_layer,
                          confusion_lm=cfg.eval.confusion_lm)
    if echo:
        print(text)
    return {"scores": t["scores"], "differences": t["diffs"], "correlation": t["correlation"], "n_units": len(rows),
            "figures": [str(f) for f in files]}


def config_from_dict(d: dict[str, Any]) -> AlignmentConfig:
    """The inverse of :meth:`AlignmentConfig.to_dict` (e.g. from a study's config.json)."""
    top = {k: v for k, v in d.items() if k not in SECTIONS}
    return AlignmentConfig(**top, **{k: build_section(c, d.get(k, {}), k) for k, c in SECTIONS.items()})


def load_outputs(study_dir: Path) -> tuple[AlignmentConfig, list[dict], list[dict], list[tuple[str, str]]]:
    """(config, per-unit rows, LM-only rows, skipped LMs) of a finished study folder."""
    study_dir = Path(study_dir)
    if not (study_dir / "results.csv").exists():
        raise FileNotFoundError(f"no results.csv in {study_dir}: run `python -m interp.alignment CONFIG` first")
    meta = read_json(study_dir / "config.json")
    lm_path = study_dir / "lm_only.csv"
    lm_only = read_csv(lm_path, LM_ONLY_NUMERIC) if lm_path.exists() else []
    return (config_from_dict(meta["config"]), read_csv(study_dir / "results.csv"), lm_only,
            [tuple(s) for s in meta.get("skipped_lms", [])])


_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
LM_ONLY_NUMERIC = {"n_pairs": int, "n_hypernyms": int, "macro_f1": float, "majority_f1": float, "yes_rate": float,
                   "pairwise_acc": float, "cloze_acc": float}


# ------------------------------------------------------------------- figures
def write_figures(study_dir: Path, fig_dir: Path, *, score_layer: int = -1, confusion_lm: str = "") -> list[Path]:
    """Figures from a study folder's tables (results.csv, lm_only.csv, units/): top-1 per
    layer and LM (relative depth), score vs the LM-only test, confusion among held-out
    classes (one unit) and between top-level hypernyms (over seeds)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from interp.analysis.alignment import confusion, group_confusion
    from interp.plots import heatmap, save_figure

    study_dir, fig_dir = Path(study_dir), Path(fig_dir)
    rows = read_csv(study_dir / "results.csv")
    summary = summarize(rows)
    files: list[Path] = []
    for split in sorted({r["split"] for r in rows}):
        fig = go.Figure()
        ss = [s for s in summary if s["split"] == split]
        for lm in sorted({s["lm"] for s in ss}, key=lambda x: ("+random" in x, x)):
            pts = sorted((s for s in ss if s["lm"] == lm), key=lambda s: s["layer"])
            fig.add_trace(go.Scatter(
                x=[s["rel_depth"] for s in pts], y=[s["top1"] for s in pts], name=lm, mode="lines+markers",
                text=[f"layer {s['layer']}" for s in pts], line=dict(dash="dot" if "+random" in lm else None),
                error_y=dict(type="data", array=[0 if s["top1_ci"] != s["top1_ci"] else s["top1_ci"] for s in pts])))
        chance = float(np.mean([s["chance1"] for s in ss]))
        fig.add_hline(y=chance, line_dash="dash", line_color="black", annotation_text=f"chance {chance:.1f}")
        fig.update_layout(title=f"Zero-shot top-1 on held-out classes (split by {split}), mean ± 95% CI over seeds",
                          xaxis_title="relative depth (block / last block)", yaxis_title="top-1 (%)")
        files += save_figure(fig, fig_dir / f"score_by_layer_{split}")
    lm_path = study_dir / "lm_only.csv"
    if lm_path.exists():
        by_lm = {r["lm"]: r for r in read_csv(lm_path, LM_ONLY_NUMERIC)}
        scores = lm_scores(summary, score_layer)
        for split in sorted({s["split"] for s in scores}):
            ss = [s for s in scores if s["split"] == split and s["lm"] in by_lm]
            rs = [pearson([by_lm[s["lm"]][m] for s in ss], [s["top1"] for s in ss])[0] for m in LM_ONLY_METRICS]
            fig = make_subplots(rows=1, cols=len(LM_ONLY_METRICS), shared_yaxes=True,
                                subplot_titles=[f"{m} (r = {r:.2f})" for m, r in zip(LM_ONLY_METRICS, rs)])
            colors = {b: c for b, c in zip(sorted({s["lm_base"] for s in ss}), _COLORS * 10)}
            for col, m in enumerate(LM_ONLY_METRICS, start=1):
                for s in ss:
                    fig.add_trace(go.Scatter(
                        x=[by_lm[s["lm"]][m]], y=[s["top1"]], name=s["lm"], mode="markers", showlegend=col == 1,
                        legendgroup=s["lm"],
                        error_y=dict(type="data", array=[0 if s["top1_ci"] != s["top1_ci"] else s["top1_ci"]]),
                        marker=dict(size=11, color=colors[s["lm_base"]],
                                    symbol="circle-open" if s["lm_init"] == "random" else "circle")),
                        row=1, col=col)
                fig.update_xaxes(title_text=f"LM-only {m} (%)", row=1, col=col)
            fig.update_yaxes(title_text="zero-shot top-1 at the score layer (%)", row=1, col=1)
            fig.update_layout(title=f"Alignment score vs LM-only hypernym test (split by {split}; n = {len(ss)} LMs; "
                                    "open = random init)")
            files += save_figure(fig, fig_dir / f"score_vs_lm_only_{split}", width=1300, height=520)
    files += _confusion_figures(study_dir, fig_dir, rows, score_layer, confusion_lm, confusion, group_confusion,
                                heatmap, save_figure)
    return files


def _confusion_figures(study_dir, fig_dir, rows, score_layer, confusion_lm, confusion, group_confusion, heatmap,
                       save_figure) -> list[Path]:
    files: list[Path] = []
    pretrained = [r for r in rows if r["lm_init"] == "pretrained"] or rows
    lm = confusion_lm or pretrained[0]["lm"]
    cand = [r for r in rows if r["lm"] == lm]
    if not cand:
        raise ValueError(f"confusion_lm {lm!r} has no results; LMs in the table: {sorted({r['lm'] for r in rows})}")
    layer = score_layer % cand[0]["n_layers"]
    for split in sorted({r["split"] for r in cand}):
        units = sorted((r for r in cand if r["split"] == split and r["layer"] == layer), key=lambda r: r["seed"])
        if not units:
            continue
        tops_path = study_dir / "class_groups.json"
        groups = read_json(tops_path) if tops_path.exists() else {}
        safe = lm.replace("/", "__")
        first = read_json(study_dir / "units" / safe / f"{split}-L{layer:02d}-s{units[0]['seed']}.json")
        names = first["test_classes"]
        order = sorted(range(len(names)), key=lambda j: (sorted(groups.get(names[j], ["~"]))[0], names[j]))
        m = confusion(first["true"], [p[0] for p in first["pred"]], len(names))
        m = m[order][:, order]
        labels = [names[j] for j in order]
        fig = heatmap(m.numpy(), labels, labels, title=f"Confusion among held-out classes: {lm}, layer {layer}, "
                      f"split by {split}, seed {units[0]['seed']}<br>(rows: true, sorted by top-level hypernym)",
                      xlabel="predicted (top-1)", ylabel="true", colorscale="Blues", zmid=None)
        files += save_figure(fig, fig_dir / f"confusion_classes_{split}", width=1100, height=1000)
        if groups:
            t_names, p_names = [], []
            for u in units:
                got = read_json(study_dir / "units" / safe / f"{split}-L{layer:02d}-s{u['seed']}.json")
                n = got["test_classes"]
                t_names += [n[t] for t in got["true"]]
                p_names += [n[p[0]] for p in got["pred"]]
            gnames, gm = group_confusion(t_names, p_names, {c: groups[c] for c in set(t_names) | set(p_names)})
            fig = heatmap(gm.numpy(), gnames, gnames, title=f"Held-out images by top-level hypernym: true vs predicted "
                          f"class's<br>({lm}, layer {layer}, split by {split}, all seeds)", xlabel="predicted",
                          ylabel="true", colorscale="Blues", zmid=None)
            files += save_figure(fig, fig_dir / f"confusion_hypernyms_{split}", width=1000, height=900)
    return files
