"""The study's driver: per task, task vectors and function vectors from every source, the layer
chosen on validation, scored on test (resumable: a finished task is read back), then the
tables, report and figures."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from interp.analysis import function_vectors as fvs
from interp.analysis import task_vectors as tvs
from interp.data.tasks import load_task
from interp.io import environment, read_json, save_tensors, stable_hash, write_json
from interp.studies.task_vectors.config import IMAGE_SOURCES, TaskVectorConfig
from interp.studies.task_vectors.context import Context, load_context, resolve_projector
from interp.studies.task_vectors.prompts import (draw_specs, prompting_prompts, query_prompts, shuffled_prompts,
                                                 source_vectors)
from interp.studies.task_vectors.page import write_report_page
from interp.studies.task_vectors.report import FIGURE_MODES, write_outputs


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
def rank_heads(vlm, train: list, cfg: TaskVectorConfig, seed: Any) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The function vector's heads as the study ranks them: ``(k, mean_out [layers, heads, d_model],
    aie [layers, heads], corrupted answer probabilities [n_shuffled])`` from ``cfg.fv.n_prompts``
    ICL prompts of ``k`` train demonstrations (mean head outputs) and ``cfg.fv.n_shuffled``
    label-shuffled ones (average indirect effects)."""
    f, m = cfg.fv, cfg.method
    k = min(f.n_examples, len(train) - 1)
    icl = [tvs.icl_prompt([(d.input, d.answer) for d in demos], qy.input)
           for demos, qy in draw_specs(train, k, f.n_prompts, ["fv", seed])]
    mean_z, mean_out = fvs.mean_head_outputs(vlm, icl, None, batch_size=max(1, m.batch_size // 4))
    sh, answers = shuffled_prompts(train, k, f.n_shuffled, ["fv", seed])
    ans_ids = [tvs.answer_token_ids(vlm.tokenizer, [a])[0] for a in answers]
    aie, corrupted = fvs.head_indirect_effects(vlm, sh, None, ans_ids, mean_z, batch_size=m.batch_size)
    return k, mean_out, aie, corrupted


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
        k_fv, mean_out, aie, base = rank_heads(vlm, train, cfg, seed)
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
    if figures not in FIGURE_MODES:
        raise ValueError(f"figures={figures!r}: valid are {list(FIGURE_MODES)}")

    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    projector = resolve_projector(cfg.model)
    if progress:
        print(f"[task vectors] projector: {projector['description']}")
    write_json(out / "config.json", {"config": cfg.to_dict(), "hash": cfg.hash, "projector": projector,
                                     "environment": environment(), "source": source})
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
    summary["page"] = str(write_report_page(out, progress=progress))
    return summary
