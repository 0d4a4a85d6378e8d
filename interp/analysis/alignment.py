"""Visual alignment of a frozen LM (brief, section D; ShareLock-style): pure functions.

A frozen LM reads a class prompt ("A photo of a robin"); its residual at the last token
(``blocks.{i}.hook_resid_post``, one vector per layer) is the class's *text feature*. A
frozen image encoder gives pooled *image features*. A small head is trained with a
CLIP-style contrastive loss on some classes; the **alignment score** is zero-shot top-1
accuracy on classes that never appeared in training (images of a held-out class are
matched against the text features of all held-out classes).

Pieces (each usable alone):

- :func:`class_prompts`, :func:`lm_class_features` (every layer in one pass, ``[layers,
  n_classes, d_model]``), :func:`cached_lm_class_features` (content-hashed safetensors),
  :func:`pool_image_features`;
- :func:`class_split`: strict class split by concept, or by whole top-level hypernym;
- :class:`AlignHead` (language side: MLP with BatchNorm, ReLU, dropout, then L2
  normalisation; image side: identity or linear), :func:`info_nce`, :func:`train_head`
  (AdamW, warmup + cosine, fixed logit scale);
- :func:`zero_shot`: top-k accuracy over a set of classes, with chance levels.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from interp.io import load_valid_tensor, save_tensors, stable_hash
from interp.schedule import warmup_cosine


DEFAULT_TEMPLATE = "A photo of {phrase}"
POOLS = ("last", "mean")
SPLIT_MODES = ("concept", "hypernym")
FEATURE_FORMAT = 1


# ------------------------------------------------------------------ prompts
def class_prompts(classes: Sequence[str], phrase, template: str = DEFAULT_TEMPLATE) -> list[str]:
    """One prompt per class: ``template`` with ``{phrase}`` (the class with its article, from
    ``phrase(name)``, e.g. the taxonomy's ``phrase``: "a robin", "an apple", "bacon") and/or
    ``{name}`` (the bare display name) filled in."""
    if "{phrase}" not in template and "{name}" not in template:
        raise ValueError(f"prompt template {template!r} has neither {{phrase}} nor {{name}}: "
                         "e.g. 'A photo of {phrase}'")
    from interp.data.taxonomy import display_name

    return [template.format(phrase=phrase(c), name=display_name(c)) for c in classes]


# -------------------------------------------------------------- LM features
@torch.no_grad()
def lm_class_features(lm, prompts: Sequence[str], *, pool: str = "last", batch_size: int = 64,
                      progress: bool = False) -> torch.Tensor:
    """Residual stream of every block for every prompt, in one forward pass per batch.

    Each prompt runs as [BOS, prompt tokens] through ``lm`` (a :class:`HookedLM`).
    ``pool="last"``: the residual at the last prompt token; ``"mean"``: the mean over the
    prompt tokens (BOS excluded).

    Returns:
        ``[n_layers, n_prompts, d_model]`` float32 on the CPU; row ``i`` is
        ``blocks.{i}.hook_resid_post``.
    """
    from tqdm.auto import tqdm

    from interp.sequence import Modality, Segment, build_batch

    if pool not in POOLS:
        raise ValueError(f"pool {pool!r}: valid values are {list(POOLS)}")
    if not prompts:
        raise ValueError("no prompts: pass at least one class prompt")
    out = torch.empty(lm.n_layers, len(prompts), lm.d_model)
    for s in tqdm(range(0, len(prompts), batch_size), desc=f"LM features {lm.name}", disable=not progress):
        chunk = list(prompts[s:s + batch_size])
        batch = build_batch(lm.tokenizer, [[Segment("bos"), Segment("text", p)] for p in chunk], 0).to(lm.device)
        text = batch.mask(Modality.TEXT).to(lm.dtype)  # [b, pos]
        last = batch.last(Modality.TEXT)
        rows = torch.arange(len(chunk), device=lm.device)

        def grab(layer: int, t: torch.Tensor, _s: int = s, _n: int = len(chunk)) -> None:
            v = t[rows, last] if pool == "last" else (t * text[..., None]).sum(1) / text.sum(1, keepdim=True)
            out[layer, _s:_s + _n] = v.float().cpu()

        hooks = [(f"blocks.{i}.hook_resid_post", _layer_hook(i, grab)) for i in range(lm.n_layers)]
        lm(lm.embed_tokens(batch.input_ids), batch.attention_mask, fwd_hooks=hooks)
    if not torch.isfinite(out).all():
        raise FloatingPointError(f"non-finite LM features from {lm.name}")
    return out


def _layer_hook(layer: int, grab):
    """A read-only hook passing ``(layer, tensor)`` to ``grab``."""

    def fn(t: torch.Tensor, hook) -> None:
        grab(layer, t)

    return fn


def feature_cache_key(lm_tag: str, prompts: Sequence[str], pool: str, dtype: str = "float32") -> str:
    """Content hash of what a cached LM feature file depends on."""
    return stable_hash({"format": FEATURE_FORMAT, "lm": lm_tag, "prompts": list(prompts), "pool": pool,
                        "dtype": dtype}, n=24)


def feature_cache_path(cache_dir: Path, lm_tag: str, prompts: Sequence[str], pool: str,
                       dtype: str = "float32") -> Path:
    safe = lm_tag.replace("/", "__").replace("+", "_")
    return Path(cache_dir) / safe / f"{feature_cache_key(lm_tag, prompts, pool, dtype)}.safetensors"


def load_cached_features(path: Path, lm_tag: str, prompts: Sequence[str], pool: str) -> torch.Tensor | None:
    """The cached ``[layers, n, d]`` features at ``path`` if valid (same LM, prompts, pool,
    finite), else None (a stale or corrupt file is logged and ignored)."""
    path = Path(path)
    if not path.exists():
        return None
    return load_valid_tensor(path, {"lm": lm_tag, "prompts": list(prompts), "pool": pool}, (None, len(prompts), None),
                             what="LM feature cache")


def cached_lm_class_features(lm, prompts: Sequence[str], *, cache_dir: Path, pool: str = "last",
                             batch_size: int = 64, progress: bool = False,
                             tag: str | None = None) -> tuple[torch.Tensor, Path]:
    """:func:`lm_class_features`, stored once per (LM tag, prompts, pool, dtype) as
    safetensors under ``cache_dir``; ``tag`` names the weights (default ``lm.name``, which
    carries the random-init seed). Returns (features ``[layers, n, d]``, path)."""
    tag = tag or lm.name
    dtype = str(lm.dtype).removeprefix("torch.")
    path = feature_cache_path(cache_dir, tag, prompts, pool, dtype)
    feats = load_cached_features(path, tag, prompts, pool)
    if feats is None:
        feats = lm_class_features(lm, prompts, pool=pool, batch_size=batch_size, progress=progress)
        save_tensors(path, {"features": feats}, {"format": FEATURE_FORMAT, "lm": tag, "prompts": list(prompts),
                                                 "pool": pool, "dtype": dtype, "shape": list(feats.shape)})
    return feats, path


def pool_image_features(features: torch.Tensor) -> torch.Tensor:
    """Mean over encoder tokens: ``[n_images, tokens, d_img] -> [n_images, d_img]`` (2-D input
    is returned as float32)."""
    if features.ndim == 2:
        return features.float()
    if features.ndim != 3:
        raise ValueError(f"image features must be [n, tokens, d] or [n, d], got shape {tuple(features.shape)}")
    return features.float().mean(1)


# -------------------------------------------------------------------- split
@dataclass(frozen=True)
class ClassSplit:
    """Disjoint train and held-out (test) classes.

    ``held_out_groups`` names the top-level hypernyms held out in ``"hypernym"`` mode (empty
    in ``"concept"`` mode); ``dropped`` are classes used on neither side (hypernym mode: a
    class with a held-out AND a training top-level hypernym, which would otherwise tie the
    two sides together)."""

    train: tuple[str, ...]
    test: tuple[str, ...]
    mode: str
    seed: int
    held_out_groups: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()


NO_GROUP = "<none>"


def top_hypernyms(taxonomy, leaf: str) -> frozenset[str]:
    """The top-level hypernyms of a leaf: the root of the chain of each of its hypernyms
    (so a leaf filed only under "mammal" still counts as an "animal"); empty when it has
    no hypernym."""
    return frozenset(taxonomy.chain(h)[-1] for h in taxonomy.hypernyms_of(leaf))


def class_split(classes: Sequence[str], *, mode: str = "concept", test_frac: float = 0.25, seed: int = 0,
                taxonomy=None, min_test: int = 5, max_test_frac: float | None = None) -> ClassSplit:
    """A strict, seeded class split: no held-out class is ever a training class.

    - ``"concept"``: about ``test_frac`` of the classes drawn at random are held out (they
      may share hypernyms with training classes: a held-out robin next to a trained
      sparrow). Classes with the same display name ("bracelet1", "bracelet2"), i.e. the
      same prompt, always fall on the same side.
    - ``"hypernym"``: whole top-level hypernyms are held out, drawn at random until at least
      ``test_frac`` of the classes are held out (a group that would push the held-out share
      past ``max_test_frac``, default ``min(0.5, 2 * test_frac)``, is passed over). A class
      whose top-level hypernyms are all held out is a test class; one with none held out a
      training class; one with both is dropped. So the top-level hypernyms of the training
      classes and of the test classes are disjoint. Classes with no hypernym form their own
      group ``"<none>"``. Needs ``taxonomy``.

    Raises ``ValueError`` when fewer than ``min_test`` held-out or 2 training classes result.
    """
    from interp.data.taxonomy import display_name

    classes = sorted(set(classes))
    n = len(classes)
    if mode not in SPLIT_MODES:
        raise ValueError(f"split mode {mode!r}: valid modes are {list(SPLIT_MODES)}")
    if not 0.0 < test_frac < 1.0:
        raise ValueError(f"test_frac={test_frac!r}: must be in (0, 1)")
    max_frac = min(0.5, 2 * test_frac) if max_test_frac is None else max_test_frac
    if not test_frac <= max_frac < 1.0:
        raise ValueError(f"max_test_frac={max_test_frac!r}: must be in [test_frac={test_frac}, 1)")
    rng = random.Random(stable_hash(["alignment-split", mode, seed, test_frac]))
    dropped: set[str] = set()
    if mode == "concept":
        by_name: dict[str, list[str]] = {}
        for c in classes:
            by_name.setdefault(display_name(c), []).append(c)
        names = sorted(by_name)
        rng.shuffle(names)
        test: set[str] = set()
        for name in names:
            if len(test) >= round(test_frac * n):
                break
            test.update(by_name[name])
        groups: tuple[str, ...] = ()
    else:
        if taxonomy is None:
            raise ValueError("split mode 'hypernym' needs the taxonomy")
        tops = {c: top_hypernyms(taxonomy, c) or frozenset({NO_GROUP}) for c in classes}
        names = sorted({h for hs in tops.values() for h in hs})
        rng.shuffle(names)
        held: set[str] = set()
        test = set()
        for h in names:
            if len(test) >= test_frac * n:
                break
            trial = held | {h}
            got = {c for c in classes if tops[c] <= trial}
            if len(got) > max_frac * n:
                continue
            held, test = trial, got
        dropped = {c for c in classes if tops[c] & held and not tops[c] <= held}
        groups = tuple(sorted(held))
    train = tuple(c for c in classes if c not in test and c not in dropped)
    if len(test) < min_test or len(train) < 2:
        raise ValueError(f"{mode} split (test_frac={test_frac}, seed={seed}) of {n} classes holds out {len(test)} "
                         f"and trains on {len(train)}: need >= {min_test} held-out and >= 2 training classes")
    return ClassSplit(train, tuple(sorted(test)), mode, seed, groups, tuple(sorted(dropped)))


# --------------------------------------------------------------------- head
@dataclass(frozen=True)
class HeadConfig:
    """The alignment head and its optimisation.

    Language side: ``text_layers`` linear layers (``text_hidden`` wide) with BatchNorm,
    ReLU and dropout between them, then L2 normalisation. Image side: ``"identity"``
    (output width = image feature width) or ``"linear"`` (to ``out_dim``), then L2
    normalisation. Inputs are standardised (text: per-dimension z-score; image: centred)
    with statistics of the *training* classes only. Loss: symmetric InfoNCE with the fixed
    ``logit_scale``. Each step draws ``batch_size`` distinct training classes and one
    random image of each (no duplicate class in a batch, so no false negatives). AdamW,
    linear warmup then cosine decay.
    """

    text_layers: int = 4
    text_hidden: int = 1024
    dropout: float = 0.2
    image_side: str = "identity"
    out_dim: int = 0  # 0: the image feature width (required for identity)
    standardize_text: bool = True
    center_images: bool = True
    logit_scale: float = 1 / 0.07
    steps: int = 300
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_frac: float = 0.05
    clip: float = 1.0

    def __post_init__(self) -> None:
        if self.image_side not in ("identity", "linear"):
            raise ValueError(f"image_side {self.image_side!r}: valid values are ['identity', 'linear']")
        if self.text_layers < 1:
            raise ValueError(f"text_layers={self.text_layers}: must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout}: must be in [0, 1)")
        if self.steps < 1 or self.batch_size < 2 or self.lr <= 0 or self.logit_scale <= 0:
            raise ValueError(f"invalid HeadConfig: steps={self.steps} (>=1), batch_size={self.batch_size} (>=2), "
                             f"lr={self.lr} (>0), logit_scale={self.logit_scale} (>0)")
        if self.out_dim < 0 or not 0.0 <= self.warmup_frac < 1.0:
            raise ValueError(f"invalid HeadConfig: out_dim={self.out_dim} (>=0), warmup_frac={self.warmup_frac} (0..1)")


class AlignHead(nn.Module):
    """Text MLP + image identity/linear, both L2-normalised into one space.

    ``encode_text([n, d_text]) -> [n, d_out]``, ``encode_image([n, d_img]) -> [n, d_out]``.
    """

    def __init__(self, d_text: int, d_img: int, cfg: HeadConfig):
        super().__init__()
        d_out = cfg.out_dim or d_img
        if cfg.image_side == "identity" and d_out != d_img:
            raise ValueError(f"image_side='identity' needs out_dim = the image width {d_img} (or 0), got {cfg.out_dim}")
        layers: list[nn.Module] = []
        d = d_text
        for _ in range(cfg.text_layers - 1):
            layers += [nn.Linear(d, cfg.text_hidden), nn.BatchNorm1d(cfg.text_hidden), nn.ReLU(),
                       nn.Dropout(cfg.dropout)]
            d = cfg.text_hidden
        layers.append(nn.Linear(d, d_out))
        self.text = nn.Sequential(*layers)
        self.image = nn.Identity() if cfg.image_side == "identity" else nn.Linear(d_img, d_out)
        self.register_buffer("text_mean", torch.zeros(d_text))
        self.register_buffer("text_std", torch.ones(d_text))
        self.register_buffer("image_mean", torch.zeros(d_img))

    def fit_stats(self, text: torch.Tensor, images: torch.Tensor, cfg: HeadConfig) -> None:
        """Input statistics from training data only: ``text [n_cls, d_text]``, ``images [n_img, d_img]``."""
        if cfg.standardize_text:
            self.text_mean.copy_(text.mean(0))
            std = text.std(0, unbiased=False).clamp_min(1e-6) if len(text) > 1 else torch.ones_like(text[0])
            self.text_std.copy_(std)
        if cfg.center_images:
            self.image_mean.copy_(images.mean(0))

    def encode_text(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text((x - self.text_mean) / self.text_std), dim=-1)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(x - self.image_mean), dim=-1)


def info_nce(text: torch.Tensor, image: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """Symmetric CLIP loss of matched rows: ``text [b, d]``, ``image [b, d]`` (L2-normalised)
    -> scalar; row ``j`` of each is the positive pair, every other row a negative."""
    if text.shape != image.shape:
        raise ValueError(f"text {tuple(text.shape)} and image {tuple(image.shape)} embeddings must match")
    logits = logit_scale * text @ image.T
    target = torch.arange(len(text), device=text.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


@dataclass
class HeadResult:
    head: AlignHead
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_head(text_feats: torch.Tensor, image_feats: torch.Tensor, image_class: torch.Tensor,
               train_classes: Sequence[int], cfg: HeadConfig, *, seed: int = 0,
               device: str | torch.device = "cpu") -> HeadResult:
    """Train an :class:`AlignHead` on the training classes only.

    Args:
        text_feats: ``[n_classes, d_text]`` one text feature per class (all classes).
        image_feats: ``[n_images, d_img]`` pooled image features (all images).
        image_class: ``[n_images]`` class index of each image (into ``text_feats``).
        train_classes: the class indices the head may see; images of other classes are
            never touched (their statistics included).
        seed: seeds the head's initialisation, dropout and the batch draws.
    """
    import time

    t0 = time.perf_counter()
    train_classes = sorted(set(int(c) for c in train_classes))
    if len(train_classes) < 2:
        raise ValueError(f"need >= 2 training classes, got {len(train_classes)}")
    imgs_of = {c: torch.nonzero(image_class == c).flatten() for c in train_classes}
    empty = [c for c, v in imgs_of.items() if len(v) == 0]
    if empty:
        raise ValueError(f"{len(empty)} training classes have no image, e.g. class index {empty[0]}")
    cls = torch.tensor(train_classes)
    train_imgs = torch.cat([imgs_of[c] for c in train_classes])
    counts = torch.tensor([len(imgs_of[c]) for c in train_classes])
    table = nn.utils.rnn.pad_sequence([imgs_of[c] for c in train_classes], batch_first=True)  # [n_cls, max_imgs]
    text_feats, image_feats = text_feats.float().to(device), image_feats.float().to(device)
    b = min(cfg.batch_size, len(train_classes))
    gen = torch.Generator().manual_seed(int(stable_hash(["alignment-batches", seed]), 16) % (2**63))
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = AlignHead(text_feats.shape[1], image_feats.shape[1], cfg).to(device)
        head.fit_stats(text_feats[cls.to(device)], image_feats[train_imgs.to(device)], cfg)
        opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        warmup = int(cfg.warmup_frac * cfg.steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.steps, warmup))
        head.train()
        for _ in range(cfg.steps):
            j = torch.randperm(len(cls), generator=gen)[:b]
            pick = cls[j]
            img = table[j, (torch.rand(b, generator=gen) * counts[j]).long()]
            t = head.encode_text(text_feats[pick.to(device)])
            i = head.encode_image(image_feats[img.to(device)])
            loss = info_nce(t, i, cfg.logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.clip)
            opt.step()
            sched.step()
            losses.append(loss.item())
    head.eval()
    return HeadResult(head, losses, time.perf_counter() - t0)


# --------------------------------------------------------------------- eval
@torch.no_grad()
def zero_shot(head: AlignHead, text_feats: torch.Tensor, image_feats: torch.Tensor, image_class: torch.Tensor,
              classes: Sequence[int], *, ks: Sequence[int] = (1, 5)) -> dict[str, Any]:
    """Zero-shot classification among ``classes``: every image of those classes against the
    text embeddings of exactly those classes.

    Returns top-k accuracy x100 over images (``top1``, ``top5``...), class-balanced top-1
    (``macro_top1``: mean over classes of their images' accuracy), chance levels
    (``chance1 = 100 / n_classes``...), ``n_classes``, ``n_images``, the per-image true class
    (``true``: position in ``classes``) and ranked predictions (``pred``: ``[n_images,
    max k]`` positions in ``classes``)."""
    classes = [int(c) for c in classes]
    if len(classes) < 2:
        raise ValueError(f"zero-shot needs >= 2 classes, got {len(classes)}")
    head.eval()
    cls = torch.tensor(classes)
    pos = {c: j for j, c in enumerate(classes)}
    rows = torch.nonzero(torch.isin(image_class, cls)).flatten()
    if len(rows) == 0:
        raise ValueError("no image belongs to the evaluated classes")
    dev = next(head.parameters()).device
    t = head.encode_text(text_feats.float()[cls].to(dev))
    i = head.encode_image(image_feats.float()[rows].to(dev))
    sims = (i @ t.T).cpu()  # [n_images, n_classes]
    true = torch.tensor([pos[int(c)] for c in image_class[rows]])
    kmax = min(max(ks), len(classes))
    pred = sims.topk(kmax, dim=1).indices
    out: dict[str, Any] = {"n_classes": len(classes), "n_images": len(rows)}
    for k in ks:
        kk = min(k, len(classes))
        hit = (pred[:, :kk] == true[:, None]).any(1).float()
        out[f"top{k}"] = 100.0 * float(hit.mean())
        out[f"chance{k}"] = 100.0 * kk / len(classes)
    hit1 = (pred[:, 0] == true).float()
    per_class = [float(hit1[true == j].mean()) for j in range(len(classes)) if (true == j).any()]
    out["macro_top1"] = 100.0 * float(sum(per_class) / len(per_class))
    out["true"] = true.tolist()
    out["pred"] = pred.tolist()
    return out


def config_dict(cfg: HeadConfig) -> dict[str, Any]:
    return asdict(cfg)


def confusion(true: Sequence[int], pred_top1: Sequence[int], n: int) -> torch.Tensor:
    """Row-normalised confusion ``[n, n]``: row = true class, column = top-1 prediction."""
    m = torch.zeros(n, n)
    for a, b in zip(true, pred_top1):
        m[a, b] += 1
    return m / m.sum(1, keepdim=True).clamp_min(1)


def group_confusion(true_names: Sequence[str], pred_names: Sequence[str],
                    groups: Mapping[str, Sequence[str]]) -> tuple[list[str], torch.Tensor]:
    """Confusion between groups (e.g. top-level hypernyms): a class in several groups
    spreads its count evenly. Returns (group names, row-normalised ``[g, g]``)."""
    names = sorted({g for gs in groups.values() for g in gs})
    idx = {g: i for i, g in enumerate(names)}
    m = torch.zeros(len(names), len(names))
    for a, b in zip(true_names, pred_names):
        ga, gb = list(groups[a]), list(groups[b])
        for x in ga:
            for y in gb:
                m[idx[x], idx[y]] += 1.0 / (len(ga) * len(gb))
    return names, m / m.sum(1, keepdim=True).clamp_min(1e-12)
