"""Concept prototypes: the input vectors a frozen LM itself reads as "there is a <concept> here".

A warm start for projector training (``[warm_start] kind = "prototypes"``), learned from the
leaf questions alone ("Is there a robin in the image?" Yes / a distractor leaf No), so the
deprivation logic of the taxonomic study holds: no hypernym question is ever used.

Why it exists. With one image token, the LM loss on answer and EOS is dominated at the start
by an image-independent part: a base LM almost never ends " Yes" with EOS (gemma-3-270m:
EOS cross-entropy 10.4 nats against 4.2 for the answer, benchmarks/bench_learning.py). A projector trained from a random
init moves every image's token the same way to fix that, and its tokens collapse onto one
vector (mean pairwise cosine 0.99) before any image-specific signal is learned. Here the two
parts are learned apart, on a table with one row per concept (perfect vision), in three steps:

1. ``u``, a shared *format vector*: the LM loss on leaf questions with
   ``u + r_format * |text token| * w_c`` as the image token (``w_c`` the centred, normalised
   mean input embedding of the concept's name), so ``u`` learns the answer format while
   concept-dependent parts of that size are present.
2. ``D_c`` (one per concept): the gradient at ``u`` of the LM's Yes-minus-No margin for the
   question about ``c``, centred over concepts and scaled to ``r_concept * |text token|``:
   the direction in input space that makes the LM say "yes, a robin" (linearised).
3. ``u`` and every ``D_c`` refined together with the same LM loss on leaf questions (each
   concept asked about itself, Yes, and about a fresh random other leaf, No).

The image token for concept ``c`` is ``u + D_c`` (residual scale: text embeddings times the
LM's ``embed_scale``). :mod:`interp.warmstart` turns the table into a projector init.
Prototypes depend only on the LM, the leaf names and the question template, not on the
world or the images, so one table serves every run of a study; it is cached on disk
(safetensors, keyed by everything it depends on).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from interp.examples import QuestionTokens
from interp.io import environment, load_tensors, save_tensors, stable_hash
from interp.metrics import macro_f1
from interp.paths import cache_dir
from interp.sequence import Segment, build_batch, single_token_id
from interp.studies.taxonomy.questions import image_question


FORMAT = 1


@dataclass(frozen=True)
class PrototypeConfig:
    """How the concept prototypes are learned (see the module doc).

    ``format_steps``/``refine_steps``: LM-loss steps of stages 1 and 3, each of
    ``batch_size`` sequences (half Yes, half No); ``format_lr``/``refine_lr``: Adam learning
    rates on the residual scale; ``r_format``/``r_concept``: sizes of the concept parts
    relative to the median text-token norm.
    """

    format_steps: int = 50
    refine_steps: int = 100
    batch_size: int = 64
    format_lr: float = 0.05
    refine_lr: float = 0.02
    r_format: float = 1.0
    r_concept: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 2 or self.batch_size % 2:
            raise ValueError(f"prototypes batch_size={self.batch_size}: must be an even number >= 2 (Yes/No pairs)")
        if self.format_steps < 0 or self.refine_steps < 0:
            raise ValueError(f"prototype steps must be >= 0 (format_steps={self.format_steps}, "
                             f"refine_steps={self.refine_steps})")


@dataclass
class Prototypes:
    """``u [d_model]`` and ``D [n_concepts, d_model]`` on the residual scale, rows in ``concepts`` order;
    ``history``: one dict per logged step; ``metrics``: the perfect-vision leaf and hypernym scores."""

    concepts: list[str]
    u: torch.Tensor
    D: torch.Tensor
    history: list[dict]
    metrics: dict

    def tokens(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``[n, d_model]`` image tokens ``u + D_c`` (all concepts, or ``rows``)."""
        D = self.D if rows is None else self.D[rows]
        return self.u + D

    def index(self, names: Sequence[str]) -> torch.Tensor:
        pos = {c: i for i, c in enumerate(self.concepts)}
        missing = [n for n in names if n not in pos]
        if missing:
            raise KeyError(f"{len(missing)} concepts have no prototype, e.g. {missing[:3]}")
        return torch.tensor([pos[n] for n in names])


