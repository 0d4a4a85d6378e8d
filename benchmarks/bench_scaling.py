"""Scaling: FLOPs, time and activation memory of one projector-training step here, and the
projected cost at paper scale.

1. On the embedded LM (gemma-3-270m; smollm2-135m with --quick), one real training step
   (batch 16, AdamW, the study's prompts) at the quick study's shape (one pooled image
   token) and, in the full mode, at the 49-token EfficientNet shape: FLOPs counted by torch
   (FlopCounterMode), wall and CPU seconds per step, the bytes autograd saves for the
   backward (activation memory, parameters excluded), the process's peak RSS, and the
   analytic model ``4 * N_blocks * T`` (forward 2NT + backward to the activations only
   2NT: the frozen LM computes no weight gradients) + ``4 * d * V`` per answer position
   (logits only there), with the measured/analytic ratio: the check of the formula the
   projection uses.
2. Training examples per image per epoch for every ablation of ``experiments/paper.toml``
   on the THINGS taxonomy (2 leaf questions + 2 per kept hypernym, from the study's own
   question code; one image per concept, original world: a world permutes concepts and
   leaves the count unchanged), and the question + answer token count of those prompts
   (embedded LM's tokenizer, a stand-in for Qwen's/Llama's).
3. The projection: LMs (block parameters from their published configs) x encoders
   (DINOv2-L/14 reg4: 256 tokens; SigLIP-B/16: 196) over the THINGS training split (70%
   of ~17k images), 5 epochs, global batch 16: FLOPs per step x steps per run x runs (the
   issue's 18 conditions = 3 worlds x 6 random rates, x 3 seeds; and paper.toml's whole
   grid), GPU-hours at an assumed sustained 40% of the dense bf16 peak of an A100 / H100,
   and memory (bf16 weights + activations scaled from the measured bytes per token-layer).

    .venv/bin/python benchmarks/bench_scaling.py [--quick]
"""

from __future__ import annotations

import math
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import count_flops, matmul_peak, parser, save, timed  # noqa: E402

from interp.examples import Example, QuestionTokens, example_batch  # noqa: E402
from interp.models.hooked import HookedLM  # noqa: E402
from interp.models.lm import load_lm  # noqa: E402
from interp.train_projector import answer_ce_sum  # noqa: E402
from interp.vlm import HookedVLM  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# From each model's config.json on the hub; block parameters computed from them match the model
# cards' "non-embedding parameters" (Qwen3-0.6B 0.44B, Qwen3-1.7B 1.4B, Qwen3-8B 6.95B).
LMS = {
    "qwen3-0.6b": {"hidden_size": 1024, "num_hidden_layers": 28, "intermediate_size": 3072, "num_attention_heads": 16,
                   "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": True},
    "qwen3-1.7b": {"hidden_size": 2048, "num_hidden_layers": 28, "intermediate_size": 6144, "num_attention_heads": 16,
                   "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": True},
    "qwen3-8b": {"hidden_size": 4096, "num_hidden_layers": 36, "intermediate_size": 12288, "num_attention_heads": 32,
                 "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": False},
    "llama-3.2-1b": {"hidden_size": 2048, "num_hidden_layers": 16, "intermediate_size": 8192,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
                     "tie_word_embeddings": True},
    "llama-3.1-8b": {"hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 14336,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
                     "tie_word_embeddings": False},
}
# params of the vision tower, tokens it runs on, tokens handed to the LM (registry: n_tokens)
ENCODERS = {"dinov2-large-reg4": {"params": 304e6, "tokens": 1 + 4 + 256, "image_tokens": 256},
            "siglip-base": {"params": 93e6, "tokens": 196, "image_tokens": 196}}
PAPER = {"images": 17_000, "train_frac": 0.70, "epochs": 5.0, "batch": 16,
         "issue_ablations": ["random:0.1", "random:0.3", "random:0.5", "random:0.7", "random:0.9", "random:1.0"],
         "issue_worlds": 3, "seeds": 3}
GPUS = {"A100": 312e12, "H100 SXM": 989e12}  # dense bf16 peak FLOP/s
MFU = 0.4


