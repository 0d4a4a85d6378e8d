"""Remote interventions: the frozen LM runs on NDIF (nnsight ``remote=True``), the projector here.

For an LM too big for the user's machine (Llama-3.1-70B, 405B...). NDIF serves only the
models it hosts, so a trained projector cannot be uploaded: it runs locally and its
output travels with the request. The request carries the token ids (image positions hold
placeholder pad ids), the projected image rows ``[n_image_positions, d_model]`` (already
on the LM's embedding scale) and a mask; on the server the trace writes those rows into
the output of ``model.embed_tokens`` (the placeholder route), so no local copy of the LM,
not even of its embedding matrix, is needed. Interventions travel as data
(:class:`Intervention`: set or add values at masked positions of a hook point), never as
Python functions, and the trace body uses only ``torch``, so the request unpickles on a
server that has never seen ``interp``.

:class:`RemoteVLM` has the interface the analyses use on a :class:`interp.vlm.HookedVLM`
(``lm.n_layers``, ``tokenizer``, ``build``, ``run_with_cache`` -> :class:`interp.vlm.VLMCache`,
``forward`` -> :class:`interp.vlm.VLMOutput`, ``token_logits``), with TransformerLens hook
names ``blocks.{i}.hook_resid_pre`` / ``hook_resid_post``; e.g.
:func:`interp.analysis.collect.concept_activations` runs on it unchanged.

``remote=True`` needs the network and an NDIF API key (``NDIF_API_KEY``, from
https://login.ndif.us); without them calls fail at once with :class:`RemoteUnavailableError`
naming the model and what is missing. ``remote="local"`` runs nnsight's local simulation
(serialize, deserialize with local modules hidden, run on a local copy of the model): what
the tests use here, and a dry run before spending an NDIF job.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from interp.models.hooked import softcap
from interp.models.registry import get_spec
from interp.projector import CheckpointMismatchError, Projector
from interp.sequence import Batch
from interp.vlm import LogitsAt, VLMCache, VLMInputs, VLMOutput, as_positions

# Checked 2026-11-23 (no network here, so from stored copies of public pages): the deployments in
# nnsight's "Remote Execution" tutorial (nnsight.net, output of nnsight.ndif_status()) and, marked
# "2025-02", those listed in nnsight pull request #335 (ndif-team/nnsight, 2025-02-24).
# Deployments change: `ndif_models()` asks the service itself when the network is there.
NDIF_CHECKED = "2026-11-23"
NDIF_MODELS: dict[str, str] = {
    "meta-llama/Llama-3.1-8B": "Dedicated",
    "meta-llama/Llama-3.1-8B-Instruct": "Pilot-Only",
    "meta-llama/Llama-3.1-70B": "Dedicated",
    "meta-llama/Llama-3.1-70B-Instruct": "Dedicated",
    "meta-llama/Llama-3.3-70B-Instruct": "Dedicated",
    "meta-llama/Llama-3.1-405B": "Dedicated",
    "meta-llama/Llama-2-7b-hf": "Dedicated",
    "allenai/Olmo-3-1025-7B": "Pilot-Only",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": "listed 2025-02",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": "listed 2025-02",
    "openai-community/gpt2": "Dedicated (GPT-2 module tree: not supported by RemoteVLM)",
    "EleutherAI/gpt-j-6b": "Dedicated (GPT-J module tree: not supported by RemoteVLM)",
}
# module trees RemoteVLM knows: <causal LM>.model.{embed_tokens, layers[i], norm} + lm_head
SUPPORTED_TYPES = ("llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text", "mistral", "olmo", "olmo2",
                   "olmo3", "phi3", "smollm3")
KINDS = ("resid_pre", "resid_post")
MODES = ("set", "add")


class RemoteUnavailableError(RuntimeError):
    """The remote route cannot run here; the message says what is missing."""


def _needs(model: str, host: str) -> str:
    return (f"Remote execution of {model!r} needs network access to NDIF ({host}) and to the Hugging Face hub "
            "(the model's config and tokenizer), and an NDIF API key in NDIF_API_KEY "
            "(https://login.ndif.us). Use remote='local' with a local copy of the model for a dry run.")


def api_host() -> str:
    from nnsight import CONFIG  # deferred: optional heavy dependency; only the nnsight route needs it

    return CONFIG.API.HOST


def api_key() -> str | None:
    from nnsight import CONFIG  # deferred: optional heavy dependency; only the nnsight route needs it

    return os.environ.get("NDIF_API_KEY") or CONFIG.API.APIKEY or None


def ndif_models(timeout: float = 10.0) -> dict[str, str]:
    """NDIF's deployed models now (repo id -> state), or :data:`NDIF_MODELS` (checked
    :data:`NDIF_CHECKED`) when the service cannot be reached."""
    try:
        import nnsight  # deferred: optional heavy dependency; only the nnsight route needs it

        return {k: str(v.get("state", "")) for k, v in nnsight.ndif_status().deployments.items()}
    except Exception:  # offline, service down: the list we checked
        return dict(NDIF_MODELS)


def hub_id_for(name: str) -> str:
    """A registry name (``qwen3-8b``) or hub id (``meta-llama/Llama-3.1-70B``) -> hub id."""
    try:
        spec = get_spec(name, "lm")
    except KeyError:
        raise ValueError(f"unknown LM {name!r}: pass a registered LM name or a hub id 'org/name'") from None
    if not spec.hub_id or spec.source == "tiny":
        raise ValueError(f"LM {name!r} has no hub id (source {spec.source}); NDIF serves hub models only")
    return spec.hub_id


# ------------------------------------------------------------------ requests
@dataclass
class Intervention:
    """An edit of one hook point, as data (it travels with the request).

    ``name``: ``blocks.{i}.hook_resid_pre`` or ``blocks.{i}.hook_resid_post``;
    ``mask``: bool ``[batch, pos]``; ``values``: ``[n, d_model]`` with ``n = mask.sum()``
    (one row per masked position, row-major) or ``[d_model]`` (the same vector everywhere);
    ``mode``: ``"set"`` (activation patching) or ``"add"`` (steering).
    """

    name: str
    mask: torch.Tensor
    values: torch.Tensor
    mode: str = "set"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"intervention mode {self.mode!r}: valid modes are {list(MODES)}")
        if self.mask.dtype != torch.bool or self.mask.ndim != 2:
            raise ValueError(f"intervention mask must be bool [batch, pos]; got {self.mask.dtype} {tuple(self.mask.shape)}")
        n = int(self.mask.sum())
        if self.values.ndim == 2 and self.values.shape[0] != n:
            raise ValueError(f"intervention values have {self.values.shape[0]} rows for {n} masked positions")
        if self.values.ndim not in (1, 2):
            raise ValueError(f"intervention values must be [n, d_model] or [d_model]; got {tuple(self.values.shape)}")


def parse_hook(name: str, n_layers: int) -> tuple[int, str]:
    """``blocks.{i}.hook_resid_pre|post`` -> (i, "resid_pre"|"resid_post"), checked."""
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit() and parts[2].removeprefix("hook_") in KINDS:
        layer = int(parts[1])
        if not 0 <= layer < n_layers:
            raise ValueError(f"layer {layer} of hook {name!r} is out of range: valid layers are 0..{n_layers - 1}")
        return layer, parts[2].removeprefix("hook_")
    raise ValueError(f"hook {name!r} is not available remotely: use blocks.{{i}}.hook_resid_pre or "
                     f"blocks.{{i}}.hook_resid_post (i in 0..{n_layers - 1})")


@dataclass
class RemoteRequest:
    """What travels to the server (plain tensors and lists): everything ``_trace`` reads.

    ``steps``: ``(layer, kind, save, edits)`` in forward order, ``edits`` a list of
    ``(mask [batch, pos], values, mode)``; ``names``: the hook name of each saved step.
    """

    input_ids: torch.Tensor  # [batch, pos]
    attention_mask: torch.Tensor  # [batch, pos]
    image_mask: torch.Tensor  # bool [batch, pos]
    image_rows: torch.Tensor | None  # [n_image_positions, d_model], embedding scale included
    steps: list[tuple[int, str, bool, list[tuple[torch.Tensor, torch.Tensor, str]]]]
    names: list[str]
    logits_mask: torch.Tensor | None  # bool [batch, pos]
    want_resid: bool
    token_ids: torch.Tensor | None = None  # logits of these tokens only
    meta: dict[str, Any] = field(default_factory=dict)

    def nbytes(self) -> int:
        """Bytes of tensor data in the request (what the payload size is made of)."""
        ts = [self.input_ids, self.attention_mask, self.image_mask, self.image_rows, self.logits_mask, self.token_ids]
        ts += [t for _, _, _, edits in self.steps for m, v, _ in edits for t in (m, v)]
        return sum(t.numel() * t.element_size() for t in ts if t is not None)


def build_request(projector: Projector, embed_scale: float, n_layers: int, batch: Batch,
                  features: torch.Tensor | None = None, *, names: Sequence[str] = (), logits_at: LogitsAt = "last",
                  want_resid: bool = False, interventions: Sequence[Intervention] = (),
                  token_ids: torch.Tensor | None = None) -> RemoteRequest:
    """Project the images here and lay out the request (pure; no nnsight, no network).

    ``features [n_images, tokens, d_img]`` feed the projector; its output (times
    ``embed_scale``) is gathered to the batch's image positions, as :meth:`HookedVLM.embed`
    does. ``names``: hook points to return; ``interventions``: edits applied in forward order.
    """
    batch = batch.to("cpu")
    is_img = batch.image_slot >= 0
    rows = None
    if bool(is_img.any()):
        if features is None:
            raise ValueError("the batch has image positions but no image features were given")
        with torch.no_grad():
            img = projector(features.to(next(projector.parameters()).device)) * embed_scale
        flat = img.reshape(-1, img.shape[-1]).float().cpu()
        if int(batch.image_slot.max()) >= flat.shape[0]:
            raise ValueError(f"the batch refers to image slot {int(batch.image_slot.max())} but only "
                             f"{features.shape[0]} images' features were given")
        rows = flat[batch.image_slot[is_img]]
    wanted = {parse_hook(n, n_layers): n for n in names}
    edits: dict[tuple[int, str], list] = {}
    for iv in interventions:
        if tuple(iv.mask.shape) != batch.shape:
            raise ValueError(f"intervention mask {tuple(iv.mask.shape)} does not match the batch {batch.shape}")
        edits.setdefault(parse_hook(iv.name, n_layers), []).append((iv.mask.cpu(), iv.values.detach().float().cpu(),
                                                                    iv.mode))
    order = sorted(set(wanted) | set(edits), key=lambda lk: (lk[0], KINDS.index(lk[1])))
    steps = [(layer, kind, (layer, kind) in wanted, edits.get((layer, kind), [])) for layer, kind in order]
    pos = as_positions(batch, logits_at)
    return RemoteRequest(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, image_mask=is_img, image_rows=rows,
        steps=steps, names=[wanted[(layer, kind)] for layer, kind, save, _ in steps if save],
        logits_mask=None if pos is None else pos.cpu(), want_resid=want_resid,
        token_ids=None if token_ids is None else token_ids.cpu(),
        meta={"n_image_positions": int(is_img.sum()), "projector": projector.config.kind})


def _trace(model, req: RemoteRequest, trace_kwargs: dict) -> tuple[list, Any, Any]:
    """Run one request through an nnsight model (remote, simulated or local).

    The ``with`` body is what the server executes: it may reference only ``torch`` and
    the local variables bound here (plain tensors, ints, strings, lists).
    """
    ids, mask, img_mask, img_rows = req.input_ids, req.attention_mask, req.image_mask, req.image_rows
    steps, logits_mask, want_resid, token_ids = req.steps, req.logits_mask, req.want_resid, req.token_ids
    resid = logits = None  # only saved values come back: these stay None when not asked for
    with model.trace(ids, attention_mask=mask, **trace_kwargs):
        if img_rows is not None:
            emb = model.model.embed_tokens.output
            emb[img_mask] = img_rows.to(emb.dtype)
        acts = [].save()
        for layer, kind, save, edits in steps:
            block = model.model.layers[layer]
            h = block.input if kind == "resid_pre" else block.output
            for m, v, mode in edits:
                if mode == "set":
                    h[m] = v.to(h.dtype)
                else:
                    h[m] = h[m] + v.to(h.dtype)
            if save:
                acts.append(h.detach().clone())
        if want_resid:
            resid = model.model.norm.output.detach().clone().save()
        if logits_mask is not None:
            rows = model.lm_head.output[logits_mask]
            logits = (rows[:, token_ids] if token_ids is not None else rows).detach().clone().save()
    return acts, resid, logits


def _is_network_error(err: BaseException) -> bool:
    mod = type(err).__module__ or ""
    return isinstance(err, (OSError, ConnectionError, TimeoutError)) or mod.startswith(("websocket", "httpx", "httpcore"))


# --------------------------------------------------------------------- model
@dataclass
class RemoteLM:
    """What analyses read off ``vlm.lm``: name, shape, scale, tokenizer (the weights stay remote)."""

    name: str
    hub_id: str
    n_layers: int
    d_model: int
    embed_scale: float
    softcap: float | None
    tokenizer: Any = field(repr=False)
    device: torch.device = torch.device("cpu")


def _text_config(config):
    return getattr(config, "text_config", None) or config


def _embed_scale(module, config) -> float:
    """Gemma's sqrt(d_model) token-embedding scale (1 for the others), read without weights."""
    emb = module.get_input_embeddings()
    scale = getattr(emb, "embed_scale", None)
    if isinstance(scale, torch.Tensor) and scale.device.type != "meta":
        return float(scale)
    if isinstance(scale, (int, float)):
        return float(scale)
    return math.sqrt(config.hidden_size) if config.model_type.startswith("gemma") else 1.0