def text_token_norm(lm) -> float:
    """Median norm of the LM's text-token input embeddings on the residual scale."""
    w = lm.hf.get_input_embeddings().weight
    return float(w.detach().float().norm(dim=-1).median()) * lm.embed_scale


class ImageTokenQuestions:
    """Runs "BOS, image token(s), question (, answer, EOS)" with given image-token vectors
    ``V``: ``[n, d_model]`` (one token per image) or ``[n, k, d_model]`` (k tokens), on the
    residual scale; row ``i`` of ``V`` is the image of question ``i``."""

    def __init__(self, lm, phrase):
        self.lm, self.phrase = lm, phrase
        self.tokens = QuestionTokens(lm.tokenizer)
        self.yes_no = torch.tensor([single_token_id(lm.tokenizer, " Yes"), single_token_id(lm.tokenizer, " No")])

    def _run(self, V: torch.Tensor, concepts: Sequence[str], answers: Sequence[str] | None):
        items = []
        for i, c in enumerate(concepts):
            segs = [Segment("bos"), Segment("image", image=i), Segment("text", ids=self.tokens(image_question(self.phrase(c))))]
            if answers is not None:
                segs.append(Segment("answer", ids=self.tokens(" " + answers[i])))
            items.append(segs)
        lm = self.lm
        k = V.shape[1] if V.ndim == 3 else 1
        V = V.reshape(-1, V.shape[-1])  # [n * k, d]: the slot order of build_batch
        b = build_batch(lm.tokenizer, items, k).to(lm.device)
        x = lm.embed_tokens(b.input_ids)
        x = torch.where((b.image_slot >= 0).unsqueeze(-1), V.to(x.dtype)[b.image_slot.clamp(min=0)], x)
        return b, lm(x, b.attention_mask)

    def loss(self, V: torch.Tensor, concepts: Sequence[str], answers: Sequence[str]) -> torch.Tensor:
        """Mean cross-entropy over answer and EOS tokens (the study's training loss)."""
        b, h = self._run(V, concepts, answers)
        predicts, targets = b.answer_targets()
        return nn.functional.cross_entropy(self.lm.unembed(h[predicts]).float(), targets)

    def margins(self, V: torch.Tensor, concepts: Sequence[str]) -> torch.Tensor:
        """``[n]`` log P(" Yes") - log P(" No") at the last question token."""
        b, h = self._run(V, concepts, None)
        last = h[torch.arange(len(concepts), device=h.device), b.last("text")]
        logits = self.lm.unembed(last, self.yes_no)
        return (logits[:, 0] - logits[:, 1]).float()


def _name_directions(lm, taxonomy, concepts: Sequence[str]) -> torch.Tensor:
    """``[n, d]`` centred, unit-norm mean input embeddings of each concept's name (" robin")."""
    tok, emb = lm.tokenizer, lm.hf.get_input_embeddings().weight.detach().float()
    rows = []
    for c in concepts:
        name = taxonomy.phrase(c).partition(" ")[2] or c
        rows.append(emb[tok(" " + name, add_special_tokens=False)["input_ids"]].mean(0))
    W = torch.stack(rows)
    return nn.functional.normalize(W - W.mean(0), dim=-1), W.mean(0)


def _pairs(concepts: Sequence[str], n: int, g: torch.Generator) -> tuple[torch.Tensor, list[str], list[str]]:
    """``n`` concept rows, each asked about itself (Yes) and a random other concept (No)."""
    C = len(concepts)
    rows = torch.randperm(C, generator=g)[:n]
    other = (rows + 1 + torch.randint(C - 1, (len(rows),), generator=g)) % C
    asked = [concepts[i] for i in rows.tolist()] + [concepts[i] for i in other.tolist()]
    return torch.cat([rows, rows]), asked, ["Yes"] * len(rows) + ["No"] * len(rows)


