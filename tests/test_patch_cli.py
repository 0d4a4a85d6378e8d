"""`python -m interp.patch` on the small embedded LM with a fresh projector checkpoint."""

import re

import pytest

from conftest import fresh_smollm_checkpoint

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, smollm):
    return fresh_smollm_checkpoint(tmp_path_factory, smollm, pool_to=4)


def test_patch_cli_image_grid(checkpoint, tmp_path, capsys):
    from interp.patch import main

    main(["--checkpoint", str(checkpoint), "--layer", "3", "--positions", "image", "--out", str(tmp_path)])
    csvs = list(tmp_path.glob("*.csv"))
    assert len(csvs) == 1
    lines = csvs[0].read_text().splitlines()
    assert lines[0] == "layer,position,modality,token,value" and len(lines) == 1 + 4  # 4 pooled image tokens
    assert all(",image," in line for line in lines[1:])
    assert list(tmp_path.glob("*.html")) and list(tmp_path.glob("*.png"))
    out = capsys.readouterr().out
    m = re.search(r"clean eagle ([-+][\d.]+), corrupted shark ([-+][\d.]+)", out)
    assert m, out  # the pair's clean and corrupted metric are printed
    wrong_way = float(m.group(1)) <= float(m.group(2))
    assert ("WARNING: the model does not answer this pair the right way round" in out) == wrong_way


def test_patch_cli_cross_modal(checkpoint, tmp_path, capsys):
    from interp.patch import main

    main(["--checkpoint", str(checkpoint), "--mode", "cross", "--layer", "all", "--out", str(tmp_path)])
    rows = next(tmp_path.glob("*.csv")).read_text().splitlines()
    assert len(rows) == 1 + 30  # one value per layer of SmolLM2


def test_patch_cli_bad_inputs(checkpoint, tmp_path, capsys):
    """A bad layer or a checkpoint of another LM: one line and exit code 2 (issue 18), decided
    from the registry and the checkpoint header before the LM loads."""
    from interp.patch import main

    for args, message in ((["--layer", "30"], "--layer 30: smollm2-135m has blocks 0..29"),
                          (["--lm", "tiny-llama"], "trained for LM 'smollm2-135m', not --lm 'tiny-llama'")):
        with pytest.raises(SystemExit) as e:
            main(["--checkpoint", str(checkpoint), *args, "--out", str(tmp_path)])
        assert e.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # an unknown concept, also before the LM loads
        main(["--checkpoint", str(checkpoint), "--clean", "unicornfish", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--clean 'unicornfish': no concept 'unicornfish'" in err and "Traceback" not in err


def test_patch_cli_attribution_column(checkpoint, tmp_path, capsys):
    from interp.patch import main

    main(["--checkpoint", str(checkpoint), "--layer", "all", "--positions", "image", "--attribution",
          "--out", str(tmp_path)])
    lines = next(tmp_path.glob("*.csv")).read_text().splitlines()
    assert lines[0] == "layer,position,modality,token,value,attribution" and len(lines) == 1 + 30 * 4
    assert "attribution vs exact over 120 cells" in capsys.readouterr().out
    assert len(list(tmp_path.glob("*-attribution.png"))) == 1


def test_patch_cli_text_prompts_of_different_lengths_are_a_user_error(checkpoint, tmp_path, capsys):
    """Text patching needs prompts of equal token counts: a mismatch is one line and exit 2."""
    from interp.patch import main

    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(checkpoint), "--mode", "text", "--clean", "eagle",
              "--corrupt", "chrysanthemum_tortoiseshell_butterfly", "--layer", "3", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "tokenize to different lengths" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.csv"))
