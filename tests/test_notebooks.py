"""Notebooks run top to bottom on the demo data and are committed without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pipeline import io
from pipeline.demo import generate as demo

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert {p.name[:2] for p in NOTEBOOKS} >= {"01"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nbdemo")
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=400, seed=7, expected_rates_n=0))
    io.write_study({"patients": cohort.patients, "sessions": cohort.sessions,
                    "followups": cohort.followups}, folder)
    return folder


@pytest.fixture(scope="module")
def small_run(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run the notebooks read (made once; each notebook finds it up to date)."""
    from pipeline.cli import main

    out = tmp_path_factory.mktemp("nbrun") / "out"
    assert main(["run", str(small_demo), "--out", str(out)]) in (0, 4)
    return out


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, small_demo: Path, small_run: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPT_DATA", str(small_demo))
    monkeypatch.setenv("IPT_OUT", str(small_run))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=dict(os.environ))
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
