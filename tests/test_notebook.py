"""docs/papers.ipynb runs from top to bottom (a real kernel, nbclient) on a tiny saved model with LIMIT 20,
so the notebook never goes stale; its parameter cell is the only thing changed."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import write_task_file

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "papers.ipynb"


def outputs_text(cell) -> str:
    """Everything a code cell showed, as text (streams, results, HTML)."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        for kind in ("text/plain", "text/html"):
            parts.append(str(output.get("data", {}).get(kind, "")))
    return "\n".join(parts)


@pytest.mark.slow
def test_the_docs_notebook_runs_on_a_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    task = write_task_file(tmp_path / "reviews.csv", rows=40, seed=11)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = [c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(parameters) == 1, "one cell tagged 'parameters' holds model, task and limit"
    parameters[0].source = (f"MODEL = {str(tiny_model_dir)!r}\nTASK = {str(task)!r}\nLIMIT = 20\n"
                            f"CACHE_DIR = {str(tmp_path / 'cache')!r}")
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on any cell's error

    shown = "\n".join(outputs_text(c) for c in notebook.cells if c.cell_type == "code")
    assert "n = 20" in shown and "Traceback" not in shown
    assert (tmp_path / "headscope-view.html").stat().st_size > 100_000  # plotly.js inlined: opens offline
    last = outputs_text(notebook.cells[-1])
    assert "<iframe" in last and "/?ex=0&layer=2&head=0&off=L2H0,L2H1,L2H2,L2H3&mode=uniform" in last
