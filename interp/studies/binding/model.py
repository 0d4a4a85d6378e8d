"""The decoder trained from scratch: a seeded HF ``LlamaForCausalLM`` plus a linear projector
for image (or noise) patch tokens, with a hooked view for the toolkit's analyses.

Training runs the plain HF forward (SDPA attention, no hooks: the fast path). Analyses call
:meth:`BindingModel.hooked`, which boots the toolkit's :class:`~interp.models.hooked.HookedLM`
(TransformerLens bridge, canonical hook names ``blocks.{i}.hook_resid_post``,
``blocks.{i}.attn.hook_pattern``...) over a frozen copy of the same weights, so the
training model is never switched to eager attention or wrapped.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from interp.models.hooked import HookedLM
from interp.models.lm import LoadedLM
from interp.models.registry import ModelSpec
from interp.studies.binding.bank import token_stats
from interp.studies.binding.task import Layout, Vocab


#: how external tokens enter the projector (see :class:`ModelConfig`)
EXT_NORMS = ("none", "standardise", "text")


@dataclass(frozen=True)
class ModelConfig:
    """The brief's decoder: 12 layers, d_model 128, 4 heads, FFN 512, rotary positions.

    ``d_ext``: width of the external (encoder) tokens the projector maps into ``d_model``.
    ``ext_norm``: ``"none"``, ``"standardise"`` (the external tokens standardised per dimension
    with the training bank's mean and standard deviation before the projector;
    :meth:`BindingModel.fit_ext_norm`; the statistics are saved with the weights) or
    ``"text"`` (standardised, and the projector rescaled when fitted so that its outputs start
    at the median norm of the trained text embeddings). Lite0's block-7 tokens share a mean of
    norm ~46 against a spread of ~29, and the default projector's output starts at 35x the norm of
    a trained text embedding, so the decoder's first block can barely change a picture token's
    residual (docs/binding.md).
    ``tie_embeddings``: the LM head shares the input embedding matrix (the brief's decoder does
    not say; off by default). A lever on the two-hop composition: with tied weights, a state
    the head reads as shape ``s`` points along ``s``'s input embedding, which is what the
    association tokens' keys are built from (docs/binding.md).
    """

    n_layers: int = 12
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    rope_theta: float = 10000.0
    max_positions: int = 512
    d_ext: int = 1280
    tie_embeddings: bool = False
    ext_norm: str = "none"

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_ff", "max_positions", "d_ext"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model.{name}={getattr(self, name)!r}: must be >= 1")
        if isinstance(self.ext_norm, bool):  # recorded as a switch by the first runs with it (2026-12-07)
            object.__setattr__(self, "ext_norm", "standardise" if self.ext_norm else "none")
        if self.ext_norm not in EXT_NORMS:
            raise ValueError(f"model.ext_norm={self.ext_norm!r}: valid values are {list(EXT_NORMS)}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"model.d_model={self.d_model} must split into n_heads={self.n_heads} heads of even width (RoPE)")

    def hf_config(self, vocab_size: int):
        from transformers import LlamaConfig  # deferred: transformers costs ~3 s; CLIs check their input before any model loads

        return LlamaConfig(vocab_size=vocab_size, hidden_size=self.d_model, intermediate_size=self.d_ff,
                           num_hidden_layers=self.n_layers, num_attention_heads=self.n_heads,
                           num_key_value_heads=self.n_heads, head_dim=self.d_model // self.n_heads,
                           max_position_embeddings=self.max_positions, rope_theta=self.rope_theta,
                           tie_word_embeddings=self.tie_embeddings, bos_token_id=1, eos_token_id=0, pad_token_id=0,
                           use_cache=False, architectures=["LlamaForCausalLM"])


class BindingModel(nn.Module):
    """Decoder + projector. ``forward(layout, ext) -> [batch, vocab]`` logits at the last
    real token (the answer position); ``ext [n_ext_positions_total, d_ext]`` or
    ``[batch, n_ext, d_ext]`` fills the ``<img>`` positions of ``layout`` in order."""

    def __init__(self, cfg: ModelConfig, vocab: Vocab, seed: int = 0):
        super().__init__()
        from transformers import LlamaForCausalLM  # deferred: transformers costs ~3 s; CLIs check their input before any model loads

        self.cfg, self.vocab, self.seed = cfg, vocab, seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.hf = LlamaForCausalLM(cfg.hf_config(len(vocab)))
            self.projector = nn.Linear(cfg.d_ext, cfg.d_model)
        self.hf.config.use_cache = False
        self.register_buffer("ext_mean", torch.zeros(cfg.d_ext))
        self.register_buffer("ext_std", torch.ones(cfg.d_ext))

    def fit_ext_norm(self, features: torch.Tensor) -> None:
        """Set the standardisation of external tokens (``cfg.ext_norm``) from ``features
        [..., d_ext]`` (the training bank): per-dimension mean and standard deviation; with
        ``"text"``, also scale the projector so that its mean output norm on ``features`` is the
        median norm of the input embeddings."""
        mean, std = token_stats(features)
        self.ext_mean.copy_(mean)
        self.ext_std.copy_(std)
        if self.cfg.ext_norm == "text":
            with torch.no_grad():
                flat = features.reshape(-1, features.shape[-1]).float()
                out = self.projector((flat[:4096].to(self.device) - self.ext_mean) / self.ext_std)
                target = self.hf.model.embed_tokens.weight.norm(dim=1).median()
                scale = target / out.norm(dim=1).mean()
                self.projector.weight.mul_(scale)
                self.projector.bias.mul_(scale)

    # ---------------------------------------------------------------- inputs
    def embed(self, lay: Layout, ext: torch.Tensor | None = None) -> torch.Tensor:
        """Input embeddings ``[batch, pos, d_model]``: token embeddings, with the projected
        external tokens written into the ``<img>`` positions (gradients reach the projector)."""
        x = self.hf.model.embed_tokens(lay.ids.to(self.device))
        n_ext = int(lay.ext.sum())
        if n_ext == 0:
            return x
        if ext is None:
            raise ValueError(f"the layout has {n_ext} <img> positions but no external tokens were given")
        ext = ext.reshape(-1, ext.shape[-1]).to(self.device, x.dtype)
        if ext.shape[0] != n_ext:
            raise ValueError(f"{ext.shape[0]} external tokens for {n_ext} <img> positions")
        if self.cfg.ext_norm != "none":
            ext = (ext - self.ext_mean.to(ext.dtype)) / self.ext_std.to(ext.dtype)
        where = lay.ext.to(self.device)
        return _scatter(x, where, self.projector(ext))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, lay: Layout, ext: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Logits at the answer position ``[batch, vocab]``, or at ``positions [batch, k]``
        (``[batch, k, vocab]``; only those rows go through the unembedding)."""
        x = self.embed(lay, ext)
        h = self.hf.model(inputs_embeds=x, attention_mask=lay.mask.to(self.device), use_cache=False).last_hidden_state
        if positions is None:
            return self.hf.lm_head(h[torch.arange(len(h), device=h.device), lay.last.to(h.device)])
        rows = torch.arange(len(h), device=h.device)[:, None]
        return self.hf.lm_head(h[rows, positions.to(h.device)])

    def forward_with_mid(self, lay: Layout, ext: torch.Tensor | None, positions: torch.Tensor,
                         layer: int, *, hidden: bool = False) -> tuple[torch.Tensor, ...]:
        """Logits at ``positions [batch, k]`` from the last block and from the residual after
        block ``layer`` (read through the final norm and the LM head, as the last block's
        are): two ``[batch, k, vocab]`` tensors. The intermediate-layer loss of training
        (``train.mid_layer``) scores the second on the first hop's result. ``hidden``: also
        the residual stream at ``positions`` after every block, ``{block: [batch, k, d_model]}``
        (0: the embeddings)."""
        if not 0 < layer < self.cfg.n_layers:
            raise ValueError(f"mid layer {layer} is out of range: valid 1..{self.cfg.n_layers - 1}")
        last, states = self._run(lay, ext, positions)
        mid = self.hf.lm_head(self.hf.model.norm(states[layer]))
        return (last, mid, states) if hidden else (last, mid)

    def residuals(self, lay: Layout, ext: torch.Tensor | None, positions: torch.Tensor) -> dict[int, torch.Tensor]:
        """The residual stream at ``positions [batch, k]`` after every block, ``{block: [batch, k,
        d_model]}`` (0: the embeddings); no unembedding."""
        return self._run(lay, ext, positions, logits=False)[1]

    def _run(self, lay: Layout, ext, positions: torch.Tensor, logits: bool = True):
        x = self.embed(lay, ext)
        out = self.hf.model(inputs_embeds=x, attention_mask=lay.mask.to(self.device), use_cache=False,
                            output_hidden_states=True)
        rows = torch.arange(len(x), device=x.device)[:, None]
        pos = positions.to(x.device)
        last = self.hf.lm_head(out.last_hidden_state[rows, pos]) if logits else None
        return last, {i: hs[rows, pos] for i, hs in enumerate(out.hidden_states[:-1])}

    # ------------------------------------------------------------ persistence
    def state(self) -> dict[str, torch.Tensor]:
        """Every weight by name; a tied LM head is stored as its own copy (safetensors refuses
        shared storage), and loading writes the same values into the shared matrix twice."""
        hf = {k: v.clone() if self.cfg.tie_embeddings and k == "lm_head.weight" else v
              for k, v in self.hf.state_dict().items()}
        ext = {"ext.mean": self.ext_mean, "ext.std": self.ext_std} if self.cfg.ext_norm != "none" else {}
        return {**{f"hf.{k}": v for k, v in hf.items()},
                **{f"projector.{k}": v for k, v in self.projector.state_dict().items()}, **ext}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load :meth:`state`; a state without the external-token statistics (a text segment,
        or a model without ``ext_norm``) leaves them as they are."""
        self.hf.load_state_dict({k[3:]: v for k, v in tensors.items() if k.startswith("hf.")})
        self.projector.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("projector.")})
        if self.cfg.ext_norm != "none" and "ext.mean" in tensors:
            self.ext_mean.copy_(tensors["ext.mean"])
            self.ext_std.copy_(tensors["ext.std"])

    def describe(self) -> dict:
        return {"config": asdict(self.cfg), "vocab_size": len(self.vocab), "seed": self.seed,
                "n_params": sum(p.numel() for p in self.parameters())}

    # --------------------------------------------------------------- hooked
    def hooked(self, name: str = "binding-decoder"):
        """A frozen :class:`~interp.models.hooked.HookedLM` over a copy of the decoder (the
        TransformerLens bridge; all toolkit analyses apply). Inputs: :meth:`embed` output."""
        hf = copy.deepcopy(self.hf).eval()
        for p in hf.parameters():
            p.requires_grad_(False)
        spec = ModelSpec(name, "lm", "local", "llama", d_model=self.cfg.d_model, n_layers=self.cfg.n_layers,
                         note="decoder trained from scratch on the binding task")
        return HookedLM(LoadedLM(model=hf, tokenizer=self.vocab.hf_tokenizer(), spec=spec, random_init=False))


def _scatter(x: torch.Tensor, where: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``x`` with ``values [n, d]`` written at the True positions of ``where [b, pos]`` (row-major
    order), out of place so autograd sees both sources."""
    flat = x.reshape(-1, x.shape[-1])
    idx = where.reshape(-1).nonzero().squeeze(1)
    return flat.index_copy(0, idx, values.to(flat.dtype)).reshape(x.shape)
