"""Every study command turns a bad config into one line naming it and exit code 2 (no
traceback), before any model loads."""

import importlib
from pathlib import Path

import pytest

QUICK = str(Path(__file__).resolve().parents[1] / "experiments" / "quick.toml")
COMMANDS = [("interp.run", []), ("interp.train", []), ("interp.sweep", ["--list"]), ("interp.evaluate", ["--run", "x"]),
            ("interp.task_vectors", []), ("interp.binding", []), ("interp.alignment", [])]


@pytest.mark.parametrize("module,extra", COMMANDS)
def test_toml_syntax_error_names_file_line_and_column(module, extra, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlr = = 3\n")
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main([str(bad)] + extra)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and str(bad) in err and "line 2, column 6" in err and "Traceback" not in err


@pytest.mark.parametrize("setting,words", [("train.lr=-1", ["lr=-1"]), ("train.nonsense=3", ["nonsense", "valid keys"]),
                                           ("model.projector=mlp3x", ["'mlp3x'", "mlp2x_relmax"])])
def test_a_bad_value_or_key_is_one_line_and_exit_2(setting, words, capsys):
    from interp.run import main

    with pytest.raises(SystemExit) as e:
        main([QUICK, "--set", setting])
    err = capsys.readouterr().err
    assert e.value.code == 2 and all(w in err for w in words) and "Traceback" not in err


def test_a_shell_stripped_list_of_words_is_a_list():
    """`--set split.modes=['hypernym']` typed in bash arrives as `[hypernym]`."""
    from interp.configfile import parse_value

    assert parse_value("[hypernym]") == ("hypernym",)
    assert parse_value("[smollm2-135m, gemma-3-270m]") == ("smollm2-135m", "gemma-3-270m")
    assert parse_value("['a', 2]") == ("a", 2) and parse_value("[1,2]") == (1, 2) and parse_value("[[x]]") == "[[x]]"


@pytest.mark.parametrize("module,argv,words", [
    ("interp.train", [QUICK, "--world", "bogus"], ["--world", "bogus", "original"]),
    ("interp.train", [QUICK, "--ablation", "half"], ["--ablation 'half'", "random:<rate"]),
    ("interp.sweep", [QUICK, "--run-index", "500"], ["run index 500", "runs 0.."]),
    ("interp.sweep", [QUICK, "--shard", "3/2"], ["shard '3/2'"]),
    ("interp.evaluate", [QUICK, "--run", "nope", "--dry-run"], ["no trained run 'nope'"]),
])
def test_bad_run_arguments_are_one_line_and_exit_2(module, argv, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main(argv + ["--set", f"out_dir={tmp_path}"] if module == "interp.sweep" else argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and all(w in err for w in words) and "Traceback" not in err, err
    assert not list(tmp_path.rglob("*")), "nothing is written for a bad argument"


EXP = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize("module,config", [("interp.run", "quick.toml"), ("interp.task_vectors", "task_vectors_quick.toml"),
                                           ("interp.alignment", "alignment_quick.toml"), ("interp.sae", "sae_quick.toml")])
def test_bad_threads_are_one_line_and_exit_2(module, config, capsys):
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main([str(EXP / config), "--threads", "0", "--dry-run"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--threads 0: must be >= 1" in err and "Traceback" not in err, err


def test_binding_image_pools_beyond_the_task_pools_are_one_line_and_exit_2(capsys):
    from interp.binding import main

    with pytest.raises(SystemExit) as e:
        main([str(EXP / "binding_cpu.toml"), "--set", "image.shapes=36", "--dry-run"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "image.shapes=36" in err and "task.n_shapes=32" in err and "Traceback" not in err, err


def test_dry_run_checks_and_loads_nothing(capsys):
    from interp.run import main

    with pytest.raises(SystemExit) as e:
        main([QUICK, "--dry-run"])
    assert e.value.code == 0 and "dry run" in capsys.readouterr().err


def _tiny_checkpoint(path: Path) -> Path:
    import torch

    from interp.projector import Projector, ProjectorConfig

    torch.manual_seed(0)
    Projector(ProjectorConfig(kind="mlp2x_gelu", d_in=1280, d_out=640, n_tokens_in=49, pool_to=1, lm="gemma-3-270m",
                              encoder="efficientnet-lite0")).save(path)
    return path


def test_patch_refuses_an_unknown_hook_before_loading(tmp_path, capsys):
    from interp.patch import main

    ckpt = _tiny_checkpoint(tmp_path / "p.safetensors")
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(ckpt), "--layer", "3", "--hook", "hook_nonsense", "--dry-run"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--hook 'hook_nonsense'" in err and "hook_resid_post" in err and "Traceback" not in err



@pytest.mark.parametrize("extra,words", [
    (["--only", "probes,nonsense"], ["nonsense"]),
    (["--set", "nonsense=3"], ["--set nonsense", "unknown setting"]),
    (["--config", "no/such.toml"], ["--config no/such.toml", "no such study config"]),
    ("missing", ["no/such/projector.safetensors"]),
    ("pickle", ["pickles are refused"]),
])
def test_analyze_refuses_bad_arguments_before_loading(extra, words, tmp_path, capsys):
    from interp.analyze import main

    if extra == "missing":
        argv = ["no/such/projector.safetensors"]
    elif extra == "pickle":
        import pickle

        bad = tmp_path / "x.safetensors"
        bad.write_bytes(pickle.dumps({"w": [1, 2]}))
        argv = [str(bad)]
    else:
        argv = [str(_tiny_checkpoint(tmp_path / "p.safetensors"))] + extra
    with pytest.raises(SystemExit) as e:
        main(argv + ["--out", str(tmp_path / "out"), "--dry-run"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and all(w in err for w in words) and "Traceback" not in err, err
    assert len([ln for ln in err.splitlines() if "error:" in ln]) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("workers", ["0", "-1", "two"])
def test_image_build_refuses_a_bad_worker_count(workers, capsys):
    from interp.data.build import main

    with pytest.raises(SystemExit) as e:
        main(["--workers", workers])  # refused while parsing: nothing is verified or rebuilt
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--workers" in err and workers in err and "Traceback" not in err, err
