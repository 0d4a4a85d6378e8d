"""Prompts of the study: demonstration specs, the source prompts a task vector is read from
(text examples, instructions, image examples), zero-shot queries, few-shot prompting and
shuffled-label controls."""

from __future__ import annotations

import random
from typing import Any, Sequence

import torch

from interp.analysis import task_vectors as tvs
from interp.io import stable_hash
from interp.studies.task_vectors.context import Context


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
