"""Dead latents against dictionary size and the AuxK weight (lab; no LM run).

The SAE study's committed run (figures/out/sae-gemma) has 67% (layer 6) and 51% (layer 12) of
its 2560 latents never active on the held-out tokens. Its data are ~30k training tokens, so the
question is whether the dictionary is too large for them or the revival (AuxK) too weak. This
lab reads an SAE study's activation store (``--run``: a folder written by ``python -m interp.sae``)
and trains the study's sparse coder (EleutherAI ``sparsify``, same loop and split) at every
setting of a small grid, one layer at a time. Per setting: explained variance on the held-out
batches, the share of latents never active there and on the training tokens, and the final
training FVU. No splice (that needs the LM; the study measures it for the chosen setting).

    .venv/bin/python benchmarks/sae_size_lab.py --run runs/sae-gemma --layer 6 [--expansion 1,2,4] [--auxk 0.03125,0.25]
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, save  # noqa: E402

from interp.analysis.store import ActivationStore  # noqa: E402
from interp.io import read_json  # noqa: E402
from interp.studies.sae.config import config_from_dict  # noqa: E402
from interp.studies.sae.data import layer_acts, split_batches  # noqa: E402
from interp.studies.sae.evaluate import encode_chunks, firing_counts, quality  # noqa: E402
from interp.studies.sae.export import from_sparse_coder  # noqa: E402
from interp.studies.sae.train import train_sae  # noqa: E402


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--run", default="runs/sae-gemma", help="an SAE study folder with its activation store")
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--expansion", default="1,2,4", help="comma-separated expansion factors")
    ap.add_argument("--auxk", default="0.03125,0.25", help="comma-separated AuxK weights")
    ap.add_argument("--epochs", type=int, default=0, help="0: the run's")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    run = Path(args.run)
    if not (run / "config.json").exists() or not (run / "store").is_dir():
        ap.error(f"--run {run}: not an SAE study folder with an activation store (run python -m interp.sae first)")
    cfg = config_from_dict(read_json(run / "config.json")["config"])
    store = ActivationStore.open(run / "store")
    name = f"blocks.{args.layer}.hook_resid_post"
    if name not in store.names:
        ap.error(f"--layer {args.layer}: the store holds {sorted(store.names)}")
    train_b, held_b = split_batches(len(store.shards), cfg.data.holdout_frac)
    x_train, x_held = layer_acts(store, name, train_b), layer_acts(store, name, held_b)
    print(f"{name}: {len(x_train)} training tokens, {len(x_held)} held out", flush=True)
    grid = [(e, a) for e in floats(args.expansion) for a in floats(args.auxk)]
    if args.quick:
        grid = grid[:1]
    rows, t0 = [], time.perf_counter()
    for e, a in grid:
        tc = replace(cfg.train, expansion_factor=int(e), auxk_alpha=a, epochs=args.epochs or cfg.train.epochs)
        if args.quick:
            tc = replace(tc, epochs=1)
        res = train_sae(x_train, tc)
        sae = from_sparse_coder(res.coder)
        q = quality(sae, x_held)
        vals, idx = encode_chunks(sae, x_train)
        dead_train = float((firing_counts(vals, idx, sae.d_sae) == 0).float().mean())
        row = {"layer": args.layer, "expansion_factor": int(e), "d_sae": sae.d_sae, "auxk_alpha": a, "k": tc.k,
               "epochs": tc.epochs, "explained_variance": q["explained_variance"], "dead_frac_held": q["dead_frac"],
               "dead_frac_train": dead_train, "alive": int(round(sae.d_sae * (1 - q["dead_frac"]))),
               "final_train_fvu": res.epoch_fvu[-1], "seconds": res.seconds}
        rows.append(row)
        print(f"x{int(e)} ({sae.d_sae}) auxk {a:g}: EV {q['explained_variance']:.3f}  dead held {q['dead_frac']:.3f}  "
              f"dead train {dead_train:.3f}  alive {row['alive']}  ({res.seconds:.0f} s)", flush=True)
    save(args.out or f"sae_size_layer{args.layer}" + ("_quick" if args.quick else ""),
         {"run": str(run), "layer": args.layer, "train_tokens": len(x_train), "held_tokens": len(x_held),
          "store_meta": store.meta, "rows": rows, "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
