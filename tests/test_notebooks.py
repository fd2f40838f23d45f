"""Every notebook in ``notebooks/`` runs top to bottom and its closing assertion holds.

The notebooks are jupytext percent-format scripts. Each is converted with ``jupytext.read`` and
executed by ``nbclient`` in a fresh ``python3`` kernel: ``jupyter_client`` provides that native
kernel from the installed ipykernel even without a kernelspec, and starts it with
``sys.executable``, so no ``ipykernel install`` step is needed. The kernel inherits this process's
environment, so CPU JAX, the Agg backend, the strict rank promotion of the test suite and a
temporary figure folder are set here. Every notebook saves at least one figure there, which is
checked too. A static check keeps the notebooks on jaxlab's public API.
"""

import ast
import re
from pathlib import Path

import jupytext
import nbclient
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


def test_notebooks_exist():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_uses_public_api(path):
    source = path.read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxlab"):
            assert node.module == "jaxlab", f"deep import from {node.module} in {path.name}"
            assert not any(alias.name.startswith("_") for alias in node.names), path.name
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("jaxlab.") for a in node.names), path.name
    private = re.search(
        r"\b(?:jaxlab|curvature|data|losses|metrics|models|optim|train)\._\w*", source
    )
    assert private is None, f"private name {private and private.group()} in {path.name}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JAX_NUMPY_RANK_PROMOTION", "raise")
    monkeypatch.setenv("JAXLAB_NOTEBOOK_OUT", str(tmp_path))
    # One CPU device, as a user's session would have (conftest forces 8 for this process).
    monkeypatch.setenv("XLA_FLAGS", "")
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    client.execute()
    assert list(tmp_path.glob("*.png")), f"{path.name} saved no figure"
