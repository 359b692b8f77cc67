"""The notebooks run top to bottom (executed with nbclient, offline)."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    if path.name == "quickstart.ipynb":
        assert "(True, 0)" in str(nb.cells[1].outputs)
    if path.name == "reproduce.ipynb":  # the report's figures are shown inline, and the faulty module is named
        assert sum("image/png" in o.get("data", {}) for o in outputs) == 3
        assert "weakest module: Monitor" in str(nb.cells[3].outputs)
