"""The ONE module that talks to TransformerLens.

API choice: TransformerLens 4.x ``TransformerBridge`` (not 3.x ``HookedTransformer``).
Why: the bridge wraps the HF model *in place* (its modules become hooked components),
so one set of weights serves three routes with identical numbers: TransformerLens hook
points with canonical names (``blocks.{i}.hook_resid_post``...), a plain HF forward (the
fast path for training), and nnsight tracing over the same modules. It boots offline from
a model we loaded ourselves, for any architecture in its adapter registry (Gemma 3,
Llama/SmolLM2, Qwen3...), whereas ``HookedTransformer.from_pretrained`` needs an
"official" name and re-implements each architecture (SmolLM2 is not one of them).

What we add on top, because the bridge does not do it:
- ``start_at_layer`` that really skips the blocks before it (the bridge runs and discards
  them), so batched patching reuses the clean prefix;
- logits only at chosen positions (gemma's unembedding is 262k wide);
- the embedding scale (Gemma multiplies token embeddings by sqrt(d_model)) exposed so
  image tokens live on the same scale as text tokens.

Nothing else in ``interp`` imports ``transformer_lens``.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from interp.models.lm import LoadedLM

HookFn = Callable[..., torch.Tensor | None]
FwdHooks = Sequence[tuple[str | Callable[[str], bool], HookFn]]


class _Stop(Exception):
    """Raised by a hook to end a forward pass early (stop_at_layer)."""


# Every per-block hook suffix (``blocks.{i}.<suffix>``) the pinned TransformerBridge gives the
# supported families (Llama, Gemma 3; Qwen3 is Llama-like with q/k norms): what a CLI can check
# before any model loads. tests/test_hooked_vlm.py keeps it equal to the tiny models' hooks.
BLOCK_HOOK_SUFFIXES: frozenset[str] = frozenset({
    "attn.hook_attn_in", "attn.hook_attn_scores", "attn.hook_cos", "attn.hook_hidden_states", "attn.hook_in",
    "attn.hook_k", "attn.hook_k_input", "attn.hook_k_normed", "attn.hook_out", "attn.hook_pattern", "attn.hook_q",
    "attn.hook_q_input", "attn.hook_q_normed", "attn.hook_result", "attn.hook_rot_k", "attn.hook_rot_q",
    "attn.hook_sin", "attn.hook_v", "attn.hook_v_input", "attn.hook_z", "attn.k.hook_in", "attn.k.hook_out",
    "attn.k_norm.hook_in", "attn.k_norm.hook_normalized", "attn.k_norm.hook_out", "attn.k_norm.hook_scale",
    "attn.o.hook_in", "attn.o.hook_out", "attn.q.hook_in", "attn.q.hook_out", "attn.q_norm.hook_in",
    "attn.q_norm.hook_normalized", "attn.q_norm.hook_out", "attn.q_norm.hook_scale", "attn.v.hook_in",
    "attn.v.hook_out", "hook_attn_in", "hook_attn_out", "hook_in", "hook_k_input", "hook_mlp_in", "hook_mlp_out",
    "hook_out", "hook_q_input", "hook_resid_mid", "hook_resid_post", "hook_resid_pre", "hook_v_input",
    "ln1.hook_in", "ln1.hook_normalized", "ln1.hook_out", "ln1.hook_scale", "ln1_post.hook_in",
    "ln1_post.hook_normalized", "ln1_post.hook_out", "ln1_post.hook_scale", "ln2.hook_in", "ln2.hook_normalized",
    "ln2.hook_out", "ln2.hook_scale", "ln2_post.hook_in", "ln2_post.hook_normalized", "ln2_post.hook_out",
    "ln2_post.hook_scale", "mlp.gate.hook_in", "mlp.gate.hook_out", "mlp.hook_in", "mlp.hook_out", "mlp.hook_post",
    "mlp.hook_pre", "mlp.hook_pre_linear", "mlp.in.hook_in", "mlp.in.hook_out", "mlp.out.hook_in",
    "mlp.out.hook_out",
})


def unwrap(module: nn.Module) -> nn.Module:
    """The HF module behind a TransformerBridge component wrapper (its public
    ``original_component``), or ``module`` itself when it is not wrapped."""
    inner = getattr(type(module), "original_component", None)
    return module.original_component if isinstance(inner, property) and module.original_component is not None else module


def softcap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """Gemma's final-logit softcap ``tanh(x / cap) * cap`` (identity when ``cap`` is None or 0)."""
    return torch.tanh(logits / cap) * cap if cap else logits


