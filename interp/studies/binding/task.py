"""The two-hop indirect retrieval task, its vocabulary and its tokenizer.

An episode binds ``n`` objects: the context pairs colour ``c_k`` with shape ``s_k``; the
associations pair every shape with an item; the query names one colour and the answer is
the item of the shape bound to that colour (colour -> shape -> item: two hops).

Text layout (one token per symbol)::

    <bos> c_1 s_1 c_2 s_2 ... c_n s_n | s_p1 i_p1 ... s_pn i_pn ? c_q   -> i_q

``|`` ends the context, ``?`` marks the query; the associations come in a random order
(``p`` is a permutation), so the item of the queried shape must be found by content.
Image layout: the ``2n`` context tokens are replaced by ``n_image_tokens`` projected
patch tokens of the context drawn on a canvas (see :mod:`interp.studies.binding.render`); noise
layout: ``n_image_tokens`` uninformative tokens are inserted before the text context.

Attribute pools (the brief): 216 colours, 216 shapes, 32 items. Colours, shapes and items
are distinct within an episode, so an episode holds at most ``min(pools)`` objects. All
sampling goes through a ``numpy.random.Generator`` (seeded by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

PAD, BOS, CTX_END, QUERY, IMG = "<pad>", "<bos>", "|", "?", "<img>"
SPECIALS = (PAD, BOS, CTX_END, QUERY, IMG)
LOOKUP = "!"  # the marker of the one-hop lookups of training (``Vocab(lookups=True)``)


@dataclass(frozen=True)
class TaskConfig:
    """Pools and object counts.

    ``n_objects``: objects per training episode (in distribution); ``ood_objects``: the
    larger counts tested out of distribution; ``n_image_tokens``: how many positions an
    image (or the noise control) takes.
    """

    n_colours: int = 216
    n_shapes: int = 216
    n_items: int = 32
    n_objects: int = 8
    ood_objects: tuple[int, ...] = (12, 16)
    n_image_tokens: int = 49

    def __post_init__(self) -> None:
        for name in ("n_colours", "n_shapes", "n_items", "n_objects", "n_image_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"task.{name}={getattr(self, name)!r}: must be >= 1")
        cap = self.max_objects
        for n in (self.n_objects, *self.ood_objects):
            if not 2 <= n <= cap:
                raise ValueError(f"object count {n} is out of range: valid counts are 2..{cap} "
                                 f"(distinct colours, shapes and items per episode; pools "
                                 f"{self.n_colours}/{self.n_shapes}/{self.n_items})")
        if any(n <= self.n_objects for n in self.ood_objects):
            raise ValueError(f"task.ood_objects={list(self.ood_objects)} must all exceed n_objects={self.n_objects}")

    @property
    def max_objects(self) -> int:
        return min(self.n_colours, self.n_shapes, self.n_items)


class Vocab:
    """Token ids: the specials, then colours ``C0..``, shapes ``S0..``, items ``I0..``, then
    (``lookups=True``) the lookup marker ``!`` of the training layout with one-hop lookups
    (:func:`episode_tokens`); last, so that the other ids do not move."""

    def __init__(self, cfg: TaskConfig, lookups: bool = False):
        self.cfg = cfg
        self.tokens: list[str] = list(SPECIALS)
        self.colour0 = len(self.tokens)
        self.tokens += [f"C{i}" for i in range(cfg.n_colours)]
        self.shape0 = len(self.tokens)
        self.tokens += [f"S{i}" for i in range(cfg.n_shapes)]
        self.item0 = len(self.tokens)
        self.tokens += [f"I{i}" for i in range(cfg.n_items)]
        if lookups:
            self.tokens.append(LOOKUP)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.pad, self.bos, self.ctx_end, self.query, self.img = (self.index[t] for t in SPECIALS)
        self.lookup: int | None = self.index.get(LOOKUP)

    def __len__(self) -> int:
        return len(self.tokens)

    def colour(self, c):
        return self.colour0 + c

    def shape(self, s):
        return self.shape0 + s

    def item(self, i):
        return self.item0 + i

    @property
    def item_ids(self) -> torch.Tensor:
        """``[n_items]`` token ids of the items (the answer space)."""
        return torch.arange(self.item0, self.item0 + self.cfg.n_items)

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.tokens[int(i)] for i in ids)

    def hf_tokenizer(self):
        """A ``PreTrainedTokenizerFast`` over this vocabulary (whitespace-split word level),
        which the TransformerLens bridge and nnsight want beside the model."""
        from tokenizers import Tokenizer, models, pre_tokenizers  # deferred: loaded with transformers; only the binding tokenizer needs it
        from transformers import PreTrainedTokenizerFast

        tok = Tokenizer(models.WordLevel(dict(self.index), unk_token=PAD))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        # add_bos_token/name_or_path: the bridge's tokenizer set-up reads both (it would
        # otherwise try to reload the tokenizer from the hub by name).
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=PAD,
                                       unk_token=PAD, padding_side="right", add_bos_token=True,
                                       name_or_path="binding-decoder")


@dataclass
class Episodes:
    """A batch of episodes with ``n`` objects each (all arrays ``[batch, n]`` except ``query``).

    ``colours[b, k]``/``shapes[b, k]``: the k-th context pair; ``items[b, k]``: the item of
    shape ``shapes[b, k]``; ``assoc_order[b]``: the order in which the k's appear in the
    associations; ``query[b]``: the index k of the queried pair; ``cells[b, k]``: where
    object k is drawn in the image version (grid cell), -1 if not rendered.
    """

    colours: np.ndarray
    shapes: np.ndarray
    items: np.ndarray
    assoc_order: np.ndarray
    query: np.ndarray
    cells: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.cells is None:
            self.cells = np.full_like(self.colours, -1)

    def __len__(self) -> int:
        return int(self.colours.shape[0])

    @property
    def n(self) -> int:
        return int(self.colours.shape[1])

    @property
    def answers(self) -> np.ndarray:
        """``[batch]`` the answer item of each episode."""
        return self.items[np.arange(len(self)), self.query]

    def select(self, rows) -> "Episodes":
        rows = np.asarray(rows)
        return Episodes(self.colours[rows], self.shapes[rows], self.items[rows], self.assoc_order[rows],
                        self.query[rows], self.cells[rows])


def _distinct(rng: np.random.Generator, batch: int, n: int, pool: Sequence[int] | int) -> np.ndarray:
    """``[batch, n]`` rows of distinct values drawn from ``pool`` (a size or a list)."""
    pool = np.arange(pool) if isinstance(pool, (int, np.integer)) else np.asarray(pool)
    if n > len(pool):
        raise ValueError(f"cannot draw {n} distinct values from a pool of {len(pool)}")
    keys = rng.random((batch, len(pool)))
    return pool[np.argsort(keys, axis=1)[:, :n]]


def sample_episodes(rng: np.random.Generator, cfg: TaskConfig, batch: int, n: int | None = None, *,
                    colour_pool: Sequence[int] | None = None, shape_pool: Sequence[int] | None = None,
                    grid_cells: int = 0) -> Episodes:
    """Draw ``batch`` episodes of ``n`` objects (default ``cfg.n_objects``).

    ``colour_pool``/``shape_pool`` restrict the attributes (the image version draws from the
    renderable subsets); ``grid_cells > 0`` also places the objects in distinct cells.
    """
    n = cfg.n_objects if n is None else int(n)
    if not 2 <= n <= cfg.max_objects:
        raise ValueError(f"n={n} objects is out of range: valid 2..{cfg.max_objects}")
    colours = _distinct(rng, batch, n, cfg.n_colours if colour_pool is None else colour_pool)
    shapes = _distinct(rng, batch, n, cfg.n_shapes if shape_pool is None else shape_pool)
    items = _distinct(rng, batch, n, cfg.n_items)
    order = np.argsort(rng.random((batch, n)), axis=1)
    query = rng.integers(0, n, size=batch)
    cells = _distinct(rng, batch, n, grid_cells) if grid_cells else None
    if grid_cells and n > grid_cells:
        raise ValueError(f"{n} objects do not fit in {grid_cells} grid cells")
    return Episodes(colours, shapes, items, order, query, cells)


def reassign(rng: np.random.Generator, ep: Episodes, cfg: TaskConfig) -> Episodes:
    """Fresh items, association order and query for the same contexts (reuses a rendered
    image with new associations: the context, and so the image, is unchanged)."""
    b, n = ep.colours.shape
    return Episodes(ep.colours, ep.shapes, _distinct(rng, b, n, cfg.n_items),
                    np.argsort(rng.random((b, n)), axis=1), rng.integers(0, n, size=b), ep.cells)


# ------------------------------------------------------------------------- token layouts
@dataclass
class Layout:
    """A tokenised batch, right padded.

    ``ids [batch, pos]`` token ids, ``mask [batch, pos]`` 1 for real tokens, ``answer [batch]``
    the answer token id, ``last [batch]`` the index of the query token (where the answer is
    read; the last real token except in multi-query training layouts), ``role [batch, pos]`` role codes (:data:`ROLES`), ``ext_code [batch,
    pos]`` for external positions: the image patch index (>= 0) or :data:`NOISE` (-2); -1
    elsewhere. ``ext [batch, pos]`` is True where an external embedding replaces ``<img>``.
    """

    ids: torch.Tensor
    mask: torch.Tensor
    answer: torch.Tensor
    last: torch.Tensor
    role: torch.Tensor
    ext_code: torch.Tensor
    targets: torch.Tensor | None = None
    target_pos: torch.Tensor | None = None
    mid: torch.Tensor | None = None
    target_mid: torch.Tensor | None = None
    twin: Layout | None = None  # the text version of the same episodes and queries (training alignment)

    @property
    def scored(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(positions [batch, k], answer ids [batch, k])`` of every query the loss scores:
        the main query (``k = 1``) unless the layout was built with extra training queries."""
        if self.targets is None:
            return self.last[:, None], self.answer[:, None]
        return self.target_pos, self.targets

    @property
    def scored_mid(self) -> torch.Tensor:
        """``[batch, k]`` the intermediate token of every scored query, aligned with
        :attr:`scored`: the shape bound to the queried colour for a two-hop query (the first
        hop's result), -100 where there is none (one-hop queries and lookups)."""
        return self.mid[:, None] if self.target_mid is None else self.target_mid

    @property
    def ext(self) -> torch.Tensor:
        return self.ext_code != -1

    def positions(self, role: str) -> torch.Tensor:
        """``[batch, k]`` positions of a role (every row has the same count, e.g. the n
        context colours), in sequence order."""
        code = ROLES[role]
        hits = (self.role == code)
        counts = hits.sum(1)
        if len(counts) and not bool((counts == counts[0]).all()):
            raise ValueError(f"rows differ in their number of {role!r} positions")
        return hits.nonzero()[:, 1].reshape(len(hits), -1)


