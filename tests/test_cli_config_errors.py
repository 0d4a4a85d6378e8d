"""Every study command turns a bad config into one line naming it and exit code 2 (no
traceback), before any model loads."""

import importlib
from pathlib import Path

import pytest

QUICK = str(Path(__file__).resolve().parents[1] / "experiments" / "quick.toml")
COMMANDS = [("interp.run", []), ("interp.train", []), ("interp.sweep", ["--list"]), ("interp.evaluate", ["--run", "x"]),
            ("interp.task_vectors", []), ("interp.binding.__main__", []), ("interp.alignment", [])]


@pytest.mark.parametrize("module,extra", COMMANDS)
def test_toml_syntax_error_names_file_line_and_column(module, extra, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlr = = 3\n")
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main([str(bad)] + extra)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and str(bad) in err and "line 2, column 6" in err and "Traceback" not in err


@pytest.mark.parametrize("setting,words", [("train.lr=-1", ["lr=-1"]), ("train.nonsense=3", ["nonsense", "valid keys"])])
def test_a_bad_value_or_key_is_one_line_and_exit_2(setting, words, capsys):
    from interp.run import main

    with pytest.raises(SystemExit) as e:
        main([QUICK, "--set", setting])
    err = capsys.readouterr().err
    assert e.value.code == 2 and all(w in err for w in words) and "Traceback" not in err
