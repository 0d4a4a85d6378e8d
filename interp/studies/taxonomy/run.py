"""The taxonomic-generalization study (brief, section A), end to end.

``run_study(config)``: build or load images and taxonomy, cache encoder features once,
then for every run of the grid (world x deprivation x seed, plus the random-init LM
control) train a projector (resumable; finished runs skipped) and score its test
questions in batches; then the LM-only text test, a tidy results table (one row per
run x hypernym x seen/unseen), a markdown report laid out like the brief's table and
plotly figures. Results land in ``config.out_dir``.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.data import images as img, taxonomy as tx
from interp.data.taxonomy import THINGS_TSV, load_things_taxonomy
from interp.data.things import load_things_images
from interp.diagnostics import token_stats
from interp.examples import Example
from interp.features import UndecodableImages, encode_cached
from interp.io import environment, read_json, stable_hash, write_csv, write_json
from interp.metrics import coherence, macro_f1
from interp.models.encoders import load_encoder
from interp.models.hooked import HookedLM
from interp.models.lm import load_lm
from interp.projector import Projector, pool_tokens
from interp.runlock import run_lock
from interp.scoring import continuation_logprob, score_examples, text_yes_no
from interp.studies.taxonomy.conditions import removed_leaves, world_mapping
from interp.studies.taxonomy.config import StudyConfig, parse_ablation
from interp.studies.taxonomy.gallery import IMAGE_COLUMNS, image_rows
from interp.studies.taxonomy.page import write_report_page
from interp.studies.taxonomy.prototypes import cached_prototypes, text_token_norm
from interp.studies.taxonomy.questions import cloze_prompt, examples_for_images, text_test_items, truth_question
from interp.studies.taxonomy.report import write_outputs
from interp.train_projector import train_projector
from interp.vlm import HookedVLM
from interp.warmstart import fit_classifier, prototype_init, refine_readout


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class RunSpec:
    world: str
    ablation: str
    seed: int
    random_init: bool = False

    @property
    def run_id(self) -> str:
        abl = parse_ablation(self.ablation).label.replace("%", "pct")
        return f"{'randlm' if self.random_init else 'lm'}-{self.world}-{abl}-s{self.seed}"


def grid_runs(cfg: StudyConfig) -> list[RunSpec]:
    runs = [RunSpec(w, a, s) for s in cfg.grid.seeds for a in cfg.grid.ablations for w in cfg.grid.worlds]
    runs += [RunSpec("original", a, s, True) for s in cfg.grid.seeds for a in cfg.grid.control_ablations]
    return runs


# ------------------------------------------------------------------------ data
@dataclass
class StudyData:
    taxonomy: Any
    records: list  # image records (key, concept, source, path)
    splits: dict[str, list[int]]  # split -> indices into records
    features: torch.Tensor  # [n_images, tokens, d_img]
    manifest_hash: str


def load_data(cfg: StudyConfig, encoder, progress: bool = True, strict_images: bool = False) -> StudyData:
    """Images, taxonomy, splits and cached encoder features of a study config. An image file
    that does not decode is skipped with a warning naming every such file (its concept keeps
    its other images), or, with ``strict_images``, stops the study naming them."""

    if cfg.data.images == "embedded":
        root = img.build_embedded_images(progress=progress)
        image_set = img.load_image_set(root)
        scheme = "renderings"
    else:
        image_set = load_things_images(Path(cfg.data.images))
        scheme = "things"
    if cfg.data.taxonomy == "embedded":
        taxonomy = img.embedded_taxonomy()
    else:
        path = tx.THINGS_TSV if cfg.data.taxonomy == "things" else Path(cfg.data.taxonomy)
        taxonomy = tx.load_things_taxonomy(path)
    concepts = sorted(set(image_set.concepts) & set(taxonomy.leaves))
    if not concepts:
        raise ValueError(f"no concept of the image set {cfg.data.images!r} is a leaf of taxonomy {cfg.data.taxonomy!r}")
    if cfg.data.max_concepts:
        concepts = sorted(random.Random(cfg.data.seed).sample(concepts, min(cfg.data.max_concepts, len(concepts))))
    taxonomy = taxonomy.restrict(concepts)
    image_set = image_set.restrict(concepts)
    skipped: set[str] = set()
    while True:
        kept = replace(image_set, images=[r for r in image_set.images if str(r.path) not in skipped])
        split_recs = img.split_images(kept, scheme, cfg.data.seed)
        records = [r for name in ("train", "val", "test") for r in split_recs[name]]
        try:
            fs = encode_cached(encoder, [r.path for r in records], [r.key for r in records], progress=progress)
            break
        except UndecodableImages as e:
            if strict_images:
                raise
            skipped |= {str(p) for p, _ in e.bad}
            print(f"[data] warning: skipping {len(e.bad)} image files that do not decode: "
                  + "; ".join(f"{p} ({why})" for p, why in e.bad))
    splits, i = {}, 0
    for name in ("train", "val", "test"):
        splits[name] = list(range(i, i + len(split_recs[name])))
        i += len(split_recs[name])
    manifest = stable_hash({"keys": fs.keys, "digest": fs.digest, "pairs": sorted(taxonomy.pairs)})
    return StudyData(taxonomy, records, splits, fs.features, manifest)


# ------------------------------------------------------------------------ runs
def per_hypernym_rows(examples: list[Example], scores: torch.Tensor, spec: RunSpec, coh: dict[str, float],
                      chance_seed: int = 0, n_perm: int = 20) -> list[dict]:
    """Tidy rows: one per (hypernym, seen/unseen) with F1, plus leaf rows, plus a chance line
    (the run's own predictions permuted within each group), plus ``pairwise``: the % of images
    whose Yes-minus-No margin is higher for the true question than for its distractor (a
    threshold-free score, chance 50)."""
    pred = np.where(scores.numpy() > 0, "Yes", "No")
    rng = np.random.default_rng(chance_seed)
    groups: dict[tuple[str, str, int], list[int]] = {}
    for i, ex in enumerate(examples):
        if ex.kind == "leaf":
            groups.setdefault(("<leaf>", "all", 0), []).append(i)
        else:
            groups.setdefault((ex.hypernym, "seen" if ex.seen else "unseen", ex.depth), []).append(i)
    rows = []
    for (h, split, depth), idx in sorted(groups.items()):
        truth = [examples[i].answer for i in idx]
        p = pred[idx]
        chance = float(np.mean([macro_f1(truth, rng.permutation(p)) for _ in range(n_perm)]))
        pos = {examples[i].image: float(scores[i]) for i in idx if examples[i].answer == "Yes"}
        wins = [pos[examples[i].image] > float(scores[i]) for i in idx
                if examples[i].answer == "No" and examples[i].image in pos]
        rows.append({"run_id": spec.run_id, "world": spec.world, "ablation": parse_ablation(spec.ablation).label,
                     "rate": parse_ablation(spec.ablation).rate, "lm_init": "random" if spec.random_init else "pretrained",
                     "seed": spec.seed, "hypernym": h, "split": split, "depth": depth, "n": len(idx),
                     "f1": macro_f1(truth, p), "chance_f1": chance, "yes_rate": float(np.mean(p == "Yes")),
                     "pairwise": 100.0 * float(np.mean(wins)) if wins else float("nan"),
                     "coherence": coh.get(h, float("nan"))})
    return rows


def world_coherence(data: StudyData, mapping: dict[str, str]) -> dict[str, float]:
    """Coherence per hypernym in a world: images grouped by the hypernyms of the concept
    their questions are about."""
    groups: dict[str, list[int]] = {}
    for i, rec in enumerate(data.records):
        for h in data.taxonomy.hypernyms_of(mapping[rec.concept]):
            groups.setdefault(h, []).append(i)
    return coherence(data.features, groups)


def run_conditions(data: StudyData, spec: RunSpec) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    """(world mapping image concept -> question concept, hypernym -> removed leaves) of a run."""
    mapping = world_mapping(sorted(data.taxonomy.leaves), data.taxonomy.pairs, spec.world, spec.seed)
    return mapping, removed_leaves(data.taxonomy.pairs, parse_ablation(spec.ablation), spec.seed)


def study_prototypes(lm, data: StudyData, cfg: StudyConfig, progress: bool = True):
    """The LM's concept prototypes for this study's leaves (cached on disk), or None when the
    warm start does not use them."""
    if cfg.warm_start.kind != "prototypes":
        return None

    protos = cached_prototypes(lm, data.taxonomy, sorted(data.taxonomy.leaves), cfg.prototypes, progress=progress)
    m = protos.metrics
    print(f"[study] {lm.name} concept prototypes (perfect vision): leaf F1 {m['leaf_f1']:.1f}, hypernym macro F1 "
          f"{m.get('hypernym_macro_f1', float('nan')):.1f}, token cosine {m['mean_pairwise_cosine']:.2f}")
    return protos


def heldout_monitor(vlm, data: StudyData, mapping: dict[str, str], cfg: StudyConfig, seed: int,
                    n_images: int = 128):
    """A function that scores leaf questions on a fixed subset of the val split (and of the
    train split) and measures image-token collapse: the in-training diagnostics."""

    rng = random.Random(f"monitor-{seed}")
    pick = lambda split, n: sorted(rng.sample(data.splits[split], min(n, len(data.splits[split]))))
    val, train = pick("val", n_images), pick("train", n_images // 2)
    none: dict[str, frozenset[str]] = {}
    sets = {}
    for name, rows in (("heldout", val), ("train", train)):
        exs = examples_for_images([(i, data.records[i].concept) for i in rows], data.taxonomy, mapping, none,
                                  train=True, seed=seed + 7919)
        sets[name] = [e for e in exs if e.kind == "leaf"]
    tn = text_token_norm(vlm.lm)
    feats = data.features[torch.tensor(val)]
    groups = [mapping[data.records[i].concept] for i in val]

    def monitor() -> dict:
        out = {}
        for name, exs in sets.items():
            sc = score_examples(vlm, data.features, exs, batch_size=cfg.eval.batch_size, progress=False)
            truth = [e.answer for e in exs]
            pred = ["Yes" if v > 0 else "No" for v in sc.tolist()]
            out[f"{name}_leaf_f1"] = macro_f1(truth, pred)
            out[f"{name}_leaf_acc"] = 100.0 * float(np.mean([t == p for t, p in zip(truth, pred)]))
            if name == "heldout":
                yes = torch.tensor([e.answer == "Yes" for e in exs])
                pos, neg = sc[yes], sc[~yes]
                n = min(len(pos), len(neg))
                out["heldout_leaf_pairwise"] = 100.0 * float((pos[:n] > neg[:n]).float().mean())
                out["heldout_yes_rate"] = 100.0 * float((sc > 0).float().mean())
        out.update(token_stats(vlm, feats, groups, tn))
        return out

    return monitor


def train_run(vlm, data: StudyData, spec: RunSpec, cfg: StudyConfig, out: Path, progress: bool = True,
              protos=None) -> dict:
    """Train one run's projector (resumes; skipped when finished). Returns the train summary.

    With ``warm_start.kind = "prototypes"`` the projector starts from the classifier init onto
    ``protos`` (the LM's concept prototypes; learned here if not given), with the labels of the
    concept each training image's questions are about in this run's world."""
    run_dir = out / "runs" / spec.run_id
    mapping, removed = run_conditions(data, spec)
    write_json(run_dir / "conditions.json", {"spec": asdict(spec), "mapping": mapping,
                                             "removed": {h: sorted(v) for h, v in removed.items()}})
    train_imgs = [(i, data.records[i].concept) for i in data.splits["train"]]

    def epoch_examples(epoch: int) -> list[Example]:
        return examples_for_images(train_imgs, data.taxonomy, mapping, removed, train=True, seed=spec.seed,
                                   epoch=epoch if cfg.train.fresh_negatives else 0)

    train_ex = epoch_examples(0)
    meta = {"spec": asdict(spec), "study": cfg.name, "config_hash": cfg.hash, "data_manifest": data.manifest_hash,
            "n_train_examples": len(train_ex)}
    finished = (run_dir / "projector.safetensors").exists() and (run_dir / "train.json").exists()
    monitor = heldout_monitor(vlm, data, mapping, cfg, spec.seed) if cfg.train.eval_every else None
    if cfg.warm_start.kind == "prototypes" and not finished and not (run_dir / "checkpoint.pt").exists():
        protos = protos if protos is not None else study_prototypes(vlm.lm, data, cfg, progress)
        rows = torch.tensor(data.splits["train"])
        labels = protos.index([mapping[data.records[i].concept] for i in data.splits["train"]])
        t0 = time.perf_counter()
        meta["warm_start"] = prototype_init(vlm.projector, data.features[rows], labels, protos.u.to(vlm.lm.device),
                                            protos.D.to(vlm.lm.device), vlm.lm.embed_scale, cfg.warm_start)
        meta["warm_start"]["seconds"] = time.perf_counter() - t0
        meta["prototypes"] = protos.metrics
        if cfg.warm_start.mixture_epochs > 0:
            t0 = time.perf_counter()
            meta["readout"] = refine_readout(vlm, data.features, rows, labels, protos.D.shape[0], epoch_examples,
                                             cfg.warm_start, replace(cfg.train, seed=spec.seed),
                                             run_dir / "readout", progress=progress, monitor=monitor)
            meta["readout"]["seconds"] = time.perf_counter() - t0
    tcfg = replace(cfg.train, seed=spec.seed)
    last = (meta.get("readout") or {}).get("diagnostics") or [None]  # the projector as the fine-tuning gets it
    return train_projector(vlm, data.features, epoch_examples, tcfg, run_dir, progress=progress, meta=meta,
                           monitor=monitor, measured=last[-1],
                           calibrate=calibration_questions(train_imgs, data, mapping, cfg, spec.seed))


def calibration_questions(train_imgs: list[tuple[int, str]], data: StudyData, mapping: dict[str, str],
                          cfg: StudyConfig, seed: int) -> list[Example]:
    """The leaf questions (own leaf Yes, a distractor leaf No) of ``cfg.train.calibrate_images``
    training images drawn with the run's seed, in the run's world: what the answer calibration
    balances (:mod:`interp.calibration`). Never a hypernym question."""
    n = cfg.train.calibrate_images
    if not n:
        return []
    pick = random.Random(f"calibrate-{seed}").sample(train_imgs, min(n, len(train_imgs)))
    return [e for e in examples_for_images(sorted(pick), data.taxonomy, mapping, {}, train=True, seed=seed)
            if e.kind == "leaf"]


def evaluate_run(vlm, data: StudyData, spec: RunSpec, cfg: StudyConfig, out: Path, progress: bool = True,
                 train_summary: dict | None = None) -> list[dict]:
    """Score a trained run's test questions; write ``scores.csv`` and ``rows.json``; return the rows."""
    run_dir = out / "runs" / spec.run_id
    mapping, removed = run_conditions(data, spec)
    test = [(i, data.records[i].concept) for i in data.splits["test"]]
    examples = examples_for_images(test, data.taxonomy, mapping, removed, train=False, seed=spec.seed)
    scores = score_examples(vlm, data.features, examples, batch_size=cfg.eval.batch_size, progress=progress,
                            desc=f"eval {spec.run_id}")
    rows = per_hypernym_rows(examples, scores, spec, world_coherence(data, mapping))
    write_csv(run_dir / "scores.csv", [{**ex.to_row(), "score": sc} for ex, sc in zip(examples, scores.tolist())])
    write_json(run_dir / "rows.json", {"rows": rows, "n_test_examples": len(examples), "config": cfg.to_dict(),
                                       "train": {k: v for k, v in (train_summary or {}).items() if k != "losses"},
                                       "data_manifest": data.manifest_hash, "environment": environment()})
    return rows


def run_one(vlm, data: StudyData, spec: RunSpec, cfg: StudyConfig, out: Path, progress: bool = True,
            protos=None) -> list[dict]:
    """Train and evaluate one run (skipped when its result file exists)."""
    result_path = out / "runs" / spec.run_id / "rows.json"
    if result_path.exists():
        return read_json(result_path)["rows"]
    with run_lock(out / "runs" / spec.run_id):
        summary = train_run(vlm, data, spec, cfg, out, progress, protos)
        return evaluate_run(vlm, data, spec, cfg, out, progress, summary)


def load_study_lm(cfg: StudyConfig, random_init: bool, seed: int):
    return HookedLM(load_lm(cfg.model.lm, device=cfg.model.device, dtype=DTYPES[cfg.model.dtype],
                            random_init=random_init, seed=seed))


def new_study_vlm(lm, encoder, cfg: StudyConfig, seed: int):
    proj = HookedVLM.new_projector(lm, encoder.name, encoder.d_model, encoder.n_tokens, kind=cfg.model.projector,
                                   pool_to=cfg.model.pool_to, seed=seed, pool=cfg.model.pool)
    return HookedVLM(lm, proj)


def single_run(cfg: StudyConfig, spec: RunSpec, *, evaluate: bool = True, progress: bool = True) -> list[dict]:
    """Train (and evaluate) one run of a study config: what `python -m interp.train` does."""
    out = Path(cfg.out_dir)
    encoder = load_encoder(cfg.model.encoder, device=cfg.model.device)
    data = load_data(cfg, encoder, progress=progress)
    vlm = new_study_vlm(load_study_lm(cfg, spec.random_init, spec.seed), encoder, cfg, spec.seed)
    if not evaluate:
        with run_lock(out / "runs" / spec.run_id):
            train_run(vlm, data, spec, cfg, out, progress)
        return []
    return run_one(vlm, data, spec, cfg, out, progress)


def evaluate_run_dir(cfg: StudyConfig, run_id: str, progress: bool = True) -> list[dict]:
    """Re-score a trained run from its checkpoint: what `python -m interp.evaluate` does."""

    run_dir = Path(cfg.out_dir) / "runs" / run_id
    cond = run_dir / "conditions.json"
    if not (run_dir / "projector.safetensors").exists() or not cond.exists():
        avail = sorted(p.name for p in (Path(cfg.out_dir) / "runs").glob("*")) if (Path(cfg.out_dir) / "runs").exists() else []
        raise FileNotFoundError(f"no trained run {run_id!r} in {cfg.out_dir}/runs; trained runs: {avail}")
    spec = RunSpec(**read_json(cond)["spec"])
    with run_lock(run_dir):
        encoder = load_encoder(cfg.model.encoder, device=cfg.model.device)
        data = load_data(cfg, encoder, progress=progress)
        lm = load_study_lm(cfg, spec.random_init, spec.seed)
        proj, _ = Projector.load(run_dir / "projector.safetensors", lm=lm.name, encoder=encoder.name)
        return evaluate_run(HookedVLM(lm, proj.to(lm.device)), data, spec, cfg, Path(cfg.out_dir), progress,
                            read_json(run_dir / "train.json"))


# --------------------------------------------------------------- LM-only test
def lm_only_test(lm, taxonomy, batch_size: int = 64, progress: bool = False) -> dict[str, Any]:
    """Yes/no text test on every (leaf, hypernym) pair (macro F1 over hypernyms, majority
    baseline) and two bias-free variants: pairwise (true vs distractor by Yes-No margin)
    and cloze ("A robin is a kind of" + hypernym vs distractor)."""
    items = text_test_items(taxonomy)
    ph = taxonomy.phrase
    qs = [truth_question(ph(it["leaf"]), ph(it["hypernym"])) for it in items]
    qd = [truth_question(ph(it["leaf"]), ph(it["distractor"])) for it in items]
    m = text_yes_no(lm, qs + qd, batch_size=batch_size, progress=progress)
    pos, neg = m[: len(items)], m[len(items):]
    by_h: dict[str, tuple[list[str], list[str]]] = {}
    for it, a, b in zip(items, pos.tolist(), neg.tolist()):
        t, p = by_h.setdefault(it["hypernym"], ([], []))
        t += ["Yes", "No"]
        p += ["Yes" if a > 0 else "No", "Yes" if b > 0 else "No"]
    f1s = [macro_f1(t, p) for t, p in by_h.values()]
    majority = [macro_f1(t, ["Yes"] * len(t)) for t, _ in by_h.values()]
    prompts = [cloze_prompt(ph(it["leaf"])) for it in items]
    lp_true = continuation_logprob(lm, prompts, [" " + it["hypernym"] for it in items], progress=progress)
    lp_dist = continuation_logprob(lm, prompts, [" " + it["distractor"] for it in items], progress=progress)
    return {"lm": lm.name, "n_pairs": len(items), "n_hypernyms": len(by_h),
            "macro_f1": float(np.mean(f1s)), "majority_f1": float(np.mean(majority)),
            "yes_rate": float(((pos > 0).float().mean() + (neg > 0).float().mean()) / 2),
            "pairwise_acc": 100.0 * float((pos > neg).float().mean()),
            "cloze_acc": 100.0 * float((lp_true > lp_dist).float().mean())}


# ------------------------------------------------------------------ ceilings
def vision_ceiling(data: StudyData, seed: int = 0, pool: str = "mean", l2: float = 1e-3,
                   precision: str = "float32") -> dict[str, float]:
    """What the frozen encoder's features allow on the leaf task, without any LM: a multinomial
    logistic regression (L2 penalty ``l2``) of the pooled (``pool``: "mean" or "max" over the
    patch tokens, as the projector pools) train features on the leaf concept, scored on test
    images (top-1 accuracy) and on the study's leaf yes/no questions (one true leaf, one random
    distractor per image; "Yes" when log p(leaf) is above a threshold chosen on the val split)."""
    leaves = sorted(data.taxonomy.leaves)
    cid = {c: i for i, c in enumerate(leaves)}

    def xy(split):
        rows = data.splits[split]
        x = pool_tokens(data.features[torch.tensor(rows)].float(), 1, pool)[:, 0]  # as the projector pools
        return x, torch.tensor([cid[data.records[i].concept] for i in rows])

    (xtr, ytr), (xva, yva), (xte, yte) = xy("train"), xy("val"), xy("test")
    W, b = fit_classifier(xtr, ytr, len(leaves), l2=l2, precision=precision)
    g = torch.Generator().manual_seed(seed)

    def yes_no(x, y):
        lp = torch.log_softmax(x @ W.T + b, -1)
        d = (y + 1 + torch.randint(len(leaves) - 1, y.shape, generator=g)) % len(leaves)
        ar = torch.arange(len(y))
        return torch.cat([lp[ar, y], lp[ar, d]]), ["Yes"] * len(y) + ["No"] * len(y)

    sv, tv = yes_no(xva, yva)
    cands = torch.quantile(sv, torch.linspace(0.05, 0.95, 91)).tolist()
    thr = max(cands, key=lambda t: macro_f1(tv, ["Yes" if v > t else "No" for v in sv.tolist()]))
    out = {}
    for split, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        sc, truth = yes_no(x, y)
        out[f"{split}_top1"] = 100.0 * float(((x @ W.T + b).argmax(1) == y).float().mean())
        out[f"{split}_leaf_f1"] = macro_f1(truth, ["Yes" if v > thr else "No" for v in sc.tolist()])
        n = len(y)
        out[f"{split}_leaf_pairwise"] = 100.0 * float((sc[:n] > sc[n:]).float().mean())
    return out


# ------------------------------------------------------------------- driver
def run_study(cfg: StudyConfig, *, progress: bool = True, source: str = "CONFIG",
              strict_images: bool = False) -> dict[str, Any]:

    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {"config": cfg.to_dict(), "hash": cfg.hash, "environment": environment(),
                                     "source": source})
    encoder = load_encoder(cfg.model.encoder, device=cfg.model.device)
    data = load_data(cfg, encoder, progress=progress, strict_images=strict_images)
    write_csv(out / "images.csv", image_rows(data.records, data.splits), IMAGE_COLUMNS)  # for the page's gallery
    print(f"[study] {len(data.taxonomy.leaves)} concepts, {len(data.taxonomy.hypernyms)} hypernyms, "
          f"{len(data.taxonomy.pairs)} pairs; images train/val/test = "
          f"{len(data.splits['train'])}/{len(data.splits['val'])}/{len(data.splits['test'])}")
    rows: list[dict] = []
    lm_only: list[dict] = []
    runs = grid_runs(cfg)
    by_lm: dict[tuple[bool, int], list[RunSpec]] = {}
    for spec in runs:  # one LM load per (pretrained | random seed)
        by_lm.setdefault((spec.random_init, spec.seed if spec.random_init else 0), []).append(spec)
    for (rnd, seed), specs in by_lm.items():
        lm = load_study_lm(cfg, rnd, seed)
        if cfg.eval.lm_only:
            lm_only.append({**lm_only_test(lm, data.taxonomy, cfg.eval.batch_size, progress), "taxonomy": cfg.data.taxonomy})
            if cfg.eval.lm_only_things and cfg.data.taxonomy != "things" and not rnd:  # the control: embedded only

                if THINGS_TSV.exists():
                    lm_only.append({**lm_only_test(lm, load_things_taxonomy(THINGS_TSV), cfg.eval.batch_size,
                                                 progress),
                                    "taxonomy": "things"})
        pending = [s for s in specs if not (out / "runs" / s.run_id / "rows.json").exists()]
        protos = study_prototypes(lm, data, cfg, progress) if pending else None
        for spec in specs:
            rows += run_one(new_study_vlm(lm, encoder, cfg, spec.seed), data, spec, cfg, out, progress, protos)
        del lm
    ceiling = vision_ceiling(data, cfg.data.seed, cfg.model.pool, cfg.warm_start.l2, cfg.warm_start.precision)
    result = write_outputs(cfg, rows, lm_only, out, source, vision=ceiling)
    result["seconds"] = time.perf_counter() - t0
    write_json(out / "summary.json", result)
    result["page"] = str(write_report_page(out, progress=progress))
    return result
