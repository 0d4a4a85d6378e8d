"""The look-inside study's config: which checkpoint, which images, which analyses."""

from __future__ import annotations

from dataclasses import dataclass

ANALYSES = ("probes", "directions", "steering", "lens", "image_lens", "similarity", "patching", "causal")


@dataclass
class InsideConfig:
    checkpoint: str
    out_dir: str = "runs/inside"
    study_config: str = "experiments/quick.toml"  # images, taxonomy, splits of the checkpoint's study
    split: str = "test"                           # which images give the concept activations
    max_concepts: int | None = None               # None: the study config's own (keep the checkpoint's split)
    analyses: tuple[str, ...] = ANALYSES
    min_members: int = 6                          # hypernyms with at least this many concepts (and non-members)
    folds: int = 5
    seed: int = 0
    steering_scales: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)  # x mean residual norm at the image positions
    steering_layer: int | None = None             # default: the layer of best text->image transfer
    steering_hypernyms: int = 8
    lens_top_k: int = 5
    image_lens_top_k: int = 5                     # a readout names a word at a layer when its rank is below this
    image_lens_concepts: int = 6                  # concepts drawn as a per-concept rank heatmap (first by name)
    patchscope_batch: int = 64                    # patched identity prompts per forward
    patch_clean: str = "auto"                     # "auto": the member of patch_hypernym the LM most firmly answers Yes
    patch_corrupt: str = "auto"                   # "auto": the non-member it most firmly answers No
    patch_hypernym: str = "bird"                  # whose question an "auto" pair is asked
    patch_question: str = "Is there a bird in the image?"  # the question of a pair named by hand
    attribution_cells: int = 48
    causal_hypernyms: int = 8                     # the largest hypernyms whose question the causal patches ask
    causal_pairs: int = 8                         # (member, non-member) image pairs per hypernym
    causal_min_gap: float = 1.0                   # pairs whose clean - corrupted margin is below this are dropped
    device: str = "cpu"
    batch_size: int = 32

    def __post_init__(self) -> None:
        self.steering_scales = tuple(float(s) for s in self.steering_scales)
        bad = [a for a in self.analyses if a not in ANALYSES]
        if bad:
            raise ValueError(f"unknown analyses {bad}; choose from {list(ANALYSES)}")


def parse_analyses(text: str) -> tuple[str, ...]:
    items = tuple(a.strip() for a in text.split(",") if a.strip())
    return ANALYSES if items in ((), ("all",)) else items
