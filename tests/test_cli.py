"""The `flowlens` command as a newcomer meets it: any mix of sources, one meaning per flag,
messages that say what happened and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import flowlens
from flowlens.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
LAB, LAB_TEXT = str(SAMPLES / "lab.jsonpb"), str(SAMPLES / "lab.compact.txt")


def run(*argv: str) -> Result:
    return CliRunner().invoke(main, list(argv))


def ok(*argv: str) -> Result:
    result = run(*argv)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception, result.output)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize(("argv", "lost", "times"), [
    (("report", str(SAMPLES)), "lost events  2,910", 1),  # twice the 1,455 of one capture
    (("report", LAB, LAB_TEXT), "lost events  2,910", 1),
    (("policy", "check", str(SAMPLES / "policies"), LAB_TEXT, LAB), "lost events  2,910", 1),
    (("tail", "--input-file", str(SAMPLES)), "EVENTS LOST", 6),
    (("tail", "--input-file", LAB_TEXT, "--input-file", LAB, "-o", "jsonpb"), '"lost_events"', 6),
])
def test_jsonpb_and_text_with_lost_events_go_together(argv: tuple[str, ...], lost: str,
                                                       times: int) -> None:
    assert ok(*argv).stdout.count(lost) == times


def test_convert_joins_sources_of_different_formats(tmp_path: Path) -> None:
    out = tmp_path / "both.jsonpb"
    result = ok("convert", LAB, LAB_TEXT, "-o", str(out))
    assert "wrote 6,460 flows and 6 lost-event records" in result.stderr
    back = flowlens.read(out)
    assert len(back) == 6460 and len(flowlens.lost_events(back)) == 6
