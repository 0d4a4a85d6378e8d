"""Mechanism analyses of a trained decoder on text episodes, through the hooked model.

1. **Interchange interventions** (positional vs symbolic binding). A *source* episode puts
   the query colour ``c*`` at context index ``k_s`` and asks for it; a *base* episode holds
   ``c*`` at another index ``j_b`` and asks for a third pair ``q_b``. The residual stream at
   the query position of the source run is patched into the base run at one layer, and the
   base run's answer is read:

   - ``symbolic``: the item of the pair that holds ``c*`` in the base (index ``j_b``): the
     patched state carries the *symbol* (the colour / what to look for);
   - ``positional``: the item of the base pair at index ``k_s``: it carries the *position*
     where the bound pair sat in the source;
   - ``source``: the source's own answer item (disjoint from the base's items): it already
     carries the answer;
   - ``base``: the base answer (the patch did nothing); ``other``: anything else.

   The symbolic/positional ratio per layer is ``P(symbolic) / P(positional)``.
2. **Attention knockout**: for a window of layers, the attention scores of a route (query ->
   context, query -> associations, associations -> context) are set to -inf before the
   softmax; the accuracy drop says where that route carries the answer.
3. **Linear probes** on the residual stream at the query position, per layer, for the bound
   attribute: the context index of the queried pair (position), the shape bound to the query
   colour (symbol, from a fixed pool of ``probe_shapes`` shapes) and the answer item. Fitted on
   one set of episodes, scored on held-out episodes.

All three take the :class:`~interp.models.hooked.HookedLM` from :meth:`BindingModel.hooked`
and the :class:`BindingModel` (for the input embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from interp.studies.binding.model import BindingModel
from interp.studies.binding.task import ROLES, Episodes, TaskConfig, Vocab, layout, sample_episodes

OUTCOMES = ("symbolic", "positional", "source", "base", "other")
ROUTES = {"query->context": ("query", ("ctx_colour", "ctx_shape")),
          "query->assoc": ("query", ("assoc_shape", "assoc_item")),
          "assoc->context": (("assoc_shape", "assoc_item"), ("ctx_colour", "ctx_shape"))}


@dataclass(frozen=True)
class MechConfig:
    """``size``: episodes per analysis; ``n``: objects (0 = the task's in-distribution count);
    ``knockout_window``: layers knocked out together; ``probe_shapes``: shape classes of the
    symbol probe; ``probe_size``: episodes for the probes (half fit, half score)."""

    size: int = 512
    n: int = 0
    knockout_window: int = 1
    probe_shapes: int = 16
    probe_size: int = 2000
    probe_C: float = 1.0
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.size < 8 or self.probe_size < 20 or self.knockout_window < 1 or self.probe_shapes < 2:
            raise ValueError(f"invalid mechanism config: size={self.size} (>=8), probe_size={self.probe_size} (>=20), "
                             f"knockout_window={self.knockout_window} (>=1), probe_shapes={self.probe_shapes} (>=2)")


# ----------------------------------------------------------------- interchange
def interchange_pairs(rng: np.random.Generator, task: TaskConfig, size: int, n: int) -> tuple[Episodes, Episodes, dict]:
    """(base, source, index arrays ``q_b``, ``j_b``, ``k_s``) for the interchange test.

    Needs ``n >= 3`` (three distinct indices) and ``2n <= n_items`` (source items disjoint
    from the base's, so that the "source" outcome is distinguishable)."""
    if n < 3 or 2 * n > task.n_items or 2 * n > task.n_colours or 2 * n > task.n_shapes:
        raise ValueError(f"interchange needs 3 <= n and 2n <= the pools; n={n}, pools "
                         f"{task.n_colours}/{task.n_shapes}/{task.n_items}")
    base = sample_episodes(rng, task, size, n)
    idx = np.argsort(rng.random((size, n)), axis=1)[:, :3]
    q_b, j_b, k_s = idx[:, 0], idx[:, 1], idx[:, 2]
    base.query = q_b
    rows = np.arange(size)
    c_star = base.colours[rows, j_b]
    # source: colours, shapes, items all disjoint from the base except c* at index k_s
    src_c = np.empty_like(base.colours)
    src_s = np.empty_like(base.shapes)
    src_i = np.empty_like(base.items)
    for b in range(size):
        free_c = np.setdiff1d(np.arange(task.n_colours), base.colours[b])
        src_c[b] = rng.choice(free_c, n, replace=False)
        src_c[b, k_s[b]] = c_star[b]
        src_s[b] = rng.choice(np.setdiff1d(np.arange(task.n_shapes), base.shapes[b]), n, replace=False)
        src_i[b] = rng.choice(np.setdiff1d(np.arange(task.n_items), base.items[b]), n, replace=False)
    order = np.argsort(rng.random((size, n)), axis=1)
    source = Episodes(src_c, src_s, src_i, order, k_s.copy())
    return base, source, {"q_b": q_b, "j_b": j_b, "k_s": k_s}


def _resid_names(n_layers: int) -> list[str]:
    """Patch points: the residual entering each block, then the output of the last one."""
    return [f"blocks.{i}.hook_resid_pre" for i in range(n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]


@torch.no_grad()
def patched_predictions(hooked, model: BindingModel, vocab: Vocab, base: Episodes, source: Episodes) -> dict[str, torch.Tensor]:
    """For every patch point (see :func:`_resid_names`), the base run's argmax token ``[size]``
    with the query-position residual taken from the source run; ``"clean"``: no patch."""
    lb, ls = layout(base, vocab), layout(source, vocab)
    if lb.ids.shape != ls.ids.shape:
        raise ValueError(f"base and source layouts differ in shape: {tuple(lb.ids.shape)} vs {tuple(ls.ids.shape)}")
    xb, xs = model.embed(lb), model.embed(ls)
    last = lb.last
    rows = torch.arange(len(base))
    names = _resid_names(hooked.n_layers)
    cache: dict[str, torch.Tensor] = {}

    def keep(name):
        def fn(t, hook):
            cache[name] = t[rows, last].clone()
        return fn

    hooked(xs, ls.mask, fwd_hooks=[(nm, keep(nm)) for nm in names])
    out = {"clean": hooked.unembed(hooked(xb, lb.mask)[rows, last]).argmax(-1).cpu()}
    for nm in names:
        def patch(t, hook, nm=nm):
            t = t.clone()
            t[rows, last] = cache[nm].to(t.dtype)
            return t

        h = hooked(xb, lb.mask, fwd_hooks=[(nm, patch)])
        out[nm] = hooked.unembed(h[rows, last]).argmax(-1).cpu()
    return out


def classify(pred: torch.Tensor, base: Episodes, source: Episodes, ix: dict, vocab: Vocab) -> dict[str, int]:
    """Count the outcomes (:data:`OUTCOMES`) of predicted tokens ``[size]``."""
    r = np.arange(len(base))
    targets = {"symbolic": base.items[r, ix["j_b"]], "positional": base.items[r, ix["k_s"]],
               "source": source.items[r, ix["k_s"]], "base": base.items[r, ix["q_b"]]}
    counts = {k: int((pred == torch.as_tensor(vocab.item(v))).sum()) for k, v in targets.items()}
    counts["other"] = len(pred) - sum(counts.values())
    return counts


def interchange(hooked, model: BindingModel, task: TaskConfig, vocab: Vocab, cfg: MechConfig) -> list[dict]:
    """Rows ``{point, layer, outcome fractions..., ratio, sym_share}`` per patch point (see the
    module doc); ``clean_acc`` is the base runs' unpatched accuracy."""
    n = cfg.n or task.n_objects
    base, source, ix = interchange_pairs(np.random.default_rng([cfg.seed, n, 1]), task, cfg.size, n)
    preds = patched_predictions(hooked, model, vocab, base, source)
    clean = classify(preds.pop("clean"), base, source, ix, vocab)["base"] / cfg.size
    out = []
    for li, (nm, pred) in enumerate(preds.items()):
        counts = classify(pred, base, source, ix, vocab)
        sym, pos = counts["symbolic"], counts["positional"]
        out.append({"point": nm, "layer": li, "n": n, "size": cfg.size,
                    **{k: counts[k] / cfg.size for k in OUTCOMES},
                    "ratio": sym / pos if pos else (float("inf") if sym else float("nan")),
                    "sym_share": sym / (sym + pos) if sym + pos else float("nan"), "clean_acc": clean})
    return out


# -------------------------------------------------------------------- knockout
def _route_mask(lay, route: str) -> torch.Tensor:
    """``[batch, pos, pos]`` True where attention from a query row to a key column is cut."""
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}: valid routes are {list(ROUTES)}")
    src, dst = ROUTES[route]
    src = (src,) if isinstance(src, str) else src
    rows = torch.zeros_like(lay.role, dtype=torch.bool)
    for s in src:
        rows |= lay.role == ROLES[s]
    cols = torch.zeros_like(lay.role, dtype=torch.bool)
    for d in dst:
        cols |= lay.role == ROLES[d]
    return rows[:, :, None] & cols[:, None, :]


@torch.no_grad()
def knockout(hooked, model: BindingModel, task: TaskConfig, vocab: Vocab, cfg: MechConfig,
             routes: tuple[str, ...] = tuple(ROUTES)) -> list[dict]:
    """Rows ``{route, layer (window start), window, acc, acc_clean}``: accuracy with the route's
    attention cut in layers ``layer .. layer + window - 1`` (all heads)."""
    n = cfg.n or task.n_objects
    ep = sample_episodes(np.random.default_rng([cfg.seed, n, 2]), task, cfg.size, n)
    lay = layout(ep, vocab)
    x = model.embed(lay)
    rows = torch.arange(cfg.size)
    target = lay.answer

    def acc(hooks) -> float:
        h = hooked(x, lay.mask, fwd_hooks=hooks)
        return float((hooked.unembed(h[rows, lay.last]).argmax(-1).cpu() == target).float().mean())

    clean = acc([])
    out = []
    w = cfg.knockout_window
    for route in routes:
        cut = _route_mask(lay, route)[:, None]  # [b, 1, q, k]

        def ko(t, hook):
            return t.masked_fill(cut.to(t.device), float("-inf"))

        for start in range(0, hooked.n_layers - w + 1):
            hooks = [(f"blocks.{i}.attn.hook_attn_scores", ko) for i in range(start, start + w)]
            out.append({"route": route, "layer": start, "window": w, "n": n, "acc": acc(hooks), "acc_clean": clean})
    return out


# ---------------------------------------------------------------------- probes
def probe_episodes(rng: np.random.Generator, task: TaskConfig, size: int, n: int, shapes: int) -> Episodes:
    """Episodes whose shapes come from a fixed pool of ``shapes`` ids (the symbol probe's
    classes); everything else as in training."""
    pool = np.sort(np.random.default_rng(97).permutation(task.n_shapes)[:shapes])
    if shapes < n:
        raise ValueError(f"probe_shapes={shapes} must be >= n={n} (distinct shapes per episode)")
    return sample_episodes(rng, task, size, n, shape_pool=pool)


@torch.no_grad()
def probes(hooked, model: BindingModel, task: TaskConfig, vocab: Vocab, cfg: MechConfig) -> list[dict]:
    """Rows ``{target, layer, acc, chance}`` for probes at the query position, per layer
    (layer 0 = the embeddings, layer i = output of block i-1)."""
    from interp.analysis.probes import transfer_layers  # deferred: scikit-learn (~3 s); --dry-run of the binding config loads nothing heavy

    n = cfg.n or task.n_objects
    ep = probe_episodes(np.random.default_rng([cfg.seed, n, 3]), task, cfg.probe_size, n, cfg.probe_shapes)
    lay = layout(ep, vocab)
    x = model.embed(lay)
    rows = torch.arange(len(ep))
    names = [f"blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(hooked.n_layers)]
    acts: dict[str, torch.Tensor] = {}

    def keep(name):
        def fn(t, hook):
            acts[name] = t[rows, lay.last].float().cpu()
        return fn

    hooked(x, lay.mask, fwd_hooks=[(nm, keep(nm)) for nm in names])
    stack = torch.stack([acts[nm] for nm in names])  # [layers + 1, size, d]
    r = np.arange(len(ep))
    labels = {"position": ep.query, "shape": ep.shapes[r, ep.query], "item": ep.items[r, ep.query]}
    chance = {"position": 1.0 / n, "shape": 1.0 / cfg.probe_shapes, "item": 1.0 / task.n_items}
    half = len(ep) // 2
    out = []
    for target, y in labels.items():
        scores = transfer_layers(stack[:, :half], y[:half], stack[:, half:], y[half:], seed=cfg.seed, C=cfg.probe_C)
        for layer, s in enumerate(scores):
            out.append({"target": target, "layer": layer, "n": n, "acc": float(s), "chance": chance[target]})
    return out
