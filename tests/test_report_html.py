"""The HTML report in real headless Chromium (Debian's `chromium`): every chart renders with
data, the console stays clean, and flow data carrying markup runs no script. A screenshot is
saved under tests/artifacts/.

No skip: without Chromium these tests fail (./scripts/test installs it when run as root)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from headless_chromium import Browser

import flowlens
from flowlens import analyses
from flowlens.cli import main
from flowlens.render.jsonpb import encode_response
from flowlens.render.report_html import render
from flowlens.synth import generate_flows, generate_lab

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

URL_SCRIPT = 'http://backend:8080/<script>window.__xss=1;alert("url")</script>'
URL_ATTRIBUTE = "http://backend:8080/\"><img src=x onerror=alert('url')>"
DNS_NAME = "<img src=x onerror=alert('dns')>.evil.example."
POD_NAME = "<svg onload=alert('pod')>not-frontend"
NODE_NAME = "kind-worker<script>alert('node')</script>"


def _poison(record: dict[str, Any], n: int) -> dict[str, Any]:
    """Markup in the URL, DNS name, pod name and node name of some of the lab's flows."""
    rec = copy.deepcopy(record)
    flow = rec.get("flow")
    if flow is None:
        return rec
    http = flow.get("l7", {}).get("http")
    if http is not None:
        http["url"] = URL_SCRIPT if n % 2 else URL_ATTRIBUTE
    dns = flow.get("l7", {}).get("dns")
    if dns is not None and n % 3 == 0:
        dns["query"] = DNS_NAME
    source = flow.get("source", {})
    if source.get("pod_name", "").startswith("not-frontend"):
        source["pod_name"] = POD_NAME
    if flow.get("node_name") == "kind-worker":
        flow["node_name"] = rec["node_name"] = NODE_NAME
    return rec


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("xss") / "lab-xss.jsonpb"
    lines = [encode_response(_poison(r, n)) for n, r in enumerate(generate_lab())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


def _write_report(source: Path, out: Path, *argv: str) -> None:
    result = CliRunner().invoke(main, ["report", str(source), "--format", "html", "-o",
                                       str(out), *argv])
    assert result.exit_code == 0, result.output


_CHARTS = """(async () => {
  const charts = () => [...document.querySelectorAll('div.chart')];
  for (let i = 0; i < 200 && !charts().every(c => c.classList.contains('js-plotly-plot')); i++)
    await new Promise(r => setTimeout(r, 50));
  return charts().map(c => ({
    id: c.id,
    traces: (c.data || []).length,
    values: (c.data || []).reduce((n, t) => n + ((t.type === 'bar' ? t.x : t.y) || [])
      .filter(v => v !== null).length, 0),
    drawn: c.querySelectorAll('.barlayer .point path, .scatterlayer path.js-line').length,
  }));
})()"""

_INJECTED = """({
  scripts: document.querySelectorAll('script').length,
  images: document.querySelectorAll('img').length,
  handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes]
    .some(a => a.name.startsWith('on'))).length,
  xss: window.__xss === undefined ? null : window.__xss,
  text: document.body.innerText,
})"""


def test_every_chart_renders_and_flow_markup_runs_no_script(
        browser: Browser, poisoned: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    _write_report(poisoned, out)
    page = browser.open(out.as_uri())
    charts = browser.evaluate(page, _CHARTS)
    browser.pump(page, 0.5)

    report = analyses.build_report(flowlens.read(poisoned))
    expected = [f"chart-{p.key}" for p in report.panels if not p.data.empty]
    assert [c["id"] for c in charts] == expected
    assert len(expected) >= 15
    for chart in charts:
        assert chart["traces"] > 0 and chart["values"] > 0 and chart["drawn"] > 0, chart

    assert page.errors() == []
    assert page.dialogs == []
    found = browser.evaluate(page, _INJECTED)
    assert found["scripts"] == 3  # plotly.js, the chart data, the page's own loader
    assert found["images"] == 0 and found["handlers"] == 0 and found["xss"] is None
    for payload in (DNS_NAME, POD_NAME, NODE_NAME):
        assert payload in found["text"]  # shown as the text it is, in the tables
    ticks = browser.evaluate(page, "document.querySelector("
                             "'#chart-top_denied_sources .yaxislayer-above').textContent")
    assert POD_NAME in ticks  # and in the charts' labels
    browser.screenshot(page, ARTIFACTS / "report-xss.png")


def test_the_lab_report_renders_offline_with_the_story_on_top(
        browser: Browser, tmp_path: Path) -> None:
    out = tmp_path / "lab.html"
    _write_report(Path(__file__).resolve().parents[1] / "samples" / "lab.jsonpb", out)
    page = browser.open(out.as_uri())
    charts = browser.evaluate(page, _CHARTS)
    assert [c["id"] for c in charts][:2] == ["chart-forwarded_vs_dropped", "chart-drop_reasons"]
    assert all(c["drawn"] > 0 for c in charts)
    assert page.errors() == [] and page.dialogs == []
    alert = browser.evaluate(page, "document.querySelector('.alert').innerText")
    assert "1,455 lost events" in alert
    browser.screenshot(page, ARTIFACTS / "report-lab.png")


def test_the_policy_section_renders_its_charts_and_escapes_flow_names(
        browser: Browser, poisoned: Path, tmp_path: Path) -> None:
    out = tmp_path / "policy.html"
    deny = Path(__file__).resolve().parents[1] / "samples" / "policies" / "backend-ingress-deny.yaml"
    _write_report(poisoned, out, "--policy", str(deny))
    page = browser.open(out.as_uri())
    charts = {c["id"]: c for c in browser.evaluate(page, _CHARTS)}
    for key in ("chart-policy_changes", "chart-policy_would_break"):
        assert charts[key]["drawn"] > 0, charts.get(key)
    assert page.errors() == [] and page.dialogs == []
    found = browser.evaluate(page, _INJECTED)
    assert found["images"] == 0 and found["handlers"] == 0 and found["xss"] is None
    section = browser.evaluate(page, "document.querySelector('#policy_unchanged').innerText")
    assert POD_NAME in section  # not-frontend, denied then and by the policy: unchanged
    assert "What this policy changes" in found["text"]
    browser.screenshot(page, ARTIFACTS / "report-policy.png")


def _html_size(flows: int, folder: Path) -> int:
    path = folder / f"{flows}.jsonpb"
    path.write_text("".join(encode_response(r) + "\n" for r in generate_flows(flows)))
    return len(render(analyses.build_report(flowlens.read(path)), "cdn").encode())


def test_the_page_does_not_grow_with_the_number_of_flows(tmp_path: Path) -> None:
    small, large = _html_size(3_000, tmp_path), _html_size(30_000, tmp_path)
    assert large < 1_000_000
    assert large < small * 1.5


def test_plotlyjs_from_the_cdn_makes_a_small_page(tmp_path: Path) -> None:
    out = tmp_path / "cdn.html"
    _write_report(Path(__file__).resolve().parents[1] / "samples" / "lab.jsonpb", out,
                  "--plotlyjs", "cdn")
    text = out.read_text()
    assert len(text) < 400_000
    assert 'src="https://cdn.plot.ly/plotly-' in text and 'integrity="sha256-' in text
    data = text.split('id="flowlens-charts">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and json.loads(data)


_COLORS = """(() => {
  const plot = id => document.getElementById(id);
  const traces = id => Object.fromEntries(plot(id).data.map(t => [t.name, t.line.color]));
  const bars = id => { const t = plot(id).data[0];
    return Object.fromEntries(t.y.map((label, i) => [label, t.marker.color[i]])); };
  const rgb = el => getComputedStyle(el).borderLeftColor;
  const cell = text => [...document.querySelectorAll('#answer td')]
    .find(td => td.textContent === text);
  return {
    verdicts: traces('chart-forwarded_vs_dropped'),
    reasons_over_time: traces('chart-drop_reasons_over_time'),
    reasons: bars('chart-drop_reasons'),
    actions: plot('chart-policy_verdicts').data[0].marker.color,
    action_labels: plot('chart-policy_verdicts').data[0].y,
    still: rgb(cell('still denied')), again: rgb(cell('allowed again')),
  };
})()"""

# Words (between spaces, hyphens and slashes, where lines may break) that a cell shows on more
# than one line: "por t", "808 0".
_BROKEN_WORDS = """(() => {
  const broken = [];
  for (const cell of document.querySelectorAll('td, th')) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      const words = /[^\\s\\-\\/]+/g;
      let m;
      while ((m = words.exec(node.data))) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(m[0]);
      }
    }
  }
  return broken;
})()"""


def test_the_answer_comes_first_and_every_panel_speaks_one_colour_language(
        browser: Browser, tmp_path: Path) -> None:
    out = tmp_path / "lab.html"
    lab = Path(__file__).resolve().parents[1] / "samples"
    _write_report(lab / "lab.jsonpb", out, "--policy",
                  str(lab / "policies" / "backend-ingress-deny.yaml"))
    page = browser.open(out.as_uri())
    browser.evaluate(page, _CHARTS)
    order = browser.evaluate(page, "[...document.querySelectorAll('#answer, .alert, .chart')]"
                                   ".map(e => e.id || e.className)")
    assert order[:2] == ["answer", "alert"] and order[2].startswith("chart-")
    headline = browser.evaluate(page, "document.querySelector('#answer .headline').innerText")
    assert headline.startswith("2 connections denied by policy between")
    colors = browser.evaluate(page, _COLORS)
    red, green = "#c62828", "#2e7d32"
    assert (colors["verdicts"]["DROPPED"], colors["verdicts"]["FORWARDED"]) == (red, green)
    assert colors["reasons"]["POLICY_DENIED"] == colors["reasons_over_time"]["POLICY_DENIED"] \
        == red
    for reason, color in colors["reasons"].items():  # a reason keeps its colour everywhere
        assert colors["reasons_over_time"][reason] == color
    assert len(set(colors["reasons"].values())) == len(colors["reasons"])
    actions = dict(zip(colors["action_labels"], colors["actions"], strict=True))
    assert all(c == red for label, c in actions.items() if label.endswith("dropped"))
    assert all(c == green for label, c in actions.items() if label.endswith("forwarded"))
    assert (colors["still"], colors["again"]) == ("rgb(198, 40, 40)", "rgb(46, 125, 50)")
    assert browser.evaluate(page, _BROKEN_WORDS) == []
    assert page.errors() == []
    browser.screenshot(page, ARTIFACTS / "report-answer.png")
