"""HookedVLM: frozen image encoder -> trained projector -> frozen hooked LM.

The sequence is BOS, projected image tokens, text (and answer when training). The
projector output is multiplied by the LM's embedding scale (Gemma: sqrt(d_model)), so
image tokens live on the scale of text tokens. Positions carry modality labels
(:class:`interp.sequence.Modality`). Logits are computed only where asked.

Three routes over the same weights give the same activations:
- :meth:`HookedVLM.forward` / :meth:`run_with_hooks` / :meth:`run_with_cache` with
  TransformerLens hook names (``blocks.{i}.hook_resid_post``...),
- :meth:`nnsight_model` + :meth:`nnsight_inputs` for nnsight tracing,
- the same modules without hooks for training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from interp.models.encoders import load_encoder
from interp.models.hooked import FwdHooks, HookedLM, KVPrefix
from interp.models.lm import load_lm
from interp.projector import CheckpointMismatchError, Projector, ProjectorConfig
from interp.sequence import Batch, Modality, Segment, build_batch

LogitsAt = str | torch.Tensor | None


@dataclass
class VLMOutput:
    """``resid``: normalised final residual ``[batch, pos, d_model]``; ``logits``: ``[n, d_vocab]``
    at the selected positions (row-major order of ``positions``), or None."""

    resid: torch.Tensor
    logits: torch.Tensor | None
    positions: torch.Tensor | None


def capture(store: dict, names: Sequence[str], at: torch.Tensor | None = None, *,
            device: str | torch.device | None = None) -> list[tuple[str, Callable]]:
    """Read-only hooks that save each named activation into ``store[name]``, detached: the whole
    ``[batch, pos, ...]`` tensor, or with ``at`` (``[batch]`` positions, one per row) the
    ``[batch, ...]`` rows at those positions; ``device`` moves them as they are produced.

        got = {}
        vlm.run_with_hooks(batch, feats, fwd_hooks=capture(got, names, at=last_token_index(batch)))
    """
    def saver(name: str):
        def hook(t, hook):
            v = t.detach() if at is None else t[torch.arange(t.shape[0], device=t.device), at.to(t.device)].detach()
            store[name] = v.to(device) if device is not None else v
        return hook

    return [(n, saver(n)) for n in names]


class VLMCache(dict):
    """Activations by hook name, each ``[batch, pos, ...]``, with the batch's modality labels."""

    def __init__(self, acts: dict[str, torch.Tensor], batch: Batch):
        super().__init__(acts)
        self.batch = batch

    def at(self, name: str, *modalities: Modality | str) -> torch.Tensor:
        """Rows of ``name`` at the positions of the given modalities: ``[n, ...]``."""
        mask = self.batch.mask(*modalities).to(self[name].device)
        return self[name][mask]

    def last(self, name: str, modality: Modality | str = Modality.TEXT) -> torch.Tensor:
        """``[batch, ...]`` activation at the last position of ``modality`` in each row."""
        idx = self.batch.last(modality).to(self[name].device)
        return self[name][torch.arange(len(idx), device=idx.device), idx]

    def mean_over(self, name: str, modality: Modality | str) -> torch.Tensor:
        """``[batch, ...]`` mean over each row's positions of ``modality`` (e.g. pooled image tokens)."""
        mask = self.batch.mask(modality).to(self[name].device)
        act = self[name]
        w = mask.to(act.dtype).view(*mask.shape, *([1] * (act.ndim - 2)))
        return (act * w).sum(1) / w.sum(1).clamp(min=1)

    def stack(self, suffix: str = "hook_resid_post") -> torch.Tensor:
        """``[layers, batch, pos, ...]`` of ``blocks.{i}.{suffix}`` for the cached layers, in order."""
        names = sorted((k for k in self if k.startswith("blocks.") and k.endswith("." + suffix)),
                       key=lambda k: int(k.split(".")[1]))
        if not names:
            raise KeyError(f"no blocks.*.{suffix} in the cache; cached: {sorted(self)[:8]}...")
        return torch.stack([self[k] for k in names])