@dataclass(frozen=True)
class KVPrefix:
    """The keys and values of every layer over the first positions of a run: the past of
    later runs that share those positions (causal: what comes after cannot change them).

    ``keys[i]``, ``values[i]``: ``[batch, kv_heads, pos, d_head]`` of block ``i`` (all
    positions, also for sliding-window layers; the cache built from them keeps the window).
    ``padded``: the run had padding (a zero in its attention mask); such a prefix cannot be
    continued (the continuation would follow the pad positions), and :meth:`as_cache` says so.
    """

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    padded: bool = False

    @property
    def n_pos(self) -> int:
        return int(self.keys[0].shape[-2])

    def select(self, rows: torch.Tensor) -> "KVPrefix":
        """The prefixes of ``rows [m]`` (row ``j`` of the result is prefix ``rows[j]``)."""
        return KVPrefix(tuple(k[rows.to(k.device)] for k in self.keys), tuple(v[rows.to(v.device)] for v in self.values),
                        self.padded)

    def as_cache(self, config, batch: int):
        """A transformers ``DynamicCache`` holding this prefix for ``batch`` rows (a 1-row
        prefix is broadcast)."""
        from transformers import DynamicCache  # deferred: transformers costs ~3 s; CLIs check their input before any model loads

        if self.padded:
            raise ValueError("this KV prefix comes from a padded run (its attention mask has zeros): a continuation "
                             "would follow the pad positions; build prefixes of equal length without padding")
        cache = DynamicCache(config=config)
        for i, (k, v) in enumerate(zip(self.keys, self.values)):
            if k.shape[0] not in (1, batch):
                raise ValueError(f"a prefix of {k.shape[0]} rows cannot serve a batch of {batch}")
            cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), i)
        return cache