@torch.no_grad()
def score_prototypes(lm, taxonomy, protos: Prototypes, *, seed: int = 0, batch_size: int = 64) -> dict:
    """Perfect-vision scores: leaf F1 (each concept's own question and one random distractor
    leaf) and hypernym macro F1 (each (leaf, hypernym) pair and its distractor hypernym),
    with the prototype of the leaf as the image token. This is what the LM can do when the
    projector maps every image exactly onto its concept's prototype: a ceiling of the VLM."""
    ask = ImageTokenQuestions(lm, taxonomy.phrase)
    concepts, C = protos.concepts, len(protos.concepts)
    rng = random.Random(f"prototype-score-{seed}")
    dist = [rng.choice([x for x in concepts if x != c]) for c in concepts]
    T = protos.tokens().to(lm.device)

    def run(rows: list[int], asked: list[str]) -> torch.Tensor:
        return torch.cat([ask.margins(T[torch.tensor(rows[s:s + batch_size])], asked[s:s + batch_size])
                          for s in range(0, len(rows), batch_size)]).cpu()

    pos, neg = run(list(range(C)), list(concepts)), run(list(range(C)), dist)
    leaf_f1 = macro_f1(["Yes"] * C + ["No"] * C, ["Yes" if v > 0 else "No" for v in torch.cat([pos, neg]).tolist()])
    pairs = [(i, h, taxonomy.distractor(c, h)) for i, c in enumerate(concepts) for h in sorted(taxonomy.hypernyms_of(c))]
    out = {"leaf_f1": leaf_f1, "leaf_pairwise": 100.0 * float((pos > neg).float().mean()),
           "leaf_yes_rate": 100.0 * float((torch.cat([pos, neg]) > 0).float().mean())}
    if pairs:
        hp = run([p[0] for p in pairs], [p[1] for p in pairs])
        hn = run([p[0] for p in pairs], [p[2] for p in pairs])
        by: dict[str, tuple[list[str], list[str]]] = {}
        for (_, h, _), a, b in zip(pairs, hp.tolist(), hn.tolist()):
            t, p = by.setdefault(h, ([], []))
            t += ["Yes", "No"]
            p += ["Yes" if a > 0 else "No", "Yes" if b > 0 else "No"]
        out.update(hypernym_macro_f1=float(np.mean([macro_f1(t, p) for t, p in by.values()])),
                   hypernym_pairwise=100.0 * float((hp > hn).float().mean()))
    Z = nn.functional.normalize(T.float(), dim=-1)
    out["mean_pairwise_cosine"] = float(((Z @ Z.T).sum() - C) / (C * (C - 1)))
    return out