def as_positions(batch: Batch, logits_at: LogitsAt) -> torch.Tensor | None:
    """Bool ``[batch, pos]`` of positions where logits are wanted."""
    if logits_at is None:
        return None
    if isinstance(logits_at, torch.Tensor):
        if logits_at.dtype == torch.bool:
            return logits_at
        mask = torch.zeros(batch.shape, dtype=torch.bool, device=logits_at.device)
        mask[torch.arange(len(batch)), logits_at] = True  # one index per row
        return mask
    if logits_at == "last":
        mask = torch.zeros(batch.shape, dtype=torch.bool)
        mask[torch.arange(len(batch)), batch.last(Modality.TEXT)] = True
        return mask
    if logits_at == "answer":
        return batch.answer_targets()[0]
    if logits_at == "all":
        return batch.attention_mask.bool()
    raise ValueError(f"logits_at={logits_at!r}: use 'last', 'answer', 'all', a [batch] index or a bool mask")


class VLMInputs:
    """Building inputs from ``self.lm`` (tokenizer, device) and ``self.projector`` (image
    tokens per image): shared by :class:`HookedVLM` and :class:`interp.remote.RemoteVLM`."""

    lm: Any
    projector: Projector

    @property
    def tokenizer(self):
        return self.lm.tokenizer

    @property
    def n_image_tokens(self) -> int:
        return self.projector.config.n_tokens_out

    def build(self, items: Sequence[Sequence[Segment]], **kw) -> Batch:
        """Tokenize sequences into a :class:`Batch` on the LM's device."""
        return build_batch(self.tokenizer, items, self.n_image_tokens, **kw).to(self.lm.device)


