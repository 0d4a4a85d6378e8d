"""Configs are checked by type against the dataclass annotations (issue 18, item 4): a value
of the wrong type, in a TOML file or a ``--set``, fails with one line naming the key, the
value and the expected type, for every field of every study's config (a seeded fuzz)."""

from __future__ import annotations

import random
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from interp.configfile import check_types, fits_annotation
from interp.studies.alignment import SECTIONS as ALIGNMENT, load_config as alignment_config
from interp.studies.sae.config import SECTIONS as SAE, load_config as sae_config
from interp.studies.binding.config import SECTIONS as BINDING, load_config as binding_config
from interp.studies.taxonomy.config import SECTIONS as TAXONOMY, load_config as taxonomy_config
from interp.studies.task_vectors import SECTIONS as TASK_VECTORS, load_config as task_vector_config

ROOT = Path(__file__).resolve().parents[1]
STUDIES = [("quick.toml", taxonomy_config, TAXONOMY), ("binding_quick.toml", binding_config, BINDING),
           ("task_vectors_quick.toml", task_vector_config, TASK_VECTORS),
           ("alignment_quick.toml", alignment_config, ALIGNMENT), ("sae_quick.toml", sae_config, SAE)]


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
    from interp.studies.binding.train import TrainConfig

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


# ---------------------------------------------------------------- property-based fuzz (hypothesis)
import contextlib  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

CLIS = {"quick.toml": "interp.run", "binding_quick.toml": "interp.binding",
        "task_vectors_quick.toml": "interp.task_vectors", "alignment_quick.toml": "interp.alignment",
        "sae_quick.toml": "interp.sae"}
KEYS = [(preset, f"{section}.{f.name}") for preset, _, sections in STUDIES for section, cls in sections.items()
        for f in fields(cls)]


def toml_literal(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, (int, str)):
        return json.dumps(v)
    return "[" + ", ".join(toml_literal(x) for x in v) + "]"


scalars = st.one_of(st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12))
values = st.one_of(scalars, st.lists(st.one_of(st.integers(-5, 50), st.text(max_size=6)), max_size=4))


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), value=values)
def test_any_toml_value_for_any_key_is_accepted_or_one_clear_line(key, value):
    """A random value of any type or range for any field of any study config, through the
    study's CLI (``--set``, ``--dry-run``): either valid (exit 0) or exit 2 with one line that
    names the key; never a traceback."""
    preset, name = key
    main = importlib.import_module(CLIS[preset]).main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([str(ROOT / "experiments" / preset), "--set", f"{name}={toml_literal(value)}", "--dry-run"])
            code = 0
        except SystemExit as e:
            code = e.code or 0
    msg = err.getvalue()
    assert code in (0, 2) and "Traceback" not in msg, msg
    if code == 2:
        last = msg.strip().splitlines()[-1]
        assert name.split(".")[-1] in last or "--set" in last, last
