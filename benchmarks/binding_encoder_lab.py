"""What the frozen encoder keeps of a drawn object, layer by layer (lab; the binding study's image version).

The binding study's image version shows the context as a picture: one coloured shape per cell of
a 7x7 grid (``interp.studies.binding.render``), read by the decoder through the encoder's patch
tokens. The first hop ("which shape has the queried colour") needs each cell's colour and shape.
This lab renders binding contexts (the preset's pools, 4 objects) and fits a linear probe
(the warm start's multinomial logistic regression) from each EfficientNet-Lite0 block's output,
average-pooled to the 7x7 grid, at an object's cell to its colour and to its shape; scored on
contexts drawn with another seed.

    .venv/bin/python benchmarks/binding_encoder_lab.py [--train 1500] [--test 300] [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, save  # noqa: E402

from interp.models.encoders import load_encoder, pixels  # noqa: E402
from interp.studies.binding.config import load_config  # noqa: E402
from interp.studies.binding.render import render_context  # noqa: E402
from interp.studies.binding.task import Episodes, sample_episodes  # noqa: E402
from interp.warmstart import fit_classifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = (2, 4, 7, 10, 12, 15)


def episodes(cfg, seed: int, size: int) -> Episodes:
    rng = np.random.default_rng([seed, cfg.task.n_objects, 7])
    return sample_episodes(rng, cfg.task, size, cfg.task.n_objects, colour_pool=cfg.image.colour_pool(cfg.task),
                           shape_pool=cfg.image.shape_pool(cfg.task), grid_cells=cfg.image.grid ** 2)


@torch.no_grad()
def block_maps(enc, ep: Episodes, grid: int, batch: int = 64) -> dict[str, torch.Tensor]:
    """Per kept block and the head: ``[n_contexts, grid * grid, channels]``."""
    net, out = enc.net, {}
    for s in range(0, len(ep.colours), batch):
        ims = [render_context(ep.colours[b], ep.shapes[b], ep.cells[b], size=enc.image_size, grid=grid)
               for b in range(s, min(len(ep.colours), s + batch))]
        h = net._swish(net._bn0(net._conv_stem(enc.normalise(pixels(ims, enc.image_size)))))
        for i, blk in enumerate(net._blocks):
            h = blk(h)
            if i in BLOCKS:
                pooled = nn.functional.adaptive_avg_pool2d(h, grid)
                out.setdefault(f"block {i}", []).append(rearrange(pooled, "b d h w -> b (h w) d"))
        out.setdefault("head (the default tokens)", []).append(
            rearrange(net._swish(net._bn1(net._conv_head(h))), "b d h w -> b (h w) d"))
    return {k: torch.cat(v) for k, v in out.items()}


def at_cells(F: torch.Tensor, ep: Episodes, attr: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(features of every object's cell ``[n * k, d]``, its colour or shape id ``[n * k]``)."""
    cells = torch.as_tensor(ep.cells).long()
    x = F[torch.arange(len(F))[:, None].expand_as(cells), cells]
    return rearrange(x, "n k d -> (n k) d"), torch.as_tensor(getattr(ep, attr)).long().flatten()


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--train", type=int, default=1500, help="rendered contexts to fit the probes on")
    ap.add_argument("--test", type=int, default=300, help="rendered contexts (another seed) to score them on")
    ap.add_argument("--l2", type=float, default=1e-3)
    args = ap.parse_args()
    if args.quick:
        args.train, args.test = 60, 20
    if args.train < 1 or args.test < 1:
        ap.error(f"--train {args.train} / --test {args.test}: both must be >= 1")
    t0 = time.perf_counter()
    cfg = load_config(ROOT / "experiments" / "binding_cpu.toml")
    enc = load_encoder("efficientnet-lite0")
    tr, te = episodes(cfg, 11, args.train), episodes(cfg, 12, args.test)
    Ftr, Fte = block_maps(enc, tr, cfg.image.grid), block_maps(enc, te, cfg.image.grid)
    rows = []
    for name in Ftr:
        row = {"layer": name, "d": int(Ftr[name].shape[-1])}
        for attr in ("colours", "shapes"):
            xt, yt = at_cells(Ftr[name], tr, attr)
            xe, ye = at_cells(Fte[name], te, attr)
            n = int(max(yt.max(), ye.max())) + 1
            W, b = fit_classifier(xt, yt, n, l2=args.l2)
            row[f"{attr}_train"] = 100 * float(((xt @ W.T + b).argmax(1) == yt).float().mean())
            row[f"{attr}_test"] = 100 * float(((xe @ W.T + b).argmax(1) == ye).float().mean())
            row[f"{attr}_classes"] = len(set(yt.tolist()))
        rows.append(row)
        print(f"{name:28s} d {row['d']:5d}  colour {row['colours_test']:5.1f}%  shape {row['shapes_test']:5.1f}%  "
              f"(held out; train {row['colours_train']:.1f} / {row['shapes_train']:.1f})", flush=True)
    save("binding_encoder" + ("_quick" if args.quick else ""),
         {"train_contexts": args.train, "test_contexts": args.test, "objects": cfg.task.n_objects,
          "colours": cfg.image.colours, "shapes": cfg.image.shapes, "l2": args.l2, "rows": rows,
          "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
