"""Configs are checked by type against the dataclass annotations (issue 18, item 4): a value
of the wrong type, in a TOML file or a ``--set``, fails with one line naming the key, the
value and the expected type, for every field of every study's config (a seeded fuzz)."""

from __future__ import annotations

import random
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from interp.binding.study import SECTIONS as BINDING, load_config as binding_config
from interp.configfile import check_types, fits_annotation
from interp.studies.alignment import SECTIONS as ALIGNMENT, load_config as alignment_config
from interp.studies.config import SECTIONS as TAXONOMY, load_config as taxonomy_config
from interp.studies.task_vectors import SECTIONS as TASK_VECTORS, load_config as task_vector_config

ROOT = Path(__file__).resolve().parents[1]
STUDIES = [("quick.toml", taxonomy_config, TAXONOMY), ("binding_quick.toml", binding_config, BINDING),
           ("task_vectors_quick.toml", task_vector_config, TASK_VECTORS),
           ("alignment_quick.toml", alignment_config, ALIGNMENT)]


def wrong_values(tp) -> list:
    """Values that do not fit annotation ``tp``."""
    candidates = ["fast", 3, 2.5, True, [1, 2], {"a": 1}]
    return [v for v in candidates if not fits_annotation(v, tp)]


@pytest.mark.parametrize("preset,loader,sections", STUDIES, ids=[s[0] for s in STUDIES])
def test_every_field_rejects_a_wrong_type_by_name(preset, loader, sections):
    rng = random.Random(preset)
    checked = 0
    for section, cls in sections.items():
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            bad = wrong_values(hints[f.name])
            if not bad:
                continue
            value = rng.choice(bad)
            with pytest.raises(ValueError) as e:
                loader(ROOT / "experiments" / preset, {f"{section}.{f.name}": value})
            assert f"{section}.{f.name} = " in str(e.value) and "expected" in str(e.value), str(e.value)
            checked += 1
    assert checked >= 10  # the fuzz reached the fields


def test_toml_file_with_a_string_learning_rate_names_key_and_type(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text((ROOT / "experiments" / "quick.toml").read_text().replace("lr = 1e-4", 'lr = "fast"'))
    with pytest.raises(ValueError, match=r"train\.lr = 'fast': expected a float"):
        taxonomy_config(cfg)


def test_ints_are_floats_but_bools_are_not_numbers():
    from interp.binding.train import TrainConfig

    check_types(TrainConfig, {"lr": 1, "batch_size": 8, "dense": True, "stages": [[1, 2, 3]]}, "train")
    with pytest.raises(ValueError, match=r"train\.batch_size = True: expected an integer"):
        check_types(TrainConfig, {"batch_size": True}, "train")
    with pytest.raises(ValueError, match=r"train\.lr = '1e-3': expected a float"):
        check_types(TrainConfig, {"lr": "1e-3"}, "train")


def test_a_section_that_is_not_a_table_is_named(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "x"\ntrain = 3\n')
    with pytest.raises(ValueError, match=r"train = 3 .*expected a \[train\] table"):
        taxonomy_config(cfg)