def _peak_rss_gb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def block_params(c: dict) -> int:
    """Parameters of the decoder blocks (attention + gated MLP; norms are negligible)."""
    d, hd = c["hidden_size"], c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    attn = d * hd * (c["num_attention_heads"] * 2 + c["num_key_value_heads"] * 2)
    mlp = 3 * d * c["intermediate_size"]
    return c["num_hidden_layers"] * (attn + mlp)


def total_params(c: dict) -> int:
    emb = c["vocab_size"] * c["hidden_size"]
    return block_params(c) + emb * (1 if c["tie_word_embeddings"] else 2)


def step_flops_model(n_blocks: int, tokens: int, d: int, vocab: int, n_answer: int) -> float:
    """Analytic FLOPs of one step: 4 N T (blocks, forward + activation gradients) + 4 d V per
    answer position (unembedding forward + its input gradient)."""
    return 4.0 * n_blocks * tokens + 4.0 * d * vocab * n_answer


def saved_activation_bytes(fn, params) -> int:
    """Bytes autograd keeps for the backward while ``fn`` runs (distinct storages; parameters
    and other frozen weights, which autograd also references, excluded)."""
    skip = {p.untyped_storage().data_ptr() for p in params}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in skip:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def measure_step(lm: HookedLM, n_tok: int, pool_to: int | None, bs: int = 16, reps: int = 3) -> dict:
    proj = HookedVLM.new_projector(lm, "efficientnet-lite0", 1280, n_tok, pool_to=pool_to)
    vlm = HookedVLM(lm, proj)
    words = ["bird", "fish", "musical instrument", "vegetable", "item of clothing", "tool", "vehicle", "fruit"]
    exs = [Example(i, f"Is there a {words[i % 8]} in the image?", "Yes" if i % 2 else "No", "hypernym", "c",
                   words[i % 8]) for i in range(bs)]
    feats = torch.randn(bs, n_tok, 1280)
    batch, f = example_batch(QuestionTokens(lm.tokenizer), exs, feats, vlm.n_image_tokens, with_answer=True)
    opt = torch.optim.AdamW(proj.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        ce, n = answer_ce_sum(vlm, batch, f)
        (ce / n).backward()
        opt.step()

    weights = list(lm.hf.parameters()) + list(proj.parameters())
    act_bytes = saved_activation_bytes(lambda: answer_ce_sum(vlm, batch, f), weights)
    flops = count_flops(step)
    cpu0 = time.process_time()
    sec = timed(step, reps)
    cpu = (time.process_time() - cpu0) / (reps + 1)  # CPU seconds (all threads) per step: robust to a busy machine
    n_blocks = sum(p.numel() for p in lm.hf.model.layers.parameters())
    tokens = int(batch.attention_mask.numel())
    n_answer = int(batch.answer_targets()[1].numel())
    model = step_flops_model(n_blocks, tokens, lm.d_model, lm.vocab_size, n_answer)
    n_layers = len(lm.hf.model.layers)
    return {"image_tokens": vlm.n_image_tokens, "batch": bs, "tokens_per_step": tokens, "seq_len": batch.shape[1],
            "answer_positions": n_answer, "gflop_per_step": flops / 1e9, "gflop_model": model / 1e9,
            "measured_over_model": flops / model, "seconds_per_step": sec, "cpu_seconds_per_step": cpu,
            "threads": torch.get_num_threads(), "achieved_gflops_wall": flops / sec / 1e9,
            "achieved_gflops_per_cpu_second": flops / cpu / 1e9,
            "saved_activation_mb": act_bytes / 1e6,
            "saved_bytes_per_token_layer_dmodel": act_bytes / (tokens * n_layers * lm.d_model)}


def condition_examples(quick: bool) -> dict:
    """Examples per image per epoch for each ablation of paper.toml, on the THINGS taxonomy
    (the embedded one if THINGS is missing), and 50 of the study's training questions."""
    from interp.studies.taxonomy.conditions import removed_leaves, world_mapping
    from interp.data import taxonomy as tx
    from interp.studies.taxonomy.config import load_config, parse_ablation
    from interp.studies.taxonomy.questions import examples_for_images

    cfg = load_config(ROOT / "experiments" / "paper.toml")
    if tx.THINGS_TSV.exists():
        taxonomy, name = tx.load_things_taxonomy(tx.THINGS_TSV), "things"
    else:
        from interp.data.images import embedded_taxonomy

        taxonomy, name = embedded_taxonomy(), "embedded"
    leaves = sorted(taxonomy.leaves)
    images = [(i, c) for i, c in enumerate(leaves)]  # one image per concept: per-image averages
    mapping = world_mapping(leaves, taxonomy.pairs, "original", 42)
    ablations = list(dict.fromkeys(cfg.grid.ablations + cfg.grid.control_ablations))
    if quick:
        ablations = ["random:0.1", "random:1.0"]
    per_image = {}
    for a in ablations:
        removed = removed_leaves(taxonomy.pairs, parse_ablation(a), 42)
        per_image[a] = len(examples_for_images(images, taxonomy, mapping, removed, train=True, seed=42)) / len(images)
    ex = examples_for_images(images[:200], taxonomy, mapping, {}, train=True, seed=42)
    return {"taxonomy": name, "n_concepts": len(leaves), "examples_per_image": per_image,
            "hypernyms_per_leaf": len(taxonomy.pairs) / len(leaves), "questions": [e.question for e in ex[:50]]}


def study_runs_here(step_cpu: dict[str, float]) -> dict:
    """Steps of every run of experiments/quick.toml and full.toml on the embedded image set (its
    real train split, the study's own question and ablation code, original world) and the CPU
    time they take at the measured CPU-seconds per step (``step_cpu``: image-token shape -> s)."""
    from interp.studies.taxonomy.conditions import removed_leaves, world_mapping
    from interp.data import images as img
    from interp.studies.taxonomy.config import load_config, parse_ablation
    from interp.studies.taxonomy.questions import examples_for_images
    from interp.studies.taxonomy.run import grid_runs
    from interp.train_projector import plan

    taxonomy = img.embedded_taxonomy()
    image_set = img.load_image_set(img.build_embedded_images(progress=False))
    concepts = sorted(set(image_set.concepts) & set(taxonomy.leaves))
    taxonomy, image_set = taxonomy.restrict(concepts), image_set.restrict(concepts)
    train = img.split_images(image_set, "renderings", 0)["train"]
    images = [(i, r.concept) for i, r in enumerate(train)]
    mapping = world_mapping(sorted(taxonomy.leaves), taxonomy.pairs, "original", 42)
    out = {"train_images": len(train)}
    for preset in ("quick", "full"):
        cfg = load_config(ROOT / "experiments" / f"{preset}.toml")
        shape = "quick_shape" if cfg.model.pool_to == 1 else "patch_shape"
        steps: dict[tuple[str, int], int] = {}
        for spec in grid_runs(cfg):
            key = (spec.ablation, spec.seed)
            if key not in steps:
                n = len(examples_for_images(images, taxonomy, mapping,
                                            removed_leaves(taxonomy.pairs, parse_ablation(spec.ablation), spec.seed),
                                            train=True, seed=spec.seed))
                steps[key] = plan(n, cfg.train)[1]
        total = sum(steps[(s.ablation, s.seed)] for s in grid_runs(cfg))
        sec = step_cpu.get(shape)
        out[preset] = {"runs": len(grid_runs(cfg)), "step_shape": shape, "total_steps": total,
                       "steps_per_run": {f"{a} s{s}": n for (a, s), n in steps.items() if s == cfg.grid.seeds[0]},
                       "cpu_hours_at_measured_step": None if sec is None else total * sec / 3600}
    return out


def run_cost(lm: dict, enc: dict, text_tokens: float, per_image: float) -> dict:
    """FLOPs per step and per run of one (LM, encoder, ablation)."""
    seq = 1 + enc["image_tokens"] + text_tokens  # BOS + image tokens + question + answer/EOS
    tokens = PAPER["batch"] * seq
    flops_step = step_flops_model(block_params(lm), tokens, lm["hidden_size"], lm["vocab_size"], 2 * PAPER["batch"])
    train_images = PAPER["images"] * PAPER["train_frac"]
    steps = math.ceil(PAPER["epochs"] * math.ceil(train_images * per_image / PAPER["batch"]))
    return {"seq_len": seq, "tokens_per_step": tokens, "flops_step": flops_step, "steps": steps,
            "flops_run": flops_step * steps}


def project(text_tokens: float, per_image: dict[str, float], grid: list, act_factor: float) -> dict:
    """Per (LM, encoder): TFLOP per step, steps and PFLOP per run, totals and GPU-hours for the
    issue's 54 runs and paper.toml's grid, and memory."""
    out = {}
    issue = [a for a in PAPER["issue_ablations"] if a in per_image]
    for lm_name, lm in LMS.items():
        for enc_name, enc in ENCODERS.items():
            c = {a: run_cost(lm, enc, text_tokens, per_image[a]) for a in per_image}
            issue_flops = sum(c[a]["flops_run"] for a in issue) * PAPER["issue_worlds"] * PAPER["seeds"]
            grid_flops = sum(c[spec.ablation]["flops_run"] for spec in grid) if all(
                s.ablation in c for s in grid) else None
            any_c = next(iter(c.values()))
            # activations: measured bytes per (token, layer, d_model) in fp32, halved for bf16
            act_gb = act_factor / 2 * any_c["tokens_per_step"] * lm["num_hidden_layers"] * lm["hidden_size"] / 1e9
            row = {"tflop_per_step": any_c["flops_step"] / 1e12, "seq_len": any_c["seq_len"],
                   "steps_per_run": {a: c[a]["steps"] for a in c},
                   "pflop_per_run_100pct": c["random:1.0"]["flops_run"] / 1e15 if "random:1.0" in c else None,
                   "pflop_per_run_10pct": c["random:0.1"]["flops_run"] / 1e15 if "random:0.1" in c else None,
                   "issue_runs": len(issue) * PAPER["issue_worlds"] * PAPER["seeds"],
                   "issue_pflop": issue_flops / 1e15,
                   "issue_gpu_hours": {g: issue_flops / (p * MFU) / 3600 for g, p in GPUS.items()},
                   "weights_bf16_gb": total_params(lm) * 2 / 1e9, "activations_bf16_gb_per_step": act_gb,
                   "encode_all_images_pflop": PAPER["images"] * 2 * enc["params"] * enc["tokens"] / 1e15}
            if grid_flops is not None:
                row.update({"grid_runs": len(grid), "grid_pflop": grid_flops / 1e15,
                            "grid_gpu_hours": {g: grid_flops / (p * MFU) / 3600 for g, p in GPUS.items()}})
            out[f"{lm_name} + {enc_name}"] = row
    return out


def main() -> None:
    args = parser(__doc__).parse_args()
    torch.manual_seed(0)
    name = "smollm2-135m" if args.quick else "gemma-3-270m"
    t0 = time.perf_counter()
    lm = HookedLM(load_lm(name))
    rss = {"after_lm_load": _peak_rss_gb()}
    res = {"lm": name, "load_seconds": time.perf_counter() - t0, "matmul_peak_gflops": matmul_peak() / 1e9,
           "mfu_assumed": MFU, "attn_implementation": getattr(lm.hf.config, "_attn_implementation", None)}
    res["quick_shape"] = measure_step(lm, 49, 1, reps=1 if args.quick else 5)  # experiments/quick.toml: pool_to = 1
    rss["after_quick_shape_steps"] = _peak_rss_gb()
    if not args.quick:
        res["patch_shape"] = measure_step(lm, 49, None, reps=3)  # all 49 EfficientNet tokens
        rss["after_patch_shape_steps"] = _peak_rss_gb()
    res["peak_rss_gb"] = rss
    cond = condition_examples(args.quick)
    qt = QuestionTokens(lm.tokenizer)
    questions = cond.pop("questions")
    text_tokens = sum(len(qt(q)) for q in questions) / len(questions) + 2  # + " Yes"/" No" and EOS
    res["conditions"] = {**cond, "text_tokens_per_example": text_tokens}
    res["study_runs_here"] = study_runs_here({k: res[k]["cpu_seconds_per_step"]
                                              for k in ("quick_shape", "patch_shape") if k in res})
    from interp.studies.taxonomy.config import load_config
    from interp.studies.taxonomy.run import grid_runs

    grid = grid_runs(load_config(ROOT / "experiments" / "paper.toml"))
    act = (res.get("patch_shape") or res["quick_shape"])["saved_bytes_per_token_layer_dmodel"]
    res["projection"] = project(text_tokens, cond["examples_per_image"], grid, act)
    save("scaling_quick" if args.quick else "scaling", res)


if __name__ == "__main__":
    main()
