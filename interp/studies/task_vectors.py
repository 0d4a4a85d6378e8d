"""Cross-modal task vectors and function vectors (brief, section B), end to end.

``run_study(config)``: load the VLM from a trained projector checkpoint, cache the image
features once, then per task (resumable: a finished task is skipped):

1. task vectors from four sources - text examples, an instruction, image examples, and the
   average of instruction and text-example vectors - plus text examples in the VLM's own
   format (an image first: "LM-only vs VLM" prompts), each the mean last-delimiter residual
   of ``n_prompts`` prompts at every layer;
2. a validation sweep: every vector patched at every layer into zero-shot text and image
   queries; the layer of each (source, target) is chosen on validation;
3. the test split at the chosen layers, next to the baselines: no context, prompting (the
   examples in the same prompt), a random vector of the same norm;
4. function vectors (Todd et al.): mean head outputs on text ICL prompts, heads ranked by
   average indirect effect on label-shuffled prompts, the top-k sum added at L/3 and at the
   layer chosen on validation;
5. accuracy against the number of examples (several seeds) at the chosen layers;
6. cosines between the vectors of every pair of sources at every layer.

Outputs in ``config.out_dir``: ``tasks/<task>.json`` (+ ``.safetensors`` vectors), tidy
tables ``results.csv`` (test), ``sweep.csv``, ``curve.csv``, ``cosine.csv``, ``heads.csv``,
``report.md`` (the brief's table: rows no context / prompting / patch from each source,
columns tasks x query modality), ``summary.json`` and figures (HTML + PNG).
Exact match = the argmax over the whole vocabulary at the last position is the first token
of an accepted answer (the brief's metric); ``set`` = argmax over the task's answers only.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from interp.analysis import function_vectors as fvs
from interp.analysis import task_vectors as tvs
from interp.configfile import Hashed, load_sectioned
from interp.io import (environment, load_tensors, read_csv, read_json, save_tensors, stable_hash, write_csv, write_json,
                       write_text)

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


# -------------------------------------------------------------------- data
@dataclass
class Context:
    """The VLM and the image rows of every concept: ``example_row`` (a val-family rendering,
    used in image demonstrations) and ``query_row`` (the test-family rendering, used in image
    queries); ``features [n_rows, tokens, d_img]``."""

    vlm: Any
    features: torch.Tensor | None
    example_row: dict[str, int]
    query_row: dict[str, int]
    layers: list[int]


def resolve_projector(m: ModelConfig) -> dict[str, Any]:
    """Which projector the study will use, without loading the model:
    ``{"kind": "trained" | "partial" | "fresh", "path", "step", "description"}``."""
    ckpt = Path(m.checkpoint) if m.checkpoint else None
    if ckpt is not None and ckpt.exists():
        return {"kind": "trained", "path": str(ckpt), "step": None, "description": f"trained projector `{ckpt}`"}
    state = (ckpt.parent / "checkpoint.pt") if ckpt is not None else None
    if m.fallback == "partial" and state is not None and state.exists():
        step = int(torch.load(state, weights_only=True, map_location="cpu")["step"])
        return {"kind": "partial", "path": str(state), "step": step,
                "description": f"UNFINISHED training state `{state}` (step {step}; `{ckpt.name}` did not exist yet)"}
    if m.fallback == "fresh" or (m.fallback == "partial" and not m.checkpoint):
        return {"kind": "fresh", "path": None, "step": 0,
                "description": f"FRESH untrained projector (seed 0) for {m.lm} + {m.encoder}: image-query results mean little"}
    raise FileNotFoundError(f"no projector checkpoint at {ckpt}: train one with `python -m interp.run "
                            f"experiments/quick.toml`, set model.checkpoint, or set model.fallback to "
                            f"'partial' (an unfinished checkpoint.pt) or 'fresh' (an untrained projector)")


def load_study_vlm(m: ModelConfig, info: dict[str, Any] | None = None):
    """The HookedVLM of :func:`resolve_projector`'s choice, in ``m.dtype`` on ``m.device``."""
    from interp.models.encoders import load_encoder
    from interp.models.hooked import HookedLM
    from interp.models.lm import load_lm
    from interp.vlm import HookedVLM, load_vlm

    info = info or resolve_projector(m)
    if info["kind"] == "trained":
        vlm = load_vlm(info["path"], device=m.device)
    else:
        lm = HookedLM(load_lm(m.lm, device=m.device))
        enc = load_encoder(m.encoder, device=m.device)
        proj = HookedVLM.new_projector(lm, enc.name, enc.d_model, enc.n_tokens, kind=m.projector,
                                       pool_to=m.pool_to or None, seed=0)
        if info["kind"] == "partial":
            proj.load_state_dict(torch.load(info["path"], weights_only=True, map_location="cpu")["projector"])
        vlm = HookedVLM(lm, proj.to(m.device), enc)
    if m.dtype != "float32":
        vlm = vlm.to(DTYPES[m.dtype])
    return vlm.eval()