class RemoteVLM(VLMInputs):
    """A projector here and an LM behind nnsight (remote on NDIF, simulated, or local).

    ``model``: an nnsight ``TransformersModel`` (``from_hub`` builds one on the meta
    device: no weights download). ``remote``: ``True`` (NDIF), ``"local"`` (nnsight's
    serialize/deserialize simulation on a local model), ``False`` (plain local nnsight),
    or a host URL. ``backend``: an nnsight backend to use instead (tests, custom hosts).
    """

    def __init__(self, projector: Projector, model, *, remote: bool | str = True, backend=None,
                 hub_id: str | None = None):
        config = _text_config(model._module.config)
        if config.model_type not in SUPPORTED_TYPES:
            raise ValueError(f"model type {config.model_type!r} is not supported remotely: RemoteVLM knows the module "
                             f"trees of {list(SUPPORTED_TYPES)} (model.embed_tokens, model.layers, model.norm, lm_head)")
        if projector.config.d_out != config.hidden_size:
            raise CheckpointMismatchError(f"projector outputs {projector.config.d_out} dims; the model's d_model is "
                                          f"{config.hidden_size}")
        self.model = model
        self.projector = projector.eval()
        self.remote = remote
        self.backend = backend
        hub = hub_id or getattr(model, "repo_id", None) or projector.config.lm
        self.lm = RemoteLM(name=projector.config.lm, hub_id=hub, n_layers=int(config.num_hidden_layers),
                           d_model=int(config.hidden_size), embed_scale=_embed_scale(model._module, config),
                           softcap=getattr(config, "final_logit_softcapping", None), tokenizer=model.tokenizer)

    @classmethod
    def from_hub(cls, projector: Projector, name: str | None = None, *, remote: bool | str = True,
                 revision: str | None = None) -> "RemoteVLM":
        """The LM named by the projector checkpoint (or ``name``), meta-loaded from the hub
        (config and tokenizer only). Offline: :class:`RemoteUnavailableError`."""
        hub = hub_id_for(name or projector.config.lm)
        try:
            trained = hub_id_for(projector.config.lm)
        except ValueError:
            trained = projector.config.lm
        if trained != hub:
            raise CheckpointMismatchError(f"projector was trained for LM {projector.config.lm!r}, not {hub!r}")
        if hub not in NDIF_MODELS:

            warnings.warn(f"{hub!r} was not among NDIF's deployments when checked ({NDIF_CHECKED}: "
                          f"{sorted(NDIF_MODELS)}); NDIF may refuse it (see nnsight.ndif_status())", stacklevel=2)
        try:
            from nnsight.modeling.transformers import TransformersModel  # deferred: optional heavy dependency; only the nnsight route needs it

            model = TransformersModel(hub, task="text-generation", revision=revision)
        except Exception as err:
            text = str(err).lower()
            if _is_network_error(err) or any(w in text for w in ("offline", "connect", "resolve", "internet")):
                raise RemoteUnavailableError(f"cannot build the remote model {hub!r} here: {type(err).__name__}: "
                                             f"{str(err)[:300]}. {_needs(hub, api_host())}") from err
            raise
        return cls(projector, model, remote=remote, hub_id=hub)

    # ------------------------------------------------------------- inputs
    def request(self, batch: Batch, features: torch.Tensor | None = None, **kw) -> RemoteRequest:
        """The request that would travel (see :func:`build_request`)."""
        return build_request(self.projector, self.lm.embed_scale, self.lm.n_layers, batch, features, **kw)

    # ------------------------------------------------------------ running
    def _trace_kwargs(self) -> dict:
        if self.backend is not None:
            return {"backend": self.backend}
        if self.remote is True or (isinstance(self.remote, str) and self.remote != "local"):
            self.check_ready()
            return {"remote": self.remote}
        return {"remote": "local"} if self.remote == "local" else {}

    def check_ready(self) -> None:
        """Raise :class:`RemoteUnavailableError` if a remote call cannot work (no API key)."""
        if not api_key():
            raise RemoteUnavailableError(f"no NDIF API key (NDIF_API_KEY is not set). {_needs(self.lm.hub_id, api_host())}")

    def run(self, req: RemoteRequest) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
        """Execute a request: (saved activations in ``req.names`` order, final normed residual, logits)."""
        kwargs = self._trace_kwargs()
        try:
            with torch.no_grad():
                acts, resid, logits = _trace(self.model, req, kwargs)
        except RemoteUnavailableError:
            raise
        except Exception as err:
            if "remote" in kwargs and kwargs["remote"] is not False and kwargs["remote"] != "local" \
                    and (_is_network_error(err) or type(err).__name__ == "RemoteError"):
                raise RemoteUnavailableError(f"remote call for {self.lm.hub_id!r} failed: {type(err).__name__}: "
                                             f"{str(err)[:300]}. {_needs(self.lm.hub_id, api_host())}") from err
            raise
        return [a.float() for a in acts], None if resid is None else resid.float(), \
            None if logits is None else logits.float()

    def _softcap(self, logits: torch.Tensor) -> torch.Tensor:
        return softcap(logits, self.lm.softcap)

    def forward(self, batch: Batch, features: torch.Tensor | None = None, *, logits_at: LogitsAt = "last",
                interventions: Sequence[Intervention] = ()) -> VLMOutput:
        """Final normed residual ``[batch, pos, d_model]`` and logits at ``logits_at`` (as
        :meth:`HookedVLM.forward`; the logits rows are selected on the server)."""
        req = self.request(batch, features, logits_at=logits_at, want_resid=True, interventions=interventions)
        _, resid, logits = self.run(req)
        return VLMOutput(resid=resid, logits=None if logits is None else self._softcap(logits),
                         positions=req.logits_mask)

    __call__ = forward

    def run_with_cache(self, batch: Batch, features: torch.Tensor | None = None, *,
                       names: Sequence[str] | None = None, device: str | torch.device | None = None,
                       logits_at: LogitsAt = "last", interventions: Sequence[Intervention] = ()
                       ) -> tuple[VLMOutput, VLMCache]:
        """Run once and return the named hook points (default: every ``hook_resid_post``) as a
        :class:`VLMCache`, after the ``interventions`` (as :meth:`HookedVLM.run_with_cache`
        caches what the hooks produced)."""
        names = list(names) if names is not None else [f"blocks.{i}.hook_resid_post" for i in range(self.lm.n_layers)]
        req = self.request(batch, features, names=names, logits_at=logits_at, interventions=interventions)
        acts, _, logits = self.run(req)
        cache = VLMCache({n: (a.to(device) if device is not None else a) for n, a in zip(req.names, acts)},
                         batch.to("cpu"))
        return VLMOutput(resid=None, logits=None if logits is None else self._softcap(logits),
                         positions=req.logits_mask), cache

    def token_logits(self, batch: Batch, features: torch.Tensor | None, token_ids: torch.Tensor, *,
                     at: LogitsAt = "last", interventions: Sequence[Intervention] = ()) -> torch.Tensor:
        """Logits of a few tokens only (``[n, len(token_ids)]``) at positions ``at``: the
        server sends back just those columns."""
        req = self.request(batch, features, logits_at=at, interventions=interventions, token_ids=token_ids)
        _, _, logits = self.run(req)
        return self._softcap(logits)

    # ------------------------------------------------------------ payloads
    def payload(self, req: RemoteRequest) -> tuple[str, bytes]:
        """(routing metadata JSON, serialized body) of the NDIF request for ``req``, built
        exactly as ``remote=True`` would build it, without sending anything."""
        from nnsight.intervention.backends.remote import RemoteBackend  # deferred: optional heavy dependency; only the nnsight route needs it

        class _Capture(RemoteBackend):
            def request(self, request, tracer):
                self.captured = (request.metadata(), self._serialize(tracer))
                return None

        try:
            key = self.model.to_model_key()
        except Exception as err:
            raise RemoteUnavailableError(f"cannot name {self.lm.hub_id!r} for NDIF (the model key is resolved on the "
                                         f"Hugging Face hub): {type(err).__name__}: {str(err)[:200]}. "
                                         f"{_needs(self.lm.hub_id, api_host())}") from err
        backend = _Capture(key, env=self.model._remoteable_get_env())
        try:
            _trace(self.model, req, {"backend": backend})
        except Exception:
            if not hasattr(backend, "captured"):
                raise
        return backend.captured