class HookedLM(nn.Module):
    """A frozen causal LM with TransformerLens hook points, run from input embeddings.

    All inputs are embeddings ``[batch, pos, d_model]`` already on the model's scale (see
    :meth:`embed_tokens`); the attention mask ``[batch, pos]`` marks real tokens (right
    padding: positions are then plain ``arange``).
    """

    def __init__(self, loaded: LoadedLM):
        super().__init__()
        from transformer_lens.model_bridge import TransformerBridge  # deferred: TransformerLens costs ~5 s; loaded with the first hooked model

        hf = loaded.model
        emb = hf.get_input_embeddings()
        self.embed_scale = float(getattr(emb, "embed_scale", 1.0))
        self.loaded = loaded
        self.bridge = TransformerBridge.boot_transformers(
            loaded.spec.hub_id or loaded.spec.name, hf_model=hf, tokenizer=loaded.tokenizer
        )
        self.hf = hf
        cfg = hf.config
        self.n_layers: int = int(cfg.num_hidden_layers)
        self.d_model: int = int(cfg.hidden_size)
        self.vocab_size: int = int(cfg.vocab_size)
        self.softcap: float | None = getattr(cfg, "final_logit_softcapping", None)
        self._aliases = self._alias_map()

    # ------------------------------------------------------------------ names
    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    @property
    def sliding_window(self) -> int | None:
        """The sliding attention window of the layers that have one (``None``: every layer
        attends to all earlier positions). Conservative: a configured window counts unless
        the config says no layer uses it."""
        cfg = self.hf.config
        window = getattr(cfg, "sliding_window", None)
        types = getattr(cfg, "layer_types", None)
        if window is None or getattr(cfg, "use_sliding_window", True) is False:
            return None
        if types is not None and "sliding_attention" not in types:
            return None
        return int(window)

    @property
    def attention_cost_ratio(self) -> float:
        """Multiply-adds of one (query, key) attention pair over those of one token through
        the block weights, summed over layers (to plan packed passes): ``2 * heads * d_head /
        (block params / layers)``."""
        cfg = self.hf.config
        heads = int(cfg.num_attention_heads)
        d_head = int(getattr(cfg, "head_dim", None) or self.d_model // heads)
        per_layer = sum(p.numel() for p in self.hf.model.layers.parameters()) / self.n_layers
        return 2 * heads * d_head / per_layer

    def attention_scale(self, layer: int) -> tuple[float, float | None]:
        """``(scaling, softcap)`` of block ``layer``'s attention logits, as the bridge computes
        ``attn.hook_attn_scores`` before the mask: ``scaling * q . k`` of the rotated query and
        key (``attn.hook_rot_q`` / ``attn.hook_rot_k``), then ``softcap * tanh(x / softcap)``
        when ``softcap`` is not None (Gemma 2)."""
        attn = unwrap(self.hf.model.layers[self.check_layer(layer)].self_attn)
        cfg = self.hf.config
        d_head = int(getattr(cfg, "head_dim", None) or self.d_model // int(cfg.num_attention_heads))
        cap = getattr(attn, "attn_logit_softcapping", None)
        return float(getattr(attn, "scaling", d_head ** -0.5)), (float(cap) if cap else None)

    def _alias_map(self) -> dict[str, str]:
        from transformer_lens.model_bridge.bridge_core import build_alias_to_canonical_map  # deferred: TransformerLens costs ~5 s; loaded with the first hooked model

        names = {n: n for n in self.bridge.hook_dict}
        names.update(build_alias_to_canonical_map(self.bridge.hook_dict))
        return names

    def hook_point(self, name: str) -> nn.Module:
        """The HookPoint module behind a (canonical or bridge) hook name."""
        return self.bridge.hook_dict[self._aliases[self.check_hook(name)]]

    def hook_names(self) -> list[str]:
        """Every hook name this model accepts (canonical TransformerLens names included)."""
        return sorted(self._aliases)

    def check_layer(self, layer: int, *, allow_end: bool = False) -> int:
        """Return ``layer`` if it is a valid block index, else raise naming the range."""
        hi = self.n_layers if allow_end else self.n_layers - 1
        if not isinstance(layer, int) or not 0 <= layer <= hi:
            raise ValueError(f"layer {layer!r} is out of range for {self.name}: valid layers are 0..{hi}")
        return layer

    def check_hook(self, name: str) -> str:
        """Return ``name`` if the model has that hook point, else raise with close matches."""
        if name in self._aliases:
            m = re.match(r"blocks\.(\d+)\.", name)
            if m:
                self.check_layer(int(m.group(1)))
            return name
        m = re.match(r"blocks\.(\d+)\.(.*)", name)
        if m:
            self.check_layer(int(m.group(1)))
            suffixes = sorted({k.split(".", 2)[2] for k in self._aliases if k.startswith("blocks.0.")})
            raise ValueError(f"unknown hook {name!r} for {self.name}; per-block hooks are blocks.{{i}}.<one of {suffixes}>")
        top = sorted(k for k in self._aliases if not k.startswith("blocks."))
        raise ValueError(f"unknown hook {name!r} for {self.name}; top-level hooks are {top} and blocks.{{i}}.*")

    # ------------------------------------------------------------- embeddings
    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings on the residual scale: ``[batch, pos] -> [batch, pos, d_model]``.

        Includes Gemma's ``sqrt(d_model)`` scale. No hook fires here; the assembled
        sequence goes through ``hook_embed`` in :meth:`forward`.
        """
        weight = self.hf.get_input_embeddings().weight
        return nn.functional.embedding(tokens, weight) * self.embed_scale

    # ---------------------------------------------------------------- forward
    @contextlib.contextmanager
    def hooks(self, fwd_hooks: FwdHooks = (), bwd_hooks: FwdHooks = ()) -> Iterator[None]:
        """Attach hooks for the duration of the block (removed afterwards, also on error)."""
        for name, _ in list(fwd_hooks) + list(bwd_hooks):
            if isinstance(name, str):
                self.check_hook(name)
        with self.bridge.hooks(fwd_hooks=list(fwd_hooks), bwd_hooks=list(bwd_hooks)):
            yield

    @contextlib.contextmanager
    def _skip_blocks_before(self, layer: int) -> Iterator[None]:
        """Make blocks ``0..layer-1`` the identity, so a forward really starts at ``layer``."""
        blocks = list(self.hf.model.layers)
        skipped = blocks[:layer]

        def identity(hidden_states=None, *args, **kwargs):
            return hidden_states if hidden_states is not None else args[0]

        # an instance-level ``forward`` may already be there (nnsight wraps every module's
        # forward in place when a model is traced): keep it and put it back afterwards
        _missing = object()
        saved = [block.__dict__.get("forward", _missing) for block in skipped]
        for block in skipped:  # bypass nn.Module/bridge __setattr__: shadow the bound method
            object.__setattr__(block, "forward", identity)
        try:
            yield
        finally:
            for block, prev in zip(skipped, saved):
                if prev is _missing:
                    object.__delattr__(block, "forward")
                else:
                    object.__setattr__(block, "forward", prev)

    def forward(
        self,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        fwd_hooks: FwdHooks = (),
        start_at_layer: int | None = None,
        stop_at_layer: int | None = None,
        past: KVPrefix | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the blocks and the final norm; return the normalised final residual.

        Args:
            embeds: ``[batch, pos, d_model]`` input embeddings, or with ``start_at_layer=k``
                the residual entering block ``k`` (``blocks.{k}.hook_resid_pre``).
            attention_mask: ``[batch, pos]`` 1 for real tokens (right padding); with
                ``past``, ``[batch, past.n_pos + pos]`` (or ``[batch, pos]``: every past
                position is real). Or a full additive mask
                ``[batch, 1, pos, past.n_pos + pos]`` (0 = attend, -inf = not), used as it
                is (with ``position_ids``: several sequences packed in one row).
            fwd_hooks: ``[(hook name or filter, fn(tensor, hook))]``, active for this call.
            stop_at_layer: return the residual entering this block (not normalised).
            past: keys/values of the positions before ``embeds`` (:meth:`forward_with_kv`):
                only the later positions are computed; hooks see those positions only.
            position_ids: ``[batch, pos]`` (default: ``past.n_pos + arange(pos)``).

        Returns:
            ``[batch, pos, d_model]`` (the positions of ``embeds``); use :meth:`unembed` on
            the positions you need.
        """
        n, s = embeds.shape[:2]
        p = 0 if past is None else past.n_pos
        if attention_mask is None:
            attention_mask = torch.ones(n, p + s, dtype=torch.long, device=embeds.device)
        elif p and tuple(attention_mask.shape) == (n, s):
            attention_mask = torch.cat([attention_mask.new_ones(n, p), attention_mask], dim=1)
        valid = [(n, p + s), (n, 1, s, p + s)]
        if tuple(attention_mask.shape) not in valid:
            raise ValueError(f"attention_mask of shape {tuple(attention_mask.shape)}: expected {valid[0]} or the full "
                             f"mask {valid[1]} ({p} past + {s} new positions)")
        kw: dict = {"use_cache": False}
        if p:
            kw = {"use_cache": True, "past_key_values": past.as_cache(self.hf.config, n),
                  "position_ids": torch.arange(p, p + s, device=embeds.device).expand(n, -1)}
        if position_ids is not None:
            if tuple(position_ids.shape) != (n, s):
                raise ValueError(f"position_ids of shape {tuple(position_ids.shape)}: expected {(n, s)}")
            kw["position_ids"] = position_ids
        start = 0 if start_at_layer is None else self.check_layer(start_at_layer)
        hooks = list(fwd_hooks)
        stopped: list[torch.Tensor] = []
        if stop_at_layer is not None:
            self.check_layer(stop_at_layer, allow_end=True)
            if stop_at_layer < self.n_layers:

                def stop(tensor, hook):
                    stopped.append(tensor)
                    raise _Stop

                hooks.append((f"blocks.{stop_at_layer}.hook_resid_pre", stop))
            else:
                hooks.append(("ln_final.hook_in", lambda t, hook: stopped.append(t)))
        skip = self._skip_blocks_before(start) if start > 0 else contextlib.nullcontext()
        with self.hooks(hooks), skip:
            x = embeds
            if start == 0:
                x = self.hook_point("hook_embed")(x)
            try:
                out = self.hf.model(inputs_embeds=x, attention_mask=attention_mask, **kw)
            except _Stop:
                return stopped[0]
        if stopped:
            return stopped[0]
        return out.last_hidden_state

    # ------------------------------------------------- shared-prefix fast path
    @torch.no_grad()
    def forward_with_kv(self, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                        fwd_hooks: FwdHooks = ()) -> tuple[torch.Tensor, KVPrefix]:
        """:meth:`forward` from the embeddings ``[batch, pos, d_model]`` that also returns the
        keys and values of every layer, so later runs can continue from it
        (``forward(past=...)``): ``(normalised final residual, KVPrefix)``."""
        from transformers import DynamicCache  # deferred: transformers costs ~3 s; CLIs check their input before any model loads

        cache = DynamicCache()  # without the config every layer keeps all positions
        with self.hooks(fwd_hooks):
            x = self.hook_point("hook_embed")(embeds)
            out = self.hf.model(inputs_embeds=x, attention_mask=attention_mask, past_key_values=cache, use_cache=True)
        padded = attention_mask is not None and not bool(attention_mask.bool().all())
        kv = KVPrefix(tuple(l.keys for l in cache.layers), tuple(l.values for l in cache.layers), padded)
        return out.last_hidden_state, kv

    def unembed(self, resid_normed: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from normalised final residuals, the LM's logit softcap applied:
        ``[..., d_model] -> [..., d_vocab]``, or only the logits of ``token_ids [k]``
        (``[..., k]``; no full-vocabulary product; differences are log-prob differences)."""
        if token_ids is None:
            logits = self.hf.lm_head(resid_normed)
        else:
            logits = resid_normed @ self.unembed_rows(token_ids.to(resid_normed.device)).T
        return softcap(logits, self.softcap)

    def final_norm(self, resid: torch.Tensor) -> torch.Tensor:
        """The final norm alone (for the logit lens): ``[..., d_model] -> [..., d_model]``."""
        return self.hf.model.norm(resid)

    def unembed_rows(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Rows of the unembedding for a few tokens: ``[n] -> [n, d_model]`` (cheap metrics)."""
        return self.hf.lm_head.weight[token_ids]

    def parameters_require_grad(self) -> bool:
        return any(p.requires_grad for p in self.hf.parameters())

    def to_activation_cache(self, cache: dict[str, torch.Tensor]):
        """Wrap a plain dict of activations as a TransformerLens ``ActivationCache``."""
        from transformer_lens import ActivationCache  # deferred: TransformerLens costs ~5 s; loaded with the first hooked model

        return ActivationCache(cache, self.bridge)