def load_context(cfg: TaskVectorConfig, tasks: Sequence, progress: bool = True) -> Context:
    from interp.studies.config import DataConfig as StudyData, StudyConfig
    from interp.studies.taxonomy import load_data

    vlm = load_study_vlm(cfg.model)
    layers = list(cfg.method.layers) or list(range(vlm.lm.n_layers))
    for l in layers:
        vlm.lm.check_layer(int(l))
    concepts = sorted({it.concept for t in tasks if t.image for it in t.items})
    if not concepts:
        return Context(vlm, None, {}, {}, layers)
    data = load_data(StudyConfig(data=StudyData(seed=cfg.data.image_seed)), vlm.encoder, progress=progress)
    first: dict[tuple[str, str], int] = {}
    for split in ("val", "test", "train"):
        for i in data.splits[split]:
            first.setdefault((data.records[i].concept, split), i)
    rows, ex, q = [], {}, {}
    for c in concepts:
        e = first.get((c, "val"), first.get((c, "train")))
        t = first.get((c, "test"))
        if e is None or t is None:
            raise ValueError(f"concept {c!r} has no val/train or test image in the embedded image set")
        ex[c], q[c] = len(rows), len(rows) + 1
        rows += [e, t]
    feats = data.features[torch.tensor(rows)].clone()
    del data
    return Context(vlm, feats, ex, q, layers)


# ----------------------------------------------------------------- prompts
def _x(item, modality: str, ctx: Context, role: str):
    if modality == "text":
        return item.input
    return (ctx.example_row if role == "example" else ctx.query_row)[item.concept]


def draw_specs(train: list, k: int, n: int, seed: Any) -> list[tuple[list, Any]]:
    """``n`` (demonstrations, dummy query) draws of ``k`` demonstrations from ``train``."""
    if k > len(train) - 1:
        raise ValueError(f"{k} examples need at least {k + 1} training items; the task has {len(train)}")
    rng = random.Random(stable_hash(["specs", seed]))
    out = []
    for _ in range(n):
        pick = rng.sample(range(len(train)), k + 1)
        out.append(([train[i] for i in pick[:k]], train[pick[k]]))
    return out


def spec_prompt(source: str, demos: list, dummy, task, ctx: Context, prefix_row: int | None = None):
    if source == "text_examples":
        return tvs.icl_prompt([(d.input, d.answer) for d in demos], dummy.input)
    if source == "image_examples":
        return tvs.icl_prompt([(ctx.example_row[d.concept], d.answer) for d in demos], ctx.example_row[dummy.concept])
    if source == "instruction":
        return tvs.icl_prompt([], dummy.input, instruction=task.instruction)
    if source == "text_examples_vlm":
        return tvs.icl_prompt([(d.input, d.answer) for d in demos], dummy.input, prefix_image=prefix_row)
    raise ValueError(f"no prompt for source {source!r}")


def source_vectors(task, train: list, sources: Sequence[str], k: int, n_prompts: int, seed: Any, ctx: Context,
                   batch_size: int) -> dict[str, torch.Tensor]:
    """Task vectors ``[n_layers, d_model]`` per source (same demonstration draws for every source)."""
    specs = draw_specs(train, k, n_prompts, seed)
    rng = random.Random(stable_hash(["prefix", seed]))
    prefix = [rng.choice(sorted(ctx.query_row.values())) if ctx.query_row else None for _ in specs]
    out = {}
    base = [s for s in sources if s != "instruction+examples"]
    if "instruction+examples" in sources:
        base += [s for s in ("instruction", "text_examples") if s not in base]
    for s in base:
        if s == "text_examples_vlm" and ctx.features is None:
            continue
        prompts = [spec_prompt(s, d, q, task, ctx, p) for (d, q), p in zip(specs, prefix)]
        out[s] = tvs.task_vector(ctx.vlm, prompts, ctx.features, layers=ctx.layers, batch_size=batch_size)
    if "instruction+examples" in sources:
        out["instruction+examples"] = (out["instruction"] + out["text_examples"]) / 2
    return {s: out[s] for s in sources if s in out}


def query_prompts(items: list, target: str, ctx: Context) -> list:
    return [tvs.icl_prompt([], _x(it, target, ctx, "query")) for it in items]


def prompting_prompts(items: list, train: list, demo_modality: str, target: str, k: int, seed: Any, ctx: Context) -> list:
    """Few-shot prompts: ``k`` demonstrations (words or images) then the query, fresh draws per query."""
    rng = random.Random(stable_hash(["prompting", seed]))
    out = []
    for it in items:
        pool = [t for t in train if t.input != it.input]
        demos = rng.sample(pool, min(k, len(pool)))
        out.append(tvs.icl_prompt([(_x(d, demo_modality, ctx, "example"), d.answer) for d in demos],
                                  _x(it, target, ctx, "query")))
    return out


def shuffled_prompts(train: list, k: int, n: int, seed: Any) -> tuple[list, list]:
    """Text ICL prompts with the demonstrations' answers shuffled (for the indirect effect)
    and the canonical answer of each query."""
    specs = draw_specs(train, k, n, ["shuffled", seed])
    rng = random.Random(stable_hash(["shuffle", seed]))
    prompts, answers = [], []
    for demos, query in specs:
        labels = [d.answer for d in demos]
        rng.shuffle(labels)
        prompts.append(tvs.icl_prompt([(d.input, y) for d, y in zip(demos, labels)], query.input))
        answers.append(query.answer)
    return prompts, answers


