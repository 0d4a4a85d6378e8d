"""The notebooks run top to bottom on the small embedded LM."""

from pathlib import Path

import pytest

from interp.data.images import verify

pytestmark = pytest.mark.integration
NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def shared_out(tmp_path_factory):
    """One output folder for all notebooks: the first trains the projector, the others reuse it."""
    return tmp_path_factory.mktemp("notebooks")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, shared_out, monkeypatch):
    ok, why = verify()
    if not ok:
        pytest.skip(f"embedded image set not built ({why})")
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("INTERP_NB_OUT", str(shared_out))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) or "text/html" in o.get("data", {})
               for o in outputs), "the notebook shows its figure"
