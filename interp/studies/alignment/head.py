"""The visual-alignment head (ShareLock-style): language side an MLP with BatchNorm, ReLU, dropout
and L2 normalisation, image side identity or linear; trained with a CLIP-style contrastive loss
(AdamW, warmup + cosine, fixed logit scale) on the training classes, scored zero-shot on the
held-out ones."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from interp.io import stable_hash
from interp.schedule import warmup_cosine


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
