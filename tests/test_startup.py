"""Commands load only what they use: `--help` answers without pandas, pyarrow, numpy, grpc,
protobuf or plotly; reading a file does not load grpc or plotly, and `tail` of a jsonpb file
with no flow filter loads no pandas, pyarrow or numpy either."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import flowlens

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab.jsonpb"
HEAVY = ("pandas", "pyarrow", "numpy", "grpc", "google.protobuf", "plotly", "yaml",
         "importlib.metadata")  # (the last: --version reads no package metadata)

# Runs the CLI in a fresh interpreter and reports which of HEAVY it loaded.
_PROBE = """
import contextlib, io, json, sys
from flowlens.cli import main
out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
try:
    with contextlib.redirect_stdout(out):
        main(sys.argv[1:], prog_name="flowlens")
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in json.loads(sys.stdin.read()) if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy, "out": out.buffer.getvalue().decode()}))
"""


def _loaded(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], input=json.dumps(HEAVY),
                          capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["tail", "--help"],
                                  ["report", "--help"], ["relay", "--help"],
                                  ["policy", "check", "--help"]])
def test_help_and_version_load_nothing_heavy(args: list[str]) -> None:
    result = _loaded(*args)
    assert result["code"] == 0
    assert "flowlens" in str(result["out"]) or "Usage" in str(result["out"])
    assert result["heavy"] == []
    if args == ["--version"]:
        assert str(result["out"]).endswith(f", version {flowlens.__version__}\n")


def test_tail_of_a_file_loads_no_grpc_nor_plotly() -> None:
    result = _loaded("tail", "--input-file", str(LAB), "--last", "2", "--verdict", "DROPPED")
    assert result["code"] in (0, None)
    assert len(str(result["out"]).splitlines()) == 2
    assert not {"grpc", "plotly", "yaml"} & set(result["heavy"])  # type: ignore[call-overload]


@pytest.mark.parametrize("args", [["--last", "5"], ["-o", "dict"], ["--first", "3", "-o", "table"],
                                  ["--last", "5", "-o", "jsonpb"]])
def test_tail_of_a_jsonpb_file_loads_no_pandas(args: list[str]) -> None:
    """Printed from the C splitter's runs (flowlens.sources.jsonpb_runs), as from a relay."""
    result = _loaded("tail", "--input-file", str(LAB), *args)
    assert result["code"] in (0, None)
    assert result["out"]
    assert result["heavy"] == ["google.protobuf"]
