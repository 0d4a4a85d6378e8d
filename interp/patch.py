"""`python -m interp.patch --layer 14`: activation patching on a trained VLM.

Modes (clean -> corrupted pairs):
  image   image of --clean vs image of --corrupt, same question (default: eagle vs shark, asked
          "Is there an eagle in the image?": the quick study's projector answers it +3.28 vs -1.55;
          asked "Is there a bird ...?" it says No to both, -2.22 vs -1.79)
  text    "This is a picture of a <clean>." vs "<corrupt>" prompts (must tokenize to equal length)
  cross   the clean concept word's text tokens (source) -> the corrupted image's image tokens
          (target), and back with --reverse
Metric: logit(" Yes") - logit(" No") at the last question token (or --tokens A B); its clean and
corrupted values are printed, with a warning when the model does not answer the pair the right
way round (then the normalised grid is not a share of the answer restored).

Examples:
    python -m interp.patch --layer 14
    python -m interp.patch --layer all --positions image --hook hook_attn_out
    python -m interp.patch --mode cross --layer all --clean eagle --corrupt shark
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from interp.analysis.attribution import attribution_grid, compare_to_exact
from interp.analysis.patching import PatchInput, cross_patch, logit_diff_metric, metric_value, patch_grid
from interp.configfile import add_dry_run, dry_run_exit
from interp.data.images import embedded_image_root, load_image_set
from interp.io import write_csv
from interp.models.hooked import BLOCK_HOOK_SUFFIXES
from interp.models.registry import get_spec
from interp.plots import heatmap, save_figure
from interp.projector import Projector
from interp.sequence import single_token_id, vlm_item
from interp.vlm import load_vlm


def _default_checkpoint() -> Path | None:
    found = sorted(Path("runs").glob("*/runs/lm-original-*/projector.safetensors"))
    return found[0] if found else None


def _concept_image(name: str):
    """An image for a concept name (embedded set, test rendering) or a path to an image file."""

    p = Path(name)
    if p.suffix.lower() in (".png", ".jpg", ".jpeg") or p.exists():
        if not p.exists():
            raise FileNotFoundError(f"no image file {p}")
        return Image.open(p)

    image_set = load_image_set(embedded_image_root())
    rec = image_set.first_rendering(name)
    if rec is None:
        close = sorted(c for c in image_set.concepts if name[:3] in c)[:10]
        raise ValueError(f"no concept {name!r} in the embedded image set; similar: {close}; or pass an image path")
    return Image.open(rec.path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.patch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer", default="all", help="a block index or 'all'")
    ap.add_argument("--hook", default="hook_resid_pre", help="per-block hook: hook_resid_pre, hook_resid_post, "
                    "hook_attn_out, hook_mlp_out, attn.hook_z ...")
    ap.add_argument("--positions", default="all", choices=["image", "text", "last", "all"])
    ap.add_argument("--mode", default="image", choices=["image", "text", "cross"])
    ap.add_argument("--reverse", action="store_true", help="cross mode: image tokens -> text tokens")
    ap.add_argument("--clean", default="eagle", help="a concept of the embedded set or an image path")
    ap.add_argument("--corrupt", default="shark")
    ap.add_argument("--question", default="Is there an eagle in the image?")
    ap.add_argument("--tokens", nargs=2, default=[" Yes", " No"], metavar=("GOOD", "BAD"))
    ap.add_argument("--attribution", action="store_true",
                    help="also estimate the grid by attribution patching (one forward + backward) and report "
                         "its agreement with the exact grid")
    ap.add_argument("--checkpoint", type=Path, default=None, help="projector.safetensors (default: the quick study's)")
    ap.add_argument("--lm", default=None, help="LM name (default: the checkpoint's)")
    ap.add_argument("--out", type=Path, default=Path("runs/patch"))
    add_dry_run(ap)
    args = ap.parse_args(argv)

    ckpt = args.checkpoint or _default_checkpoint()
    if ckpt is None or not Path(ckpt).exists():
        ap.error(f"no projector checkpoint {'at ' + str(ckpt) if ckpt else 'found under runs/'}: train one with "
                 "`python -m interp.run experiments/quick.toml` or pass --checkpoint")
    # everything checkable from the checkpoint's header and the registry, before any model loads
    try:
        pcfg = Projector.read_config(ckpt)
        spec = get_spec(args.lm or pcfg.lm, "lm")
    except (ValueError, KeyError) as e:
        ap.error(e.args[0] if isinstance(e, KeyError) else str(e))
    if args.lm and args.lm != pcfg.lm:
        ap.error(f"checkpoint {ckpt} was trained for LM {pcfg.lm!r}, not --lm {args.lm!r}: pass a checkpoint of "
                 f"{args.lm!r} or drop --lm")
    if args.layer != "all":
        if not args.layer.lstrip("-").isdigit():
            ap.error(f"--layer {args.layer!r}: expected a block index or 'all'")
        if spec.n_layers and not 0 <= int(args.layer) < spec.n_layers:
            ap.error(f"--layer {args.layer}: {spec.name} has blocks 0..{spec.n_layers - 1} (or 'all')")

    if args.hook not in BLOCK_HOOK_SUFFIXES:
        common = [h for h in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
                              "attn.hook_z", "mlp.hook_post") if h in BLOCK_HOOK_SUFFIXES]
        ap.error(f"--hook {args.hook!r}: not a per-block hook (blocks.{{i}}.<hook>); common ones: {common}")
    images = {}  # concept -> its image, found (and kept) before any model loads
    for flag, name in (("--clean", args.clean), ("--corrupt", args.corrupt)):
        if args.mode == "image" or (args.mode == "cross" and flag == "--corrupt"):  # an image of it is needed
            try:
                images[name] = _concept_image(name)
            except (ValueError, FileNotFoundError, OSError) as e:
                ap.error(f"{flag} {name!r}: {e}")
    if args.dry_run:
        dry_run_exit(ap, f"checkpoint {ckpt} with {args.mode} patching at layer {args.layer}")
    vlm = load_vlm(ckpt, lm=args.lm)
    lm = vlm.lm
    try:
        layers = list(range(lm.n_layers)) if args.layer == "all" else [lm.check_layer(int(args.layer))]
        hooks = [lm.check_hook(f"blocks.{layer}.{args.hook}") for layer in layers]  # full canonical names
    except ValueError as e:
        ap.error(str(e))
    tok = vlm.tokenizer
    metric = logit_diff_metric(vlm, single_token_id(tok, args.tokens[0]), single_token_id(tok, args.tokens[1]))

    def image_input(concept: str) -> PatchInput:
        feats = vlm.encode([images[concept]])
        return PatchInput(vlm.build([vlm_item(0, args.question)]), feats)

    def text_input(concept: str) -> PatchInput:
        art = "an" if concept[0] in "aeiou" else "a"
        return PatchInput(vlm.build([vlm_item(None, f"This is a picture of {art} {concept.replace('_', ' ')}. "
                                                     + args.question)]))

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{args.mode}-{args.clean}-vs-{args.corrupt}-{args.hook}-L{args.layer}"
    if args.mode == "cross":
        txt, img = text_input(args.clean), image_input(args.corrupt)
        word = tok(" " + args.clean.replace("_", " "), add_special_tokens=False)["input_ids"]
        ids = txt.batch.input_ids[0].tolist()
        start = next((i for i in range(len(ids)) if ids[i:i + len(word)] == word), None)
        if start is None:
            ap.error(f"could not find the tokens of {args.clean!r} in the text prompt")
        word_pos = list(range(start, start + len(word)))
        img_pos = img.batch.mask("image")[0].nonzero().flatten().tolist()
        if args.reverse:
            values = cross_patch(vlm, img, img_pos, txt, word_pos, metric, hooks=hooks)
        else:
            values = cross_patch(vlm, txt, word_pos, img, img_pos, metric, hooks=hooks)
        rows = [{"layer": l, "value": float(v)} for l, v in zip(layers, values)]
        print("\n".join(f"layer {r['layer']:>2}: {r['value']:+.3f}" for r in rows))
    else:
        make = image_input if args.mode == "image" else text_input
        clean, corr = make(args.clean), make(args.corrupt)
        if clean.batch.shape != corr.batch.shape:
            ap.error(f"{args.clean!r} and {args.corrupt!r} prompts tokenize to different lengths; "
                     "choose concepts with equal token counts or use --mode image")
        sel = {"all": clean.batch.attention_mask[0].bool(), "image": clean.batch.mask("image")[0],
               "text": clean.batch.mask("text")[0], "last": torch.nn.functional.one_hot(
                   clean.batch.last("text"), clean.batch.shape[1])[0].bool()}[args.positions]
        positions = sel.nonzero().flatten().tolist()
        if not positions:
            ap.error(f"no {args.positions} positions in a {args.mode} input")
        m_clean, m_corr = metric_value(vlm, clean, metric), metric_value(vlm, corr, metric)
        print(f"metric logit({args.tokens[0]!r}) - logit({args.tokens[1]!r}): clean {args.clean} {m_clean:+.3f}, "
              f"corrupted {args.corrupt} {m_corr:+.3f}")
        if m_clean <= m_corr:
            print(f"WARNING: the model does not answer this pair the right way round (clean {m_clean:+.3f} <= "
                  f"corrupted {m_corr:+.3f}): the normalised grid (1 = clean, 0 = corrupted) is not a restoration "
                  "share; choose a pair it answers correctly (python -m interp.analyze picks one: patch_clean = auto)")
        grid = patch_grid(vlm, clean, corr, metric, hooks=hooks, positions=positions, normalise=True)
        labels = clean.batch.labels(0)
        rows = [{"layer": l, "position": p, "modality": labels[p], "token": tok.decode(int(clean.batch.input_ids[0, p])),
                 "value": float(grid[i, j])} for i, l in enumerate(layers) for j, p in enumerate(positions)]

        xl = [f"{p}:{labels[p]}" + ("" if labels[p] == "image" else f":{tok.decode(int(clean.batch.input_ids[0, p]))}")
              for p in positions]
        fig = heatmap(grid.numpy(), xl, [str(l) for l in layers], title=f"Patching {args.hook}: {args.clean} -> "
                      f"{args.corrupt} (1 = clean, 0 = corrupted)", xlabel="position (modality)", ylabel="layer")
        save_figure(fig, stem, width=1200, height=600)
        print(f"patched {len(layers)} layers x {len(positions)} positions; max {grid.max():.3f} at "
              f"{divmod(int(grid.argmax()), len(positions))}")
        if args.attribution:
            att = attribution_grid(vlm, clean, corr, metric, hooks=hooks, positions=positions, normalise=True)
            for row, v in zip(rows, att.grid.flatten().tolist()):
                row["attribution"] = v
            fig = heatmap(att.grid.numpy(), xl, [str(l) for l in layers], title=f"Attribution patching {args.hook}: "
                          f"{args.clean} -> {args.corrupt} (normalised)", xlabel="position (modality)", ylabel="layer")
            save_figure(fig, stem.with_name(stem.name + "-attribution"), width=1200, height=600)
            if grid.numel() >= 3:
                agree = compare_to_exact(att.grid, grid)
                print(f"attribution vs exact over {agree.n_cells} cells: Pearson {agree.pearson:.3f}, "
                      f"sign agreement {agree.sign_agreement:.2f}")
    write_csv(stem.with_suffix(".csv"), rows)
    print(f"wrote {stem}.csv")


if __name__ == "__main__":
    main()