class HookedVLM(VLMInputs, nn.Module):
    """A frozen encoder (optional: features may come from the cache), a projector and a frozen
    :class:`HookedLM`. Gradients reach the projector only."""

    def __init__(self, lm: HookedLM, projector: Projector, encoder: nn.Module | None = None):
        super().__init__()
        cfg = projector.config
        if cfg.d_out != lm.d_model or cfg.lm != lm.name:
            raise CheckpointMismatchError(
                f"projector was built for LM {cfg.lm!r} (d_model {cfg.d_out}); this LM is {lm.name!r} "
                f"(d_model {lm.d_model})"
            )
        if encoder is not None and (getattr(encoder, "name", cfg.encoder) != cfg.encoder):
            raise CheckpointMismatchError(
                f"projector was built for encoder {cfg.encoder!r}; this encoder is {encoder.name!r}"
            )
        self.lm = lm
        self.projector = projector
        self.encoder = encoder
        self._nnsight = None

    @staticmethod
    def new_projector(lm: HookedLM, encoder_name: str, d_img: int, n_tokens: int, kind: str = "mlp2x_gelu",
                      pool_to: int | None = None, seed: int = 0, pool: str = "mean") -> Projector:
        """A freshly initialised (seeded) projector for this LM and encoder."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            proj = Projector(ProjectorConfig(kind=kind, d_in=d_img, d_out=lm.d_model, n_tokens_in=n_tokens,
                                             encoder=encoder_name, lm=lm.name, pool_to=pool_to, pool=pool))
        return proj.to(lm.device)

    # ----------------------------------------------------------------- inputs
    def encode(self, images) -> torch.Tensor:
        """Run the frozen encoder: PIL images -> ``[n, tokens, d_img]``."""
        if self.encoder is None:
            raise ValueError("this HookedVLM has no encoder; pass cached features instead")
        return self.encoder.encode(images)

    def embed(self, batch: Batch, features: torch.Tensor | None = None) -> torch.Tensor:
        """Input embeddings ``[batch, pos, d_model]``: text tokens, and projected image
        tokens (``features [n_images, tokens, d_img]``) at the image positions."""
        x = self.lm.embed_tokens(batch.input_ids)
        is_img = batch.image_slot >= 0
        if not bool(is_img.any()):
            return x
        if features is None:
            raise ValueError("the batch has image positions but no image features were given")
        img = self.projector(features.to(self.lm.device)) * self.lm.embed_scale
        flat = img.reshape(-1, img.shape[-1])
        n_slots = int(batch.image_slot.max()) + 1
        if n_slots > flat.shape[0]:
            raise ValueError(f"the batch refers to image {n_slots // self.n_image_tokens - 1} "
                             f"but only {features.shape[0]} images' features were given")
        gathered = flat[batch.image_slot.clamp(min=0)]
        return torch.where(is_img.unsqueeze(-1), gathered.to(x.dtype), x)

    # ---------------------------------------------------------------- running
    def forward(
        self,
        batch: Batch | None,
        features: torch.Tensor | None = None,
        *,
        fwd_hooks: FwdHooks = (),
        logits_at: LogitsAt = "last",
        embeds: torch.Tensor | None = None,
        start_at_layer: int | None = None,
        stop_at_layer: int | None = None,
        past: KVPrefix | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> VLMOutput:
        """Run the VLM; logits only at ``logits_at`` ('last' text token, 'answer' targets, 'all',
        per-row indices or a bool mask; None for no logits).

        ``embeds`` replaces ``embed(batch, features)`` (``[batch, pos, d_model]``, e.g. with
        ``requires_grad`` for attribution); with ``start_at_layer=k`` it is the residual entering
        block ``k`` (``blocks.{k}.hook_resid_pre``) and the blocks before ``k`` are skipped.
        ``stop_at_layer=k`` returns, as ``resid``, the residual entering block ``k`` (no logits).
        ``past``: a KV prefix the batch continues (its positions are the new ones only).
        ``attention_mask`` replaces ``batch.attention_mask`` (``[batch, pos]``, or with ``past``
        ``[batch, past.n_pos + pos]``, or a full additive ``[batch, 1, pos, past.n_pos + pos]``
        mask with ``position_ids [batch, pos]``: sequences packed in one row; see
        :meth:`HookedLM.forward`). ``batch=None`` runs ``embeds`` under ``attention_mask``
        (no mask: every position real) and needs ``logits_at=None``."""
        if start_at_layer is not None and embeds is None:
            raise ValueError("start_at_layer needs embeds: the residual entering that block")
        if batch is None and (embeds is None or logits_at is not None):
            raise ValueError("batch=None needs embeds and logits_at=None: without a batch there are no token positions")
        x, mask = self.inputs(batch, features, embeds, attention_mask)
        resid = self.lm(x, mask, fwd_hooks=fwd_hooks, start_at_layer=start_at_layer,
                        stop_at_layer=stop_at_layer, past=past, position_ids=position_ids)
        if stop_at_layer is not None:
            return VLMOutput(resid=resid, logits=None, positions=None)
        pos = as_positions(batch, logits_at)
        logits = self.lm.unembed(resid[pos.to(resid.device)]) if pos is not None else None
        return VLMOutput(resid=resid, logits=logits, positions=pos)

    def forward_with_kv(self, batch: Batch | None, features: torch.Tensor | None = None, *,
                        fwd_hooks: FwdHooks = (), embeds: torch.Tensor | None = None,
                        attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, KVPrefix]:
        """Run from the embeddings and keep every layer's keys and values, so later runs can
        continue from them (``forward(past=...)``): ``(normalised final residual
        [batch, pos, d_model], KVPrefix)``. ``embeds``/``attention_mask`` as :meth:`forward`;
        a prefix with padding is recorded as padded, and continuing from it is refused."""
        if batch is None and embeds is None:
            raise ValueError("forward_with_kv needs a batch or embeds")
        x, mask = self.inputs(batch, features, embeds, attention_mask)
        return self.lm.forward_with_kv(x, mask, fwd_hooks=fwd_hooks)

    def inputs(self, batch: Batch | None, features: torch.Tensor | None, embeds: torch.Tensor | None,
               attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What a run starts from: ``embeds`` (else ``embed(batch, features)``,
        ``[batch, pos, d_model]``) and ``attention_mask`` (else the batch's; None: all real)."""
        x = self.embed(batch, features) if embeds is None else embeds
        return x, (batch.attention_mask if attention_mask is None and batch is not None else attention_mask)

    def run_with_hooks(self, batch: Batch, features: torch.Tensor | None = None, *, fwd_hooks: FwdHooks,
                       logits_at: LogitsAt = "last", **kw) -> VLMOutput:
        """:meth:`forward` with ``fwd_hooks`` (``[(canonical hook name, fn(tensor, hook))]``)
        active for this call only; ``kw`` as :meth:`forward` (``embeds``, ``start_at_layer``,
        ``stop_at_layer``, ``past``, ``attention_mask``, ``position_ids``)."""
        return self.forward(batch, features, fwd_hooks=fwd_hooks, logits_at=logits_at, **kw)

    def run_with_cache(
        self,
        batch: Batch,
        features: torch.Tensor | None = None,
        *,
        names: Sequence[str] | Callable[[str], bool] | None = None,
        device: str | torch.device | None = None,
        logits_at: LogitsAt = "last",
        fwd_hooks: FwdHooks = (),
    ) -> tuple[VLMOutput, VLMCache]:
        """Run once and cache the named hook points (default: every ``hook_resid_post``).

        Only the hooks asked for are cached; ``device='cpu'`` moves each activation off
        the accelerator as it is produced. Activations are detached.
        """
        acts: dict[str, torch.Tensor] = {}
        hooks = list(fwd_hooks) + capture(acts, self.resolve_names(names), device=device)  # what the edits produced
        with torch.no_grad():
            out = self.forward(batch, features, fwd_hooks=hooks, logits_at=logits_at)
        return out, VLMCache(acts, batch)

    def resolve_names(self, names: Sequence[str] | Callable[[str], bool] | None) -> list[str]:
        """Hook names from a list, a filter over the canonical names, or None (resid_post)."""
        if names is None:
            return [f"blocks.{i}.hook_resid_post" for i in range(self.lm.n_layers)]
        if callable(names):
            return [n for n in self.lm.hook_names() if names(n)]
        return [self.lm.check_hook(n) for n in names]

    # ----------------------------------------------------------------- losses
    def answer_loss(self, batch: Batch, features: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens (and EOS) only; logits only there."""
        predicts, targets = batch.answer_targets()
        if targets.numel() == 0:
            raise ValueError("the batch has no answer tokens to train on")
        out = self.forward(batch, features, logits_at=predicts)
        return nn.functional.cross_entropy(out.logits.float(), targets)

    def token_logits(self, batch: Batch, features: torch.Tensor | None, token_ids: torch.Tensor,
                     *, at: LogitsAt = "last", fwd_hooks: FwdHooks = ()) -> torch.Tensor:
        """Logits of a few tokens only (``[n, len(token_ids)]``) at positions ``at``: no
        full-vocabulary product. Differences of these are log-prob differences."""
        resid = self.lm(self.embed(batch, features), batch.attention_mask, fwd_hooks=fwd_hooks)
        pos = as_positions(batch, at).to(resid.device)
        return self.lm.unembed(resid[pos], token_ids)

    # ---------------------------------------------------------------- nnsight
    @property
    def nnsight_model(self):
        """An nnsight ``LanguageModel`` over the same HF modules (imported lazily: importing
        nnsight patches ``Tensor.backward`` globally, so the training path never does)."""
        if self._nnsight is None:
            from nnsight import LanguageModel  # deferred: optional heavy dependency; only the nnsight route needs it

            object.__setattr__(self, "_nnsight", LanguageModel(self.lm.hf, tokenizer=self.tokenizer))
        return self._nnsight

    def nnsight_inputs(self, batch: Batch, features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Keyword inputs for ``vlm.nnsight_model.trace(**inputs)``.

        Example::
            with vlm.nnsight_model.trace(**vlm.nnsight_inputs(batch, feats)):
                h = vlm.nnsight_model.model.layers[5].output.save()   # [batch, pos, d_model]
        """
        return {"inputs_embeds": self.embed(batch, features), "attention_mask": batch.attention_mask}

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return self.projector.parameters()


def load_vlm(checkpoint, *, lm: str | None = None, with_encoder: bool = True, device: str = "cpu") -> HookedVLM:
    """A HookedVLM from a projector checkpoint: its LM (or ``lm``, which must match: a
    checkpoint trained for another LM fails, naming both), and its frozen encoder.

    A random-init control checkpoint (LM name ``<name>+random<seed>``) reloads the same
    seeded random LM.
    """

    proj, _ = Projector.load(checkpoint)
    name = lm or proj.config.lm
    m = re.fullmatch(r"(.+)\+random(\d+)", name)
    loaded = load_lm(m.group(1), random_init=True, seed=int(m.group(2)), device=device) if m else load_lm(name, device=device)
    encoder = load_encoder(proj.config.encoder, device=device) if with_encoder else None
    return HookedVLM(HookedLM(loaded), proj.to(device), encoder)