ROLES = {"pad": 0, "bos": 1, "ctx_colour": 2, "ctx_shape": 3, "ctx_end": 4, "assoc_shape": 5, "assoc_item": 6,
         "query_marker": 7, "query": 8, "image": 9, "noise": 10, "train_query": 11, "train_answer": 12,
         "lookup_marker": 13, "lookup_key": 14}
NOISE = -2
MODES = ("text", "image")


def noise_gaps(rng: np.random.Generator, batch: int, units: int, n_noise: int, every: int = 1) -> np.ndarray:
    """``[batch, units + 1]`` how many noise tokens go before each context unit (and after
    the last): ``n_noise`` tokens dropped uniformly into the ``units + 1`` gaps, or with
    ``every = k`` into the gaps before units ``0, k, 2k, ...`` and after the last alone (the
    rows of a picture of ``k`` patches per row: noise between rows, never inside one)."""
    if n_noise < 0 or units < 1 or every < 1 or units % every:
        raise ValueError(f"n_noise={n_noise} must be >= 0, units={units} >= 1 and a multiple of every={every} >= 1")
    slots = rng.integers(0, units // every + 1, size=(batch, n_noise)) * every
    return np.stack([np.bincount(r, minlength=units + 1) for r in slots]) if n_noise else np.zeros((batch, units + 1), int)


def episode_tokens(ep: Episodes, vocab: Vocab, mode: str = "text", n_image: int = 0,
                   gaps: np.ndarray | None = None, after: np.ndarray | None = None,
                   hops: int = 2, lookups: np.ndarray | None = None) -> list[tuple[list[int], list[int], list[int]]]:
    """Per episode: (token ids, role codes, external codes).

    ``hops=1`` (the first stage of a training curriculum, never evaluated as the brief's
    task): no associations, and every query is answered with the shape bound to its colour
    (``<bos> c_1 s_1 ... c_n s_n | ? c_q -> s_q``): one content-addressed hop.

    ``after [batch, k]`` (training only): context indices of ``k`` extra queries appended
    after the query and its answer (``... ? c_q i_q ? c_a i_a ? c_b``): one sequence then
    scores ``k + 1`` answers, and its prefix up to ``c_q`` is exactly the single-query
    layout (the main query sees no earlier answer, so it has no elimination shortcut).

    ``lookups [batch, 2n]`` (training only, text mode, two hops, a vocabulary with the ``!``
    marker): one-hop lookups appended after the queries, ``! x`` answered by the token that
    follows ``x`` in the sequence, in the order given: ``j < n`` asks for the shape of context
    colour ``j``, ``j >= n`` for the item of shape ``j - n`` (``... ? c_q i_q ! c_3 s_3 ! s_1 i_1
    ! c_1``). Both hops of the task, trained one at a time beside the composition
    (:func:`lookup_order`, docs/binding.md).

    ``mode="text"``: the context as ``2n`` tokens; ``mode="image"``: the context as ``n_image``
    ``<img>`` positions (patch tokens in raster order). ``gaps [batch, units + 1]`` (see
    :func:`noise_gaps`) inserts noise ``<img>`` positions between context units (the ``n``
    colour-shape pairs, never inside one, or the ``n_image`` patches)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: valid modes are {MODES}")
    if hops not in HOPS:
        raise ValueError(f"hops={hops!r} is out of range: valid values are {HOPS}")
    if mode == "image" and n_image < 1:
        raise ValueError(f"mode 'image' needs n_image >= 1 patch positions, got {n_image}")
    units = ep.n if mode == "text" else n_image
    if gaps is not None and gaps.shape != (len(ep), units + 1):
        raise ValueError(f"gaps has shape {gaps.shape}, expected {(len(ep), units + 1)}")
    out, ans = [], answer_ids(ep, vocab, hops)
    for b in range(len(ep)):
        ids, roles, codes = [vocab.bos], [ROLES["bos"]], [-1]

        def add_noise(u: int) -> None:
            if gaps is not None and gaps[b, u]:
                k = int(gaps[b, u])
                ids.extend([vocab.img] * k)
                roles.extend([ROLES["noise"]] * k)
                codes.extend([NOISE] * k)

        for u in range(units):
            add_noise(u)
            if mode == "text":
                ids += [vocab.colour(int(ep.colours[b, u])), vocab.shape(int(ep.shapes[b, u]))]
                roles += [ROLES["ctx_colour"], ROLES["ctx_shape"]]
                codes += [-1, -1]
            else:
                ids.append(vocab.img)
                roles.append(ROLES["image"])
                codes.append(u)
        add_noise(units)
        ids.append(vocab.ctx_end)
        roles.append(ROLES["ctx_end"])
        codes.append(-1)
        for k in (ep.assoc_order[b] if hops == 2 else ()):
            ids += [vocab.shape(int(ep.shapes[b, k])), vocab.item(int(ep.items[b, k]))]
            roles += [ROLES["assoc_shape"], ROLES["assoc_item"]]
            codes += [-1, -1]
        ids += [vocab.query, vocab.colour(int(ep.colours[b, ep.query[b]]))]
        roles += [ROLES["query_marker"], ROLES["query"]]
        codes += [-1, -1]
        prev = int(ans[b, ep.query[b]])  # the answer of the last query appended
        if after is not None:
            for k in after[b]:
                ids += [prev, vocab.query, vocab.colour(int(ep.colours[b, k]))]
                roles += [ROLES["train_answer"], ROLES["query_marker"], ROLES["train_query"]]
                codes += [-1, -1, -1]
                prev = int(ans[b, k])
        if lookups is not None:
            keys, values = lookup_pairs(ep, vocab)
            for j in lookups[b]:
                ids += [prev, vocab.lookup, int(keys[b, j])]
                roles += [ROLES["train_answer"], ROLES["lookup_marker"], ROLES["lookup_key"]]
                codes += [-1, -1, -1]
                prev = int(values[b, j])
        out.append((ids, roles, codes))
    return out


def lookup_pairs(ep: Episodes, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, values)``, both ``[batch, 2n]``: the one-hop lookups of an episode, each key
    answered by the token after it: context colour -> its shape (``j < n``), then association
    shape -> its item (``j >= n``)."""
    keys = np.concatenate([vocab.colour(ep.colours), vocab.shape(ep.shapes)], 1)
    values = np.concatenate([vocab.shape(ep.shapes), vocab.item(ep.items)], 1)
    return keys, values


def lookup_order(rng: np.random.Generator, ep: Episodes) -> np.ndarray:
    """``[batch, 2n]`` a random order of the ``2n`` one-hop lookups of each episode
    (:func:`lookup_pairs`)."""
    return np.argsort(rng.random((len(ep), 2 * ep.n)), axis=1)


HOPS = (1, 2)


def answer_ids(ep: Episodes, vocab: Vocab, hops: int = 2) -> np.ndarray:
    """``[batch, n]`` the answer token of a query about each context colour: its item
    (two hops, the brief's task) or its shape (``hops=1``)."""
    return vocab.item(ep.items) if hops == 2 else vocab.shape(ep.shapes)


def train_queries(rng: np.random.Generator, ep: Episodes, queries: int, dense: bool = False) -> np.ndarray | None:
    """``[batch, k]`` context indices of the extra training queries of :func:`episode_tokens`
    (None when there are none).

    ``dense``: every bound pair is queried once, the main query first and the other ``n - 1``
    colours after it in a random order (``queries`` is ignored): a multi-query associative
    recall loss, n answers per sequence, none of which can be copied from an earlier one.
    Otherwise ``queries - 1`` colours drawn with replacement: a colour asked again can be
    answered by copying its earlier answer (a shortcut the model learns instead of the
    lookup, docs/binding.md); the main query comes first and can copy nothing."""
    if queries < 1:
        raise ValueError(f"train.queries={queries} is out of range: must be >= 1")
    if dense:  # the n - 1 other indices: query + 1 + a permutation of 0..n-2, modulo n
        return (ep.query[:, None] + 1 + np.argsort(rng.random((len(ep), ep.n - 1)), axis=1)) % ep.n
    if queries == 1:
        return None
    return rng.integers(0, ep.n, size=(len(ep), queries - 1))


def layout(ep: Episodes, vocab: Vocab, mode: str = "text", n_image: int = 0, gaps: np.ndarray | None = None,
           after: np.ndarray | None = None, hops: int = 2, lookups: np.ndarray | None = None) -> Layout:
    """Tokenise a batch of episodes (see :func:`episode_tokens`), right padded. With
    ``after`` (extra training queries) or ``lookups``, ``last`` is still the main query and
    the layout also holds ``targets``/``target_pos``/``target_mid``: every scored position
    (main query, extra queries, lookup keys), its answer id and its intermediate token (see
    :attr:`Layout.scored_mid`), ``[batch, k]``."""
    if lookups is not None and (mode != "text" or hops != 2 or vocab.lookup is None):
        raise ValueError("one-hop lookups need the text layout of the two-hop task and a vocabulary with the "
                         f"lookup marker (Vocab(..., lookups=True)); got mode={mode!r}, hops={hops}")
    rows = episode_tokens(ep, vocab, mode, n_image, gaps, after, hops, lookups)
    width = max(len(r[0]) for r in rows)
    b = len(rows)
    ids = torch.full((b, width), vocab.pad, dtype=torch.long)
    role = torch.zeros((b, width), dtype=torch.long)
    code = torch.full((b, width), -1, dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.long)
    for r, (toks, roles, codes) in enumerate(rows):
        n = len(toks)
        ids[r, :n], role[r, :n], code[r, :n], mask[r, :n] = (torch.tensor(toks), torch.tensor(roles),
                                                             torch.tensor(codes), 1)
    answers = answer_ids(ep, vocab, hops)
    answer = torch.as_tensor(answers[np.arange(b), ep.query], dtype=torch.long)
    last = (role == ROLES["query"]).int().argmax(1)  # the main query (the last real token unless `after`)
    shapes = vocab.shape(ep.shapes) if hops == 2 else np.full(ep.shapes.shape, -100)  # the first hop's result
    mid = torch.as_tensor(shapes[np.arange(b), ep.query], dtype=torch.long)
    lay = Layout(ids, mask, answer, last, role, code, mid=mid)
    if after is None and lookups is None:
        return lay
    pos, tgt, mids = [last[:, None]], [answer[:, None]], [mid[:, None]]
    if after is not None:
        pos.append((role == ROLES["train_query"]).nonzero()[:, 1].reshape(b, -1))
        tgt.append(torch.as_tensor(answers[np.arange(b)[:, None], after], dtype=torch.long))
        mids.append(torch.as_tensor(shapes[np.arange(b)[:, None], after], dtype=torch.long))
    if lookups is not None:
        values = lookup_pairs(ep, vocab)[1]
        pos.append((role == ROLES["lookup_key"]).nonzero()[:, 1].reshape(b, -1))
        tgt.append(torch.as_tensor(np.take_along_axis(values, lookups, 1), dtype=torch.long))
        mids.append(torch.full(lookups.shape, -100, dtype=torch.long))
    lay.target_pos, lay.targets, lay.target_mid = torch.cat(pos, 1), torch.cat(tgt, 1), torch.cat(mids, 1)
    return lay


def external_tokens(lay: Layout, image: torch.Tensor | None = None, noise_pool: torch.Tensor | None = None,
                    rng: np.random.Generator | None = None) -> torch.Tensor | None:
    """The external embeddings of ``lay`` in row-major position order: ``[n_ext, d]``.

    ``image [batch, n_image, d]`` supplies the patch positions; noise positions take tokens
    drawn uniformly (with ``rng``) from ``noise_pool [m, d]``."""
    codes = lay.ext_code[lay.ext]
    if codes.numel() == 0:
        return None
    rows = lay.ext.nonzero()[:, 0]
    is_noise = codes == NOISE
    d = (image if image is not None else noise_pool).shape[-1]
    out = torch.empty(len(codes), d)
    if (~is_noise).any():
        if image is None:
            raise ValueError("the layout has image positions but no image features were given")
        out[~is_noise] = image[rows[~is_noise], codes[~is_noise]].float()
    if is_noise.any():
        if noise_pool is None or rng is None:
            raise ValueError("the layout has noise positions: pass noise_pool and rng")
        pick = torch.as_tensor(rng.integers(0, len(noise_pool), size=int(is_noise.sum())))
        out[is_noise] = noise_pool[pick].float()
    return out
