"""Hubble text -> flowlens -> jsonpb -> flowlens -> hubble text gives back the same bytes, so
`flowlens convert observe.txt -o x.jsonpb` loses nothing the text carried."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from shared_data import SHARED

from flowlens.cli import main

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    ROOT / "samples" / "lab.compact.txt",
    SHARED / "reference-renderings" / "coverage.compact.txt",
    SHARED / "reference-renderings" / "lab-small.compact.txt",
    SHARED / "real-flows" / "rendered" / "basic-sample-348-http-flows.compact.txt",
    SHARED / "real-flows" / "rendered" / "basic-sample-330-dns-flows.compact.txt",
]


@pytest.mark.parametrize("text", TEXTS, ids=lambda p: p.name)
def test_compact_text_survives_conversion_to_jsonpb(text: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    jsonpb = tmp_path / "flows.jsonpb"
    done = runner.invoke(main, ["convert", str(text), "-o", str(jsonpb), "--year", "2026"])
    assert done.exit_code == 0, done.output
    again = runner.invoke(main, ["tail", "--input-file", str(jsonpb)])
    assert again.exit_code == 0, again.output
    assert again.stdout == text.read_text()


def test_jsonpb_output_is_hubbles_own_encoding() -> None:
    source = SHARED / "reference-renderings" / "coverage.jsonl"
    out = CliRunner().invoke(main, ["tail", "--input-file", str(source), "-o", "jsonpb"])
    assert out.exit_code == 0
    expected = (SHARED / "reference-renderings" / "coverage.hubble-jsonpb.jsonl").read_text()
    assert out.stdout == expected


def test_filters_and_selection_on_the_command_line() -> None:
    sample = str(ROOT / "samples" / "lab.jsonpb")
    out = CliRunner().invoke(main, ["tail", "--input-file", sample, "--from-pod",
                                    "default/not-frontend", "--verdict", "DROPPED",
                                    "--type", "drop", "--last", "3"])
    assert out.exit_code == 0, out.output
    flows = [line for line in out.stdout.splitlines() if "EVENTS LOST" not in line]
    assert len(flows) == 3
    assert all("default/not-frontend" in line and "Policy denied DROPPED" in line
               for line in flows)


def test_bad_filter_value_is_one_line_and_exit_2() -> None:
    out = CliRunner().invoke(main, ["tail", "--input-file", "x", "--verdict", "dropped"])
    assert out.exit_code == 2
    assert "invalid value 'dropped' for --verdict" in out.output
    assert "Traceback" not in out.output