def learn_prototypes(lm, taxonomy, concepts: Sequence[str], cfg: PrototypeConfig = PrototypeConfig(), *,
                     progress: bool = True, log_every: int = 10, stage_scores: bool = False) -> Prototypes:
    """Learn the prototypes of ``concepts`` for the frozen ``lm`` (:class:`HookedLM`); see the module doc.
    ``stage_scores``: also score the table after stages 1 and 2 (``metrics["stages"]``; slower)."""
    concepts = list(concepts)
    if len(concepts) < 2:
        raise ValueError(f"prototypes need at least 2 concepts, got {len(concepts)}")
    dev = lm.device
    ask = ImageTokenQuestions(lm, taxonomy.phrase)
    tn = text_token_norm(lm)
    names, mean_name = _name_directions(lm, taxonomy, concepts)
    names = names.to(dev)
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    half = cfg.batch_size // 2
    t0 = time.perf_counter()

    # 1. the shared format vector, with name-direction parts of size r_format present
    u = (mean_name / mean_name.norm() * tn).to(dev).clone().requires_grad_(True)
    bar = tqdm(total=cfg.format_steps + cfg.refine_steps, desc=f"prototypes {lm.name}", disable=not progress, unit="step")

    def fit(stage: str, params: list[torch.Tensor], lr: float, steps: int, tokens) -> None:
        """``steps`` Adam steps of the LM loss on fresh Yes/No pairs; ``tokens(rows)`` gives the image tokens."""
        opt = torch.optim.Adam(params, lr=lr)
        for step in range(1, steps + 1):
            rows, asked, answers = _pairs(concepts, half, g)
            loss = ask.loss(tokens(rows.to(dev)), asked, answers)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
            bar.set_postfix(stage=stage, loss=f"{loss.item():.3f}")
            if step % log_every == 0 or step == steps:
                history.append({"stage": stage, "step": step, "loss": loss.item(), "seconds": time.perf_counter() - t0})

    fit("format", [u], cfg.format_lr, cfg.format_steps, lambda rows: u + cfg.r_format * tn * names[rows])
    u = u.detach()

    # 2. linearised concept directions: gradients of the Yes-No margin at u
    grads = []
    for s in range(0, len(concepts), 32):
        chunk = concepts[s:s + 32]
        V = u.expand(len(chunk), -1).clone().requires_grad_(True)
        ask.margins(V, chunk).sum().backward()
        grads.append(V.grad.detach())
    G = torch.cat(grads)
    D = cfg.r_concept * tn * nn.functional.normalize(G - G.mean(0), dim=-1)
    stages, t_scoring = {}, time.perf_counter()
    if stage_scores:
        cpu = lambda t: t.detach().float().cpu()
        stages["format"] = score_prototypes(lm, taxonomy, Prototypes(concepts, cpu(u), cpu(0 * D), [], {}), seed=cfg.seed)
        stages["format+names"] = score_prototypes(
            lm, taxonomy, Prototypes(concepts, cpu(u), cpu(cfg.r_format * tn * names), [], {}), seed=cfg.seed)
        stages["linearised"] = score_prototypes(lm, taxonomy, Prototypes(concepts, cpu(u), cpu(D), [], {}), seed=cfg.seed)
    t0 += time.perf_counter() - t_scoring  # the clock counts learning, not this scoring

    # 3. refine u and every D_c with the LM loss on leaf questions
    u, D = u.clone().requires_grad_(True), D.clone().requires_grad_(True)
    fit("refine", [u, D], cfg.refine_lr, cfg.refine_steps, lambda rows: u + D[rows])
    bar.close()
    protos = Prototypes(concepts, u.detach().float().cpu(), D.detach().float().cpu(), history, {})
    seconds = time.perf_counter() - t0
    protos.metrics = {**score_prototypes(lm, taxonomy, protos, seed=cfg.seed), "seconds": seconds}
    if stages:
        protos.metrics["stages"] = stages
    return protos


def prototype_key(lm, taxonomy, concepts: Sequence[str], cfg: PrototypeConfig) -> str:
    """Hash of everything a prototype table depends on."""
    return stable_hash({"format": FORMAT, "lm": lm.name, "dtype": str(lm.dtype), "config": asdict(cfg),
                        "questions": [image_question(taxonomy.phrase(c)) for c in concepts],
                        "template": image_question("{x}")}, n=20)


def cached_prototypes(lm, taxonomy, concepts: Sequence[str], cfg: PrototypeConfig = PrototypeConfig(), *,
                      folder: Path | None = None, progress: bool = True) -> Prototypes:
    """:func:`learn_prototypes`, from ``$INTERP_CACHE/prototypes`` when a table with the same key
    exists and reads back whole; otherwise learned and stored atomically."""
    concepts = list(concepts)
    key = prototype_key(lm, taxonomy, concepts, cfg)
    path = (Path(folder) if folder is not None else cache_dir("prototypes")) / f"{key}.safetensors"
    if path.exists():
        try:
            tensors, meta = load_tensors(path)
            if meta.get("concepts") == concepts and meta.get("key") == key:
                return Prototypes(concepts, tensors["u"], tensors["D"], meta["history"], meta["metrics"])
        except Exception as e:  # unreadable: relearn
            print(f"[prototypes] cache {path} is unreadable ({e}); relearning")
    protos = learn_prototypes(lm, taxonomy, concepts, cfg, progress=progress)
    save_tensors(path, {"u": protos.u, "D": protos.D},
                 {"key": key, "lm": lm.name, "concepts": concepts, "config": asdict(cfg), "history": protos.history,
                  "metrics": protos.metrics, "environment": environment()})
    return protos
