"""The tour notebook runs from top to bottom without an error (executed with nbclient), and its
figures show wherever people open it: as plotly's own output (JupyterLab) and, exported with
nbconvert to HTML (what `jupyter nbconvert --to html --execute` writes), drawn in a real
headless Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from headless_chromium import Browser
from nbclient import NotebookClient
from nbconvert import HTMLExporter

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "flowlens-tour.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"
# Lines, bars and areas each plot drew, once FIGURES plots are on the page.
_DRAWN = """(async () => {
  const plots = () => [...document.querySelectorAll('.js-plotly-plot')];
  for (let i = 0; i < 200 && plots().length < FIGURES; i++)
    await new Promise(r => setTimeout(r, 50));
  return plots().map(p => p.querySelectorAll(
    '.scatterlayer path.js-line, .barlayer .point path, .scatterlayer .fills path').length);
})()"""


@pytest.fixture(scope="module")
def executed() -> Any:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    return nb


def _outputs(nb: Any) -> list[Any]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def test_the_tour_notebook_runs(executed: Any) -> None:
    outputs = _outputs(executed)
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "not-frontend denied since 2026-07-01 08:10:05" in text
    assert "284 policy-verdict events and 284 drop events" in text


def test_the_dtype_overview_reads_as_a_table(executed: Any) -> None:
    tables = [o["data"]["text/html"] for o in _outputs(executed)
              if "text/html" in o.get("data", {})]
    overview = next(t for t in tables if "flows with a value" in t)
    assert "datetime64[ns, UTC]" in overview and "capture time" in overview
    assert "CategoricalDtype" not in overview  # not pandas' dtype reprs


def test_figures_show_in_jupyterlab_and_in_the_exported_html(
        executed: Any, tmp_path: Path) -> None:
    figures = [o for o in _outputs(executed) if PLOTLY in o.get("data", {})]
    assert len(figures) >= 5
    assert all("text/html" in o["data"] for o in figures)  # for nbconvert and classic
    page, _ = HTMLExporter().from_notebook_node(executed)
    out = tmp_path / "tour.html"
    out.write_text(page, encoding="utf-8")
    with Browser() as browser:
        loaded = browser.open(out.as_uri())
        drawn = browser.evaluate(loaded, _DRAWN.replace("FIGURES", str(len(figures))))
        errors = loaded.errors()
    assert len(drawn) == len(figures) and all(n > 0 for n in drawn), drawn
    # nbconvert's page asks CDNs for require.js and MathJax; offline they fail, and the charts
    # (plotly.js inlined once) do not need them.
    assert [e for e in errors if "Failed to load resource" not in e] == []
