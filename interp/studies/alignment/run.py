"""The visual-alignment study's driver: LM variants, data, resumable units (one head per LM variant
x layer x split x seed), the LM-only test, then the outputs (see the package doc)."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.analysis.class_features import (class_prompts, cached_lm_class_features, feature_cache_path,
                                            load_cached_features, pool_image_features)
from interp.io import environment, read_json, stable_hash, write_json
from interp.models.encoders import load_encoder
from interp.models.hooked import HookedLM
from interp.models.lm import ModelUnavailableError, load_lm, resolve_hf_source
from interp.models.registry import LMS, get_spec
from interp.paths import cache_dir
from interp.studies.alignment.config import AlignModelsConfig, AlignmentConfig, DTYPES, parse_layers
from interp.studies.alignment.head import train_head, zero_shot
from interp.studies.alignment.page import write_report_page
from interp.studies.alignment.report import write_outputs
from interp.studies.alignment.splits import NO_GROUP, class_split, top_hypernyms
from interp.studies.taxonomy.config import DataConfig, ModelConfig, StudyConfig
from interp.studies.taxonomy.run import lm_only_test, load_data


log = logging.getLogger(__name__)



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
    return HookedLM(load_lm(variant.base, device=cfg.device, dtype=DTYPES[cfg.dtype],
                            random_init=variant.random_init, seed=variant.seed))



def _n_layers(name: str) -> int:
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
    result["page"] = str(write_report_page(out, progress=progress))
    return result



def _stale_lm_only(out: Path, variant: LMVariant, data: AlignData, cfg: AlignmentConfig) -> bool:
    path = lm_only_path(out, variant)
    key = stable_hash({"taxonomy": data.taxonomy.hash, "variant": asdict(variant), "dtype": cfg.models.dtype})
    return not path.exists() or read_json(path).get("key") != key
