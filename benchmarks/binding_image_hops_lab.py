"""Where a binding image model fails on pictures it has not seen: the first hop or the second
(lab; no training).

For a trained image-text (or noise-image-text) model of the binding study, image episodes are
drawn from the training bank (pictures it was trained on, with fresh items and queries, as in
training) and from the held-out bank, in the training layout (dense queries); per set, the
main-query accuracy and the first hop read at the preset's middle block (``train.mid_layer``:
the shape bound to the queried colour, through the final norm and the LM head). A model that
reads its training pictures' first hop but not the held-out ones has memorised the pictures; one
that reads the first hop on both but answers only on the training ones fails at the second hop.

    .venv/bin/python benchmarks/binding_image_hops_lab.py runs/binding-cpu-s1-b7 [--seed 1] [--regime image-text]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, save  # noqa: E402

from interp.io import load_tensors, read_json  # noqa: E402
from interp.models.encoders import load_encoder  # noqa: E402
from interp.studies.binding.bank import context_bank, noise_pool  # noqa: E402
from interp.studies.binding.config import SECTIONS, TOP, load_config  # noqa: E402
from interp.studies.binding.model import BindingModel  # noqa: E402
from interp.studies.binding.task import Vocab  # noqa: E402
from interp.studies.binding.train import Sources, answer_loss  # noqa: E402


@torch.no_grad()
def hops(model, sources, bank, cfg, kind: str, n: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng([seed, 99])
    hits = mid = mid_n = 0
    for s in range(0, n, 64):
        lay, ext = sources.batch(kind, rng, min(64, n - s), n=cfg.task.n_objects, bank=bank, dense=cfg.train.dense)
        out = answer_loss(model, lay, ext, cfg.train)
        hits += int(out["hits"])
        mid += int(out.get("mid_hits", 0))
        mid_n += int(out["mid_n"])
    return {"main": 100.0 * hits / n, "first_hop": 100.0 * mid / max(mid_n, 1)}


def recorded_config(run: Path):
    """The run's config as recorded in its config.json (every key, onto the cpu preset)."""
    rec = read_json(run / "config.json")["config"]
    flat = {k: rec[k] for k in TOP if k in rec}
    flat |= {f"{sec}.{k}": v for sec in SECTIONS for k, v in rec.get(sec, {}).items()}
    return load_config(Path(__file__).resolve().parents[1] / "experiments" / "binding_cpu.toml", flat)


def load_trained(ap, run: Path, seed: int | None, regime: str):
    """(config, seed, vocab, model, encoder, training bank, held-out bank) of a finished ``regime``
    model in a binding study folder; a bad folder or seed is an ``ap.error`` (exit 2)."""
    if not (run / "config.json").exists():
        ap.error(f"{run}: not a binding study folder (no config.json)")
    cfg = recorded_config(run)
    seed = seed if seed is not None else cfg.seeds[0]
    weights = run / f"seed{seed}" / regime / "model.safetensors"
    if not weights.exists():
        ap.error(f"{weights}: no trained {regime} model for seed {seed}")
    vocab = Vocab(cfg.task, lookups=cfg.train.lookups)
    model = BindingModel(cfg.model, vocab, seed=seed)
    model.load_state(load_tensors(weights)[0])
    model.eval()
    encoder = load_encoder(cfg.image.encoder)
    n = cfg.task.n_objects
    train_bank = context_bank(cfg.task, cfg.image, encoder, n, cfg.image.bank_size, seed=1, progress=False)
    held_bank = context_bank(cfg.task, cfg.image, encoder, n, cfg.image.eval_bank_size, seed=2, progress=False)
    return cfg, seed, vocab, model, encoder, train_bank, held_bank


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("run", help="a binding study folder")
    ap.add_argument("--seed", type=int, default=None, help="default: the run's only seed")
    ap.add_argument("--regime", default="image-text", choices=("image-text", "noise-image-text"))
    ap.add_argument("--episodes", type=int, default=512)
    args = ap.parse_args()
    run = Path(args.run)
    if args.quick:
        args.episodes = 64
    cfg, seed, vocab, model, encoder, train_bank, held_bank = load_trained(ap, run, args.seed, args.regime)
    pool = noise_pool(encoder, cfg.image, train_bank.features, seed=3) if args.regime == "noise-image-text" else None
    sources = Sources(cfg.task, vocab, train_bank, pool, n_noise=cfg.image.n_noise, n_image=encoder.n_tokens,
                      noise_every=cfg.image.noise_every(encoder.n_tokens))
    kind = "image" if args.regime == "image-text" else "noise-image"
    rows = {}
    for name, bank in (("training pictures", train_bank), ("held-out pictures", held_bank)):
        rows[name] = hops(model, sources, bank, cfg, kind, args.episodes, seed)
        print(f"{run.name} seed {seed} {args.regime}, {name}: main query {rows[name]['main']:.1f}%  "
              f"first hop at block {cfg.train.mid_layer} {rows[name]['first_hop']:.1f}%", flush=True)
    save(f"binding_image_hops_{run.name}_s{seed}" + ("_quick" if args.quick else ""),
         {"run": str(run), "seed": seed, "regime": args.regime, "episodes": args.episodes, "encoder": cfg.image.encoder,
          "bank_size": cfg.image.bank_size, "rows": rows})


if __name__ == "__main__":
    main()
