"""The trained part of the VLM: image features -> LM input embeddings.

``linear`` is one Linear(d_img -> d_lm); ``mlp2x_gelu`` is LLaVA's Linear, GELU, Linear;
``mlp2x_softmax`` is Linear, softmax, Linear: each output token is a convex combination of the
second layer's columns (plus its bias), so its size cannot drift with the confidence of the
first layer (what the prototype warm start of :mod:`interp.warmstart` maps onto concept
prototypes). ``mlp2x_relmax`` is Linear, relmax, Linear with ``relmax(z)_c = exp(z_c - max z)``
(the softmax divided by its largest entry): the top hidden unit at full strength and every
other at its probability relative to the top, so a token superposes the columns of all the
plausible hidden units instead of averaging them. Optional pooling (mean, or max) reduces the encoder's patch grid (e.g. 49 -> 16
tokens) before projecting. A checkpoint (safetensors) records the projector type, dims and the encoder
and LM it was trained for; loading it against another LM or encoder fails, naming both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from einops import rearrange
from torch import nn


from interp.io import NotSafetensorsError, load_tensors, read_meta, save_tensors

Kind = Literal["linear", "mlp2x_gelu", "mlp2x_softmax", "mlp2x_relmax"]
KINDS: tuple[str, ...] = ("linear", "mlp2x_gelu", "mlp2x_softmax", "mlp2x_relmax")
MIXTURE_KINDS: tuple[str, ...] = ("mlp2x_softmax", "mlp2x_relmax")  # hidden units are weights over the second layer's columns
POOLS: tuple[str, ...] = ("mean", "max")


class CheckpointMismatchError(ValueError):
    """A projector checkpoint was trained for another LM or encoder."""


@dataclass(frozen=True)
class ProjectorConfig:
    """Shape and provenance of a projector.

    ``n_tokens_in`` is the encoder's token count; ``pool_to`` (optional) the number of
    image tokens the LM sees (a square grid pooled from a square grid, else 1-D pooling);
    ``pool`` how: "mean" or "max" over each pooled cell.
    """

    kind: str
    d_in: int
    d_out: int
    n_tokens_in: int
    encoder: str
    lm: str
    pool_to: int | None = None
    pool: str = "mean"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown projector kind {self.kind!r}: valid kinds are {list(KINDS)}")
        if self.pool not in POOLS:
            raise ValueError(f"unknown pooling {self.pool!r}: valid are {list(POOLS)}")
        if self.pool_to is not None and not 1 <= self.pool_to <= self.n_tokens_in:
            raise ValueError(f"pool_to={self.pool_to} must be in 1..{self.n_tokens_in} (the encoder's tokens)")

    @property
    def n_tokens_out(self) -> int:
        return self.pool_to or self.n_tokens_in


def pool_tokens(x: torch.Tensor, n_out: int, mode: str = "mean") -> torch.Tensor:
    """Average- (``mode="mean"``) or max-pool patch tokens: ``[batch, n_in, d] -> [batch, n_out, d]``.

    A square grid pooled to a square grid uses 2-D adaptive pooling (keeps layout);
    otherwise 1-D adaptive pooling over the token order.
    """
    n_in = x.shape[1]
    if n_out == n_in:
        return x
    if mode not in POOLS:
        raise ValueError(f"unknown pooling {mode!r}: valid are {list(POOLS)}")
    g_in, g_out = math.isqrt(n_in), math.isqrt(n_out)
    if g_in * g_in == n_in and g_out * g_out == n_out:
        grid = rearrange(x, "b (h w) d -> b d h w", h=g_in)
        f2 = nn.functional.adaptive_avg_pool2d if mode == "mean" else nn.functional.adaptive_max_pool2d
        return rearrange(f2(grid, g_out), "b d h w -> b (h w) d")
    f1 = nn.functional.adaptive_avg_pool1d if mode == "mean" else nn.functional.adaptive_max_pool1d
    return rearrange(f1(rearrange(x, "b n d -> b d n"), n_out), "b d n -> b n d")


class RelMax(nn.Module):
    """``exp(z - max z)`` over the last axis: the softmax divided by its largest entry (the top
    entry is 1, the others their probability relative to the top)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.exp(z - z.amax(dim=-1, keepdim=True))


def hidden_activation(kind: str) -> nn.Module:
    """The hidden nonlinearity of a two-layer projector ``kind``."""
    acts = {"mlp2x_gelu": nn.GELU, "mlp2x_softmax": lambda: nn.Softmax(dim=-1), "mlp2x_relmax": RelMax}
    if kind not in acts:
        raise ValueError(f"projector kind {kind!r} has no hidden layer: two-layer kinds are {sorted(acts)}")
    return acts[kind]()


class Projector(nn.Module):
    """Image features ``[batch, n_tokens_in, d_in]`` -> ``[batch, n_tokens_out, d_out]``."""

    def __init__(self, config: ProjectorConfig):
        super().__init__()
        self.config = config
        if config.kind == "linear":
            self.net = nn.Sequential(nn.Linear(config.d_in, config.d_out))
        else:
            self.net = nn.Sequential(nn.Linear(config.d_in, config.d_out), hidden_activation(config.kind),
                                     nn.Linear(config.d_out, config.d_out))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 3 or features.shape[-1] != self.config.d_in:
            raise ValueError(
                f"projector expects features [batch, tokens, {self.config.d_in}] from {self.config.encoder}; "
                f"got shape {tuple(features.shape)}"
            )
        if self.config.pool_to is not None:
            features = pool_tokens(features, self.config.pool_to, self.config.pool)
        return self.net(features.to(self.net[0].weight.dtype))

    # ------------------------------------------------------------ checkpoints
    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write weights and config (and ``extra`` provenance) atomically as safetensors."""
        meta = {"projector": asdict(self.config), "extra": extra or {}}
        save_tensors(path, dict(self.state_dict()), meta)

    @classmethod
    def read_config(cls, path: str | Path) -> "ProjectorConfig":
        """A checkpoint's :class:`ProjectorConfig` from its header alone (no weights read, no
        model loaded): what the CLIs check before loading anything."""
        return cls._read_header(path)[0]

    @staticmethod
    def _read_header(path: str | Path) -> tuple["ProjectorConfig", dict[str, Any]]:
        """(config, interp metadata) of a checkpoint, from its safetensors header only."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no projector checkpoint at {path}")
        try:
            meta = read_meta(path)
        except NotSafetensorsError as e:
            raise ValueError(f"{path} is not an interp projector checkpoint (only safetensors are read; pickles are "
                             f"refused): {e}") from None
        if "projector" not in meta:
            raise ValueError(f"{path} is not an interp projector checkpoint (no 'projector' metadata)")
        return ProjectorConfig(**meta["projector"]), meta

    @classmethod
    def load(
        cls, path: str | Path, *, lm: str | None = None, encoder: str | None = None
    ) -> tuple["Projector", dict[str, Any]]:
        """Load a checkpoint; ``lm``/``encoder`` (if given) must match what it was trained for
        (checked from the header, before the weights are read)."""
        config, meta = cls._read_header(path)
        problems = []
        if lm is not None and config.lm != lm:
            problems.append(f"it was trained for LM {config.lm!r}, not {lm!r}")
        if encoder is not None and config.encoder != encoder:
            problems.append(f"it was trained for encoder {config.encoder!r}, not {encoder!r}")
        if problems:
            raise CheckpointMismatchError(f"projector checkpoint {path}: " + "; ".join(problems))
        proj = cls(config)
        proj.load_state_dict(load_tensors(path)[0])
        return proj, meta.get("extra", {})