# ----------------------------------------------------------------- scoring
@dataclass
class Scorer:
    vlm: Any
    accepted: list[list[int]]
    candidates: list[int]

    @classmethod
    def for_items(cls, vlm, task, items: list) -> "Scorer":
        tok = vlm.tokenizer
        return cls(vlm, [tvs.answer_token_ids(tok, it.answers) for it in items], tvs.answer_token_ids(tok, task.answer_set()))

    def __call__(self, resid: torch.Tensor) -> dict[str, torch.Tensor]:
        return tvs.score(self.vlm, resid, self.accepted, self.candidates)


def choose_layer(em: np.ndarray, st: np.ndarray, layers: Sequence[int]) -> int:
    """Best layer by exact match on validation; ties by set accuracy, then the earlier layer."""
    best = max(range(len(layers)), key=lambda i: (round(float(em[i]), 9), round(float(st[i]), 9), -i))
    return int(layers[best])


def _row(kind: str, task: str, target: str, method: str, layer, sc: dict[str, torch.Tensor], **extra) -> dict:
    em = sc["em"].float()
    return {"kind": kind, "task": task, "target": target, "method": method, "layer": layer,
            "em": float(em.mean()), "set": float(sc["set"].float().mean()), "n": int(em.numel()), **extra}


# -------------------------------------------------------------------- task
def run_task(task, cfg: TaskVectorConfig, ctx: Context, progress: bool = True) -> dict[str, Any]:
    """All measurements of one task (see module doc): tidy rows, chosen layers, vectors."""
    m, vlm = cfg.method, ctx.vlm
    t0 = time.perf_counter()
    train = task.split("train")
    val = task.split("val")[: cfg.data.max_val or None]
    test = task.split("test")[: cfg.data.max_test or None]
    if not val or not test:
        raise ValueError(f"task {task.name!r} has no val or test items")
    targets = [t for t in m.targets if t == "text" or task.image]
    sources = [s for s in m.sources if task.image or (s not in IMAGE_SOURCES and s != "text_examples_vlm")]
    k = min(m.n_examples, len(train) - 1)
    seed = [task.name, m.seed]
    vectors = source_vectors(task, train, sources, k, m.n_prompts, seed, ctx, m.batch_size)
    sources = list(vectors)
    layers = ctx.layers
    rows: list[dict] = []
    chosen: dict[str, int] = {}
    L = vlm.lm.n_layers
    stack = torch.stack([vectors[s] for s in sources], 1)  # [n_layers, n_sources, d]
    scorers = {"val": Scorer.for_items(vlm, task, val), "test": Scorer.for_items(vlm, task, test)}
    splits = {"val": val, "test": test}

    # 1. sweep on validation (and test if asked): every source, every layer
    for target in targets:
        for split in ("val", "test") if m.test_all_layers else ("val",):
            patched, clean = tvs.patch_sweep(vlm, query_prompts(splits[split], target, ctx), ctx.features, stack,
                                             layers, batch_size=m.batch_size)
            sc = scorers[split](patched)
            for si, s in enumerate(sources):
                for li, l in enumerate(layers):
                    rows.append(_row("sweep", task.name, target, s, l, {k2: v[li, si] for k2, v in sc.items()},
                                     split=split))
                if split == "val":
                    em = sc["em"][:, si].float().mean(-1).numpy()
                    st = sc["set"][:, si].float().mean(-1).numpy()
                    chosen[f"{s}|{target}"] = choose_layer(em, st, layers)
            rows.append(_row("sweep", task.name, target, "no_context", None, scorers[split](clean), split=split))
        if progress:
            print(f"  [{task.name}] {target}: val sweep done ({time.perf_counter() - t0:.0f} s)")

    # 2. test at the chosen layers, and the baselines
    rand = tvs.random_like(vectors["text_examples"], seed=m.seed) if "text_examples" in vectors else None
    for target in targets:
        q = query_prompts(test, target, ctx)
        for s in sources + (["random"] if rand is not None else []):
            src = "text_examples" if s == "random" else s
            layer = chosen[f"{src}|{target}"]
            vec = (rand if s == "random" else vectors[s])[layers.index(layer)]
            patched, clean = tvs.patch_sweep(vlm, q, ctx.features, vec[None], [layer], batch_size=m.batch_size)
            rows.append(_row("test", task.name, target, s, layer, {k2: v[0, 0] for k2, v in scorers["test"](patched).items()}))
        rows.append(_row("test", task.name, target, "no_context", None, scorers["test"](clean)))
        for demo in ("text", "image") if task.image else ("text",):
            pp = prompting_prompts(test, train, demo, target, k, seed, ctx)
            rows.append(_row("test", task.name, target, f"prompting_{demo}", None,
                             scorers["test"](tvs.run_last(vlm, pp, ctx.features, batch_size=max(1, m.batch_size // 4))),
                             n_examples=k))
    if progress:
        print(f"  [{task.name}] test done ({time.perf_counter() - t0:.0f} s)")

    # 3. function vector
    fv_info: dict[str, Any] = {}
    if cfg.fv.enabled:
        f = cfg.fv
        k_fv = min(f.n_examples, len(train) - 1)
        icl = [tvs.icl_prompt([(d.input, d.answer) for d in demos], qy.input)
               for demos, qy in draw_specs(train, k_fv, f.n_prompts, ["fv", seed])]
        mean_z, mean_out = fvs.mean_head_outputs(vlm, icl, None, batch_size=max(1, m.batch_size // 4))
        sh, answers = shuffled_prompts(train, k_fv, f.n_shuffled, ["fv", seed])
        ans_ids = [tvs.answer_token_ids(vlm.tokenizer, [a])[0] for a in answers]
        aie, base = fvs.head_indirect_effects(vlm, sh, None, ans_ids, mean_z, batch_size=m.batch_size)
        n_heads = aie.shape[1]
        heads = fvs.top_heads(aie, min(f.top_k, aie.numel()))
        fv = fvs.function_vector(mean_out, heads)
        vectors["function_vector"] = fv
        for li in range(L):
            for h in range(n_heads):
                rows.append({"kind": "heads", "task": task.name, "layer": li, "head": h, "aie": float(aie[li, h]),
                             "top": (li, h) in heads})
        third = fvs.default_layer(L)
        for target in targets:
            patched, _ = tvs.patch_sweep(vlm, query_prompts(val, target, ctx), ctx.features,
                                         fv[None].expand(len(layers), -1), layers, mode="add", batch_size=m.batch_size)
            sc = scorers["val"](patched)
            for li, l in enumerate(layers):
                rows.append(_row("sweep", task.name, target, "function_vector", l, {k2: v[li, 0] for k2, v in sc.items()},
                                 split="val"))
            em, st = sc["em"][:, 0].float().mean(-1).numpy(), sc["set"][:, 0].float().mean(-1).numpy()
            chosen[f"function_vector|{target}"] = layer = choose_layer(em, st, layers)
            q = query_prompts(test, target, ctx)
            for name, lay in (("fv_third", third), ("fv_val", layer)):
                patched, _ = tvs.patch_sweep(vlm, q, ctx.features, fv[None], [lay], mode="add", batch_size=m.batch_size)
                rows.append(_row("test", task.name, target, name, lay, {k2: v[0, 0] for k2, v in scorers["test"](patched).items()}))
        fv_info = {"heads": heads, "k": k_fv, "corrupted_p": float(base.mean()), "norm": float(fv.norm())}
        if progress:
            print(f"  [{task.name}] function vector done ({time.perf_counter() - t0:.0f} s)")

    # 4. accuracy against the number of examples
    c = cfg.curve
    if c.enabled:
        ctest = test[: c.max_test or None]
        csc = Scorer.for_items(vlm, task, ctest)
        csources = [s for s in c.sources if s in sources]
        for kk in c.n_examples:
            if kk > len(train) - 1:
                continue
            for sd in c.seeds:
                vec = source_vectors(task, train, csources, kk, m.n_prompts, [task.name, "curve", sd], ctx, m.batch_size)
                for target in targets:
                    q = query_prompts(ctest, target, ctx)
                    for s in csources:
                        layer = chosen[f"{s}|{target}"]
                        patched, _ = tvs.patch_sweep(vlm, q, ctx.features, vec[s][layers.index(layer)][None], [layer],
                                                     batch_size=m.batch_size)
                        rows.append(_row("curve", task.name, target, s, layer,
                                         {k2: v[0, 0] for k2, v in csc(patched).items()}, n_examples=kk, seed=sd))
                    pp = prompting_prompts(ctest, train, "text", target, kk, [task.name, "curve", sd], ctx)
                    rows.append(_row("curve", task.name, target, "prompting_text", None,
                                     csc(tvs.run_last(vlm, pp, ctx.features, batch_size=max(1, m.batch_size // 4))),
                                     n_examples=kk, seed=sd))
        if progress:
            print(f"  [{task.name}] examples curve done ({time.perf_counter() - t0:.0f} s)")

    # 5. cosines between sources, per layer
    names = [s for s in sources]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            cos = tvs.cosine(vectors[a], vectors[b])
            for li, l in enumerate(layers):
                rows.append({"kind": "cosine", "task": task.name, "a": a, "b": b, "layer": l, "cos": float(cos[li])})
    return {"task": task.name, "rows": rows, "chosen": chosen, "vectors": vectors, "fv": fv_info,
            "n": {"train": len(train), "val": len(val), "test": len(test)}, "n_examples": k,
            "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------- driver
def run_one_task(task, cfg: TaskVectorConfig, ctx_fn, out: Path, progress: bool = True,
                 projector: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or load, when finished with the same settings and projector) one task's results."""
    path = out / "tasks" / f"{task.name}.json"
    projector = projector or resolve_projector(cfg.model)
    want = stable_hash([cfg.task_hash(task.name), projector])
    if path.exists():
        done = read_json(path)
        if done.get("task_hash") == want:
            if progress:
                print(f"[task vectors] {task.name}: finished earlier, skipped")
            return done
    ctx = ctx_fn()
    if progress:
        print(f"[task vectors] {task.name}: {task.description}; items {task.counts()}")
    res = run_task(task, cfg, ctx, progress)
    vectors = res.pop("vectors")
    save_tensors(out / "tasks" / f"{task.name}.safetensors", {k: v.contiguous() for k, v in vectors.items()},
                 {"task": task.name, "layers": ctx.layers, "task_hash": want})
    res.update({"task_hash": want, "config": cfg.to_dict(), "environment": environment(),
                "checkpoint": str(cfg.model.checkpoint), "projector": projector, "lm": ctx.vlm.lm.name})
    write_json(path, res)
    return read_json(path)


def run_study(cfg: TaskVectorConfig, *, progress: bool = True, source: str = "CONFIG",
              figures: str = "png") -> dict[str, Any]:
    """Run every task (finished ones are loaded), then write tables, report and figures.

    ``figures``: ``"png"`` (HTML and PNG), ``"html"`` (HTML only, no browser needed) or ``"none"``.
    """
    from interp.data.tasks import load_task

    if figures not in FIGURE_MODES:
        raise ValueError(f"figures={figures!r}: valid are {list(FIGURE_MODES)}")

    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    projector = resolve_projector(cfg.model)
    if progress:
        print(f"[task vectors] projector: {projector['description']}")
    write_json(out / "config.json", {"config": cfg.to_dict(), "hash": cfg.hash, "projector": projector,
                                     "environment": environment()})
    tasks = [load_task(t, cfg.data.task_dir or None) for t in cfg.data.tasks]
    holder: dict[str, Context] = {}

    def ctx_fn() -> Context:  # load the model only if some task has to run
        if "ctx" not in holder:
            holder["ctx"] = load_context(cfg, tasks, progress)
        return holder["ctx"]

    results = [run_one_task(t, cfg, ctx_fn, out, progress, projector) for t in tasks]
    summary = write_outputs(cfg, results, out, source, figures=figures)
    summary["seconds"] = time.perf_counter() - t0
    write_json(out / "summary.json", summary)
    return summary


# ------------------------------------------------------------- tables, report
TABLE_ROWS = ("constant", "no_context", "prompting_text", "prompting_image", "text_examples", "instruction", "image_examples",
              "instruction+examples", "text_examples_vlm", "random", "fv_third", "fv_val")
CSV_FIELDS = {
    "test": ["task", "target", "method", "layer", "em", "set", "n", "n_examples", "answer"],
    "sweep": ["task", "target", "method", "layer", "split", "em", "set", "n"],
    "curve": ["task", "target", "method", "n_examples", "seed", "layer", "em", "set", "n"],
    "cosine": ["task", "a", "b", "layer", "cos"],
    "heads": ["task", "layer", "head", "aie", "top"],
}
CSV_FILES = {"test": "results.csv", "sweep": "sweep.csv", "curve": "curve.csv", "cosine": "cosine.csv",
             "heads": "heads.csv"}


TABLE_TYPES = {**{k: float for k in ("em", "set", "cos", "aie")},
               **{k: int for k in ("layer", "n", "n_examples", "seed", "head")}, "top": lambda v: v == "True"}


def read_tables(out: Path) -> dict[str, list[dict]]:
    """The tidy tables of a study folder, values parsed."""
    tables = {}
    for kind, name in CSV_FILES.items():
        path = Path(out) / name
        if not path.exists():
            tables[kind] = []
            continue
        tables[kind] = read_csv(path, TABLE_TYPES)
    return tables


def results_table(test_rows: list[dict]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(column names, rows of cells) of the brief's table: methods x (task, query modality)."""
    cols = sorted({(r["task"], r["target"]) for r in test_rows}, key=lambda c: (TARGETS.index(c[1]), c[0]))
    by = {(r["task"], r["target"], r["method"]): r for r in test_rows}
    header = [f"{t} ({tg})" for t, tg in cols] + ["mean text", "mean image"]
    body = []
    for m in TABLE_ROWS:
        if not any(key[2] == m for key in by):
            continue
        cells, means = [], {"text": [], "image": []}
        for t, tg in cols:
            r = by.get((t, tg, m))
            if r is None:
                cells.append("")
                continue
            means[tg].append(r["em"])
            lay = f" (L{r['layer']})" if r.get("layer") not in (None, "") else ""
            cells.append(f"{r['em']:.2f}{lay}")
        cells += [f"{np.mean(v):.2f}" if v else "" for v in (means["text"], means["image"])]
        body.append((LABELS[m], cells))
    return header, body


def table_markdown(test_rows: list[dict]) -> str:
    header, body = results_table(test_rows)
    lines = ["| method | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in body]
    return "\n".join(lines)


def cosine_summary(out: Path, tasks: Sequence[str], layers: Sequence[int]) -> dict[str, Any]:
    """Same-task cross-source cosines against a cross-task control, per layer (means over tasks).

    Raw residual cosines are high everywhere (a shared mean direction), so the control -
    text-example vector of task A vs the vector of task B - says what "high" means here."""
    vec = {}
    for t in tasks:
        path = out / "tasks" / f"{t}.safetensors"
        if path.exists():
            vec[t] = load_tensors(path)[0]
    out_rows = []
    pairs = [("text_examples", "image_examples"), ("text_examples", "instruction"), ("image_examples", "instruction"),
             ("text_examples", "text_examples_vlm")]
    for a, b in pairs:
        same = [tvs.cosine(v[a], v[b]) for v in vec.values() if a in v and b in v]
        cross = [tvs.cosine(vec[t1][a], vec[t2][b]) for t1 in vec for t2 in vec
                 if t1 != t2 and a in vec[t1] and b in vec[t2]]
        if not same:
            continue
        s, c = torch.stack(same).mean(0), torch.stack(cross).mean(0) if cross else None
        for li, l in enumerate(layers[: len(s)]):
            out_rows.append({"a": a, "b": b, "layer": l, "same_task": float(s[li]),
                             "other_task": float(c[li]) if c is not None else float("nan")})
    return {"rows": out_rows}


FIGURE_MODES = ("png", "html", "none")


def constant_rows(cfg: TaskVectorConfig, results: list[dict], rows: list[dict]) -> list[dict]:
    """The chance line of each (task, target): exact match of the best single answer token,
    i.e. the largest share of test items that one first token answers (a vector that makes
    the model say " animal" to everything scores this much). Model-free: tokenizer only."""
    from interp.data.tasks import load_task
    from interp.models.lm import ModelUnavailableError, load_tokenizer

    if not results:
        return []
    lm = str(results[0].get("lm") or cfg.model.lm).split("+random")[0]
    try:
        tok = load_tokenizer(lm)
    except (KeyError, OSError, ModelUnavailableError):  # not registered / not available here: no chance line, still a report
        return []
    out = []
    for res in results:
        task = load_task(res["task"], cfg.data.task_dir or None)
        test = task.split("test")[: cfg.data.max_test or None]
        accepted = [set(tvs.answer_token_ids(tok, it.answers)) for it in test]
        counts: dict[int, int] = defaultdict(int)
        for a in accepted:
            for t in a:
                counts[t] += 1
        best = max(counts, key=lambda t: (counts[t], -t))
        for target in sorted({r["target"] for r in rows if r["kind"] == "test" and r["task"] == task.name}):
            out.append({"kind": "test", "task": task.name, "target": target, "method": "constant", "layer": None,
                        "em": counts[best] / len(test), "set": counts[best] / len(test), "n": len(test),
                        "answer": tok.decode([best])})
    return out


def write_outputs(cfg: TaskVectorConfig, results: list[dict], out: Path, source: str = "CONFIG",
                  figures: str = "png") -> dict[str, Any]:
    rows = [r for res in results for r in res["rows"]]
    rows += constant_rows(cfg, results, rows)
    for kind, name in CSV_FILES.items():
        write_csv(out / name, [r for r in rows if r["kind"] == kind], CSV_FIELDS[kind])
    tables = read_tables(out)
    layers = sorted({r["layer"] for r in tables["cosine"]}) or list(cfg.method.layers)
    cos = cosine_summary(out, [r["task"] for r in results], layers)
    write_json(out / "cosine_control.json", cos)
    report = report_markdown(cfg, results, tables, cos, source)
    write_text(out / "report.md", report)
    files = write_figures(tables, cos, out / "figures", png=figures == "png") if figures != "none" else []
    return {"table": table_markdown(tables["test"]), "chosen_layers": {r["task"]: r["chosen"] for r in results},
            "figures": [str(f) for f in files], "n_items": {r["task"]: r["n"] for r in results}}


def _mean_em(rows: list[dict], method: str, target: str) -> float:
    v = [r["em"] for r in rows if r["method"] == method and r["target"] == target]
    return float(np.mean(v)) if v else float("nan")


def findings(test_rows: list[dict], cos: dict[str, Any], curve: list[dict] | None = None) -> list[str]:
    """The brief's findings, each checked on the measured means (over tasks with that target)."""
    out = []
    e = lambda m, t: _mean_em(test_rows, m, t)  # noqa: E731

    def yn(ok: bool) -> str:
        return "yes" if ok else "no"

    nc_i, pr_i, tv_i, tv_t = e("no_context", "image"), e("prompting_text", "image"), e("text_examples", "image"), e("text_examples", "text")
    rnd_i, ch_i, ch_t, nc_t = e("random", "image"), e("constant", "image"), e("constant", "text"), e("no_context", "text")
    out.append(f"text task vector on text queries beats no context ({tv_t:.2f} vs {nc_t:.2f}): {yn(tv_t > nc_t)}; "
               f"and the best constant answer ({ch_t:.2f}): {yn(tv_t > ch_t)}; prompting with the same examples "
               f"gets {e('prompting_text', 'text'):.2f}")
    if tv_i == tv_i:
        out.append(f"text task vector on image queries beats no context ({tv_i:.2f} vs {nc_i:.2f}): {yn(tv_i > nc_i)}")
        out.append(f"... and beats text examples in the same prompt ({tv_i:.2f} vs {pr_i:.2f}): {yn(tv_i > pr_i)}")
        out.append(f"... and beats a random vector of the same norm ({tv_i:.2f} vs {rnd_i:.2f}): {yn(tv_i > rnd_i)}")
        out.append(f"... and beats the best constant answer ({tv_i:.2f} vs {ch_i:.2f}): {yn(tv_i > ch_i)}")
        tv_ti = _mean_em([r for r in test_rows if r["task"] in {q["task"] for q in test_rows if q["target"] == "image"}],
                         "text_examples", "text")
        out.append(f"text->text patch above text->image patch, on the same (image) tasks ({tv_ti:.2f} vs {tv_i:.2f}): "
                   f"{yn(tv_ti > tv_i)}")
        im_i = e("image_examples", "image")
        out.append(f"image-example vectors work on image queries (above no context: {im_i:.2f} vs {nc_i:.2f}): "
                   f"{yn(im_i > nc_i)}; above the best constant answer: {yn(im_i > ch_i)}")
        vlm_i = e("text_examples_vlm", "image")
        out.append(f"LM-only (text prompt) vs VLM-format (image first) text vectors on image queries: "
                   f"{tv_i:.2f} vs {vlm_i:.2f}")
    ins = e("instruction", "text")
    out.append(f"instruction vectors work on text queries (above no context: {ins:.2f} vs {nc_t:.2f}): "
               f"{yn(ins > nc_t)}; above the best constant answer: {yn(ins > ch_t)}")
    fv3, fvv = e("fv_third", "text"), e("fv_val", "text")
    if fv3 == fv3:
        out.append(f"function vectors on text queries (added at L/3: {fv3:.2f}, at the val layer: {fvv:.2f}) beat no "
                   f"context ({nc_t:.2f}): {yn(max(fv3, fvv) > nc_t)}")
    if curve:
        ks = sorted({r["n_examples"] for r in curve})
        for tg in TARGETS:
            def m(method: str, k: int) -> float:
                return _mean_em([r for r in curve if r["n_examples"] == k], method, tg)
            a, b = m("instruction+examples", ks[0]), m("text_examples", ks[0])
            if a == a and b == b:
                out.append(f"{tg} queries: averaging instruction and example vectors helps with few examples "
                           f"(k={ks[0]}: {a:.2f} vs examples alone {b:.2f}): {yn(a > b)}; at k={ks[-1]}: "
                           f"{m('instruction+examples', ks[-1]):.2f} vs {m('text_examples', ks[-1]):.2f}")
    pairs = defaultdict(list)
    for r in cos["rows"]:
        pairs[(r["a"], r["b"])].append(r)
    for (a, b), rs in pairs.items():
        best = max(rs, key=lambda r: r["same_task"] - r["other_task"])
        out.append(f"cosine {a} vs {b}: max over layers {max(r['same_task'] for r in rs):.2f}; at layer "
                   f"{best['layer']} (largest gap) same task {best['same_task']:.2f} vs other task "
                   f"{best['other_task']:.2f}")
    return out


def report_markdown(cfg: TaskVectorConfig, results: list[dict], tables: dict[str, list[dict]], cos: dict[str, Any],
                    source: str) -> str:
    lm = results[0].get("lm", "?") if results else "?"
    proj = (results[0].get("projector") or {}).get("description", f"`{cfg.model.checkpoint}`") if results else "?"
    lines = [f"# Task vectors and function vectors: `{cfg.name}`", "",
             f"Config `{source}` (hash {cfg.hash}); LM `{lm}`; projector: {proj}. "
             "Exact match of the first answer token (argmax over the whole vocabulary at the last "
             "position), test split, layer chosen on validation (in parentheses).", "",
             table_markdown(tables["test"]), "",
             "Published (Idefics2-8B, brief section B): no context 0.01, text examples in the prompt (image queries) "
             "0.18, text task vector on image queries 0.51, text-to-text patch 0.65; LLM-to-VLM transfer 0.52; "
             "LLM/VLM vector cosine >= 0.89.", "",
             "## What the brief's findings look like here", ""]
    lines += [f"- {f}" for f in findings(tables["test"], cos, tables["curve"])]
    lines += ["", "## Items per task", "", "| task | train | val | test | examples per prompt | seconds |",
              "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['task']} | {r['n']['train']} | {r['n']['val']} | {r['n']['test']} | {r['n_examples']} | "
                     f"{r.get('seconds', 0):.0f} |")
    fv = [(r["task"], r["fv"]) for r in results if r.get("fv")]
    if fv:
        lines += ["", "## Function vectors: top heads (layer, head) by average indirect effect", ""]
        lines += [f"- {t}: {', '.join(f'L{l}H{h}' for l, h in info['heads'])}" for t, info in fv]
    curve = tables["curve"]
    if curve:
        lines += ["", "## Accuracy against the number of examples (mean over seeds and tasks)", "",
                  "| target | method | " + " | ".join(f"k={k}" for k in sorted({r['n_examples'] for r in curve})) + " |",
                  "|---|---|" + "---|" * len({r['n_examples'] for r in curve})]
        ks = sorted({r["n_examples"] for r in curve})
        for tg in TARGETS:
            for m in ("prompting_text",) + SOURCES:
                cell = [[r["em"] for r in curve if r["target"] == tg and r["method"] == m and r["n_examples"] == k] for k in ks]
                if any(cell):
                    lines.append(f"| {tg} | {LABELS.get(m, m)} | " + " | ".join(f"{np.mean(c):.2f}" if c else "" for c in cell) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- figures
def write_figures(tables: dict[str, list[dict]], cos: dict[str, Any], out: Path, *, png: bool = True) -> list[Path]:
    """Accuracy per layer per source -> target (validation sweep), cosine heatmaps, the
    examples curve. Drawn from the tidy tables only; ``png=False`` writes HTML only."""
    from interp.metrics import mean_ci
    from interp.plots import heatmap, line_with_ci
    from interp.plots import save_figure as _save

    def save_figure(fig, stem, **kw):
        if png:
            return _save(fig, stem, **kw)
        Path(stem).parent.mkdir(parents=True, exist_ok=True)
        fig.update_layout(template="plotly_white", width=kw.get("width", 900), height=kw.get("height", 560))
        fig.write_html(Path(stem).with_suffix(".html"), include_plotlyjs=True)
        return [Path(stem).with_suffix(".html")]

    files: list[Path] = []
    sweep = [r for r in tables["sweep"] if r["split"] == "val" and r["layer"] not in ("", None)]
    for task in sorted({r["task"] for r in sweep}):
        series = {}
        for tg in TARGETS:
            for m in SOURCES + ("function_vector",):
                rs = sorted((r for r in sweep if r["task"] == task and r["target"] == tg and r["method"] == m),
                            key=lambda r: r["layer"])
                if rs:
                    series[f"{LABELS.get(m, m).replace('patch: ', '')} -> {tg}"] = (
                        [r["layer"] for r in rs], [r["em"] for r in rs], [float("nan")] * len(rs))
        nc = {f"no context ({r['target']})": r["em"] for r in tables["sweep"]
              if r["task"] == task and r["method"] == "no_context" and r["split"] == "val"}
        fig = line_with_ci(series, title=f"{task}: validation exact match per patched layer", xlabel="layer",
                           ylabel="exact match", hlines=nc)
        files += save_figure(fig, out / f"layers_{task}")
    cosr = tables["cosine"]
    if cosr:
        layers = sorted({r["layer"] for r in cosr})
        pairs = sorted({(r["a"], r["b"]) for r in cosr})
        tasks = sorted({r["task"] for r in cosr})
        for a, b in pairs:
            z, ys = [], []
            for t in tasks:
                rs = {r["layer"]: r["cos"] for r in cosr if r["task"] == t and (r["a"], r["b"]) == (a, b)}
                if rs:
                    z.append([rs.get(l, float("nan")) for l in layers])
                    ys.append(t)
            if z:
                fig = heatmap(z, [str(l) for l in layers], ys, title=f"cosine: {a} vs {b} task vectors",
                              xlabel="layer", ylabel="task", colorscale="Viridis", zmid=None)
                files += save_figure(fig, out / f"cosine_{a}_vs_{b}".replace("+", "_"))
    if cos["rows"]:
        labels = sorted({(r["a"], r["b"]) for r in cos["rows"]})
        layers = sorted({r["layer"] for r in cos["rows"]})
        z, ys = [], []
        for a, b in labels:
            for kind in ("same_task", "other_task"):
                d = {r["layer"]: r[kind] for r in cos["rows"] if (r["a"], r["b"]) == (a, b)}
                z.append([d.get(l, float("nan")) for l in layers])
                ys.append(f"{a} vs {b} ({kind.replace('_', ' ')})")
        fig = heatmap(z, [str(l) for l in layers], ys, title="cosine of task vectors, same task vs other task (mean over tasks)",
                      xlabel="layer", ylabel="", colorscale="Viridis", zmid=None)
        files += save_figure(fig, out / "cosine_control", width=1100)
    curve = tables["curve"]
    for tg in TARGETS:
        series = {}
        for m in ("prompting_text",) + SOURCES:
            rs = [r for r in curve if r["target"] == tg and r["method"] == m]
            if not rs:
                continue
            ks = sorted({r["n_examples"] for r in rs})
            stats = []
            for k in ks:  # per seed: mean over tasks; interval over seeds
                per_seed = defaultdict(list)
                for r in rs:
                    if r["n_examples"] == k:
                        per_seed[r["seed"]].append(r["em"])
                stats.append(mean_ci([float(np.mean(v)) for v in per_seed.values()]))
            series[LABELS.get(m, m).replace("patch: ", "")] = (ks, [s[0] for s in stats], [s[1] for s in stats])
        if series:
            fig = line_with_ci(series, title=f"{tg} queries: exact match vs number of examples (mean over tasks, "
                                             f"95% CI over seeds)", xlabel="examples", ylabel="exact match")
            fig.update_xaxes(type="log")
            files += save_figure(fig, out / f"examples_{tg}")
    return files
