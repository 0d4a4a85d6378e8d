"""Tidy tables: the one CSV writer/reader every study uses."""

import json
import math

from interp.io import parse_cell, read_csv, write_csv


def test_csv_round_trip_parses_what_python_wrote(tmp_path):
    rows = [{"layer": 3, "f1": 0.25, "name": "eagle", "token": " 3", "score": float("nan")},
            {"layer": -1, "f1": 1e-7, "name": "inf-like", "extra": "x"}]
    path = tmp_path / "t.csv"
    write_csv(path, rows)
    back = read_csv(path)
    assert list(back[0]) == ["layer", "f1", "name", "token", "score", "extra"]  # every key, first-seen order
    assert back[0]["layer"] == 3 and isinstance(back[0]["layer"], int) and back[0]["f1"] == 0.25
    assert back[0]["token"] == " 3" and back[0]["name"] == "eagle" and math.isnan(back[0]["score"])
    assert back[1]["f1"] == 1e-7 and back[1]["token"] == "" and back[1]["extra"] == "x"
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left over


def test_csv_columns_and_types(tmp_path):
    path = tmp_path / "t.csv"
    write_csv(path, [{"a": "1", "b": "2", "dropped": 9}], columns=["a", "b", "c"])
    assert read_csv(path, {"a": int, "c": float}) == [{"a": 1, "b": "2", "c": ""}]
    write_csv(tmp_path / "empty.csv", [], columns=["a"])
    assert (tmp_path / "empty.csv").read_text().strip() == "a"
    write_csv(tmp_path / "none.csv", [])
    assert not (tmp_path / "none.csv").exists()


def test_parse_cell():
    assert [parse_cell(x) for x in ["7", "-2", "1.5", ".5", "2e3", "inf", "True", "", "a1"]] == \
        [7, -2, 1.5, 0.5, 2000.0, math.inf, "True", "", "a1"]


def test_the_cache_validator_names_the_file_and_why(tmp_path, caplog):
    import logging

    import torch

    from interp.io import load_valid_tensor, save_tensors

    path = tmp_path / "c.safetensors"
    x = torch.arange(24.0).reshape(2, 3, 4).half()
    save_tensors(path, {"features": x}, {"lm": "a", "shape": [2, 3, 4]})
    ok = load_valid_tensor(path, {"lm": "a"}, (2, None, 4), what="test cache")
    assert ok is not None and ok.dtype == torch.float32 and torch.equal(ok, x.float())
    cases = [({"lm": "b"}, (2, None, 4), "stale (lm differs)"),
             ({"lm": "a"}, (3, None, 4), "corrupt"),
             ({"lm": "a"}, (2, 3), "corrupt")]
    for want, dims, why in cases:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert load_valid_tensor(path, want, dims, what="test cache") is None
        assert why in caplog.text and str(path) in caplog.text and "test cache" in caplog.text
    save_tensors(path, {"features": torch.tensor([[[float("nan")]]])}, {"shape": [1, 1, 1]})
    assert load_valid_tensor(path, {}, (1, 1, 1), what="test cache") is None
    save_tensors(path, {"features": x}, {})  # no recorded shape: not a cache this validator wrote
    assert load_valid_tensor(path, {}, (None, None, None), what="test cache") is None
    path.write_bytes(b"not safetensors")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert load_valid_tensor(path, {}, (None,), what="test cache") is None
    assert "unreadable" in caplog.text


def test_environment_records_the_instruction_set_results_depend_on():
    import torch

    from interp.io import environment

    env = environment()
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["cpu_capability"]
    assert env["torch_threads"] == torch.get_num_threads() and env["packages"]["torch"].startswith("2.13")
    json.dumps(env)  # stored with every result
