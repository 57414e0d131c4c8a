"""Nothing raw reaches a terminal: strings a relay sends (node names, addresses, node status
messages, error details) and bad-line reasons are printed with their control characters shown,
not obeyed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowlens._hubble import visible
from flowlens._proto.observer import observer_pb2
from flowlens.cli import main
from flowlens.errors import RelayError
from flowlens.relay_server import ReplayData, ReplayRelay
from flowlens.render.live import _go_quote
from flowlens.sources.batch import ReadReport
from flowlens.sources.relay import Connection, FlowStream

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab.jsonpb"
EVIL = "evil\x1b[31m\x07\r\x9b2J\nnode"
# Any control character but the newline ending a line (ESC, BEL, CR, C1 CSI, ...).
RAW = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    lines = LAB.read_text().splitlines()
    records = []
    for line in lines[:50]:
        record = json.loads(line)
        if "flow" in record:
            record["flow"]["node_name"] = EVIL
        records.append(json.dumps(record))
    status = {"node_status": {"state_change": "NODE_ERROR", "node_names": [EVIL],
                              "message": "disk \x1b]0;pwned\x07 full"},
              "node_name": EVIL, "time": "2026-07-01T08:00:00Z"}
    path = tmp_path_factory.mktemp("evil") / "evil.jsonpb"
    path.write_text("\n".join([json.dumps(status), *records]) + "\n")
    with ReplayRelay(ReplayData.from_sources(path), listen="127.0.0.1:0") as relay:
        yield f"127.0.0.1:{relay.port}"


def test_visible_shows_every_control_character() -> None:
    assert visible(EVIL) == "evil^[[31m\\x07\\r\\x9b2J\\x0anode"
    assert _go_quote('a"\x1b\x07\n\u2028') == '"a\\"\\x1b\\a\\n\\u2028"'


def test_nodes_prints_node_names_visibly(server: str) -> None:
    result = CliRunner().invoke(main, ["nodes", "--server", server])
    assert result.exit_code == 0, result.stderr
    assert not RAW.search(result.stdout)
    assert "evil^[[31m\\x07\\r\\x9b2J\\x0anode" in result.stdout


def test_node_status_lines_print_visibly(server: str) -> None:
    result = CliRunner().invoke(main, ["tail", "--server", server, "--all"])
    assert result.exit_code == 0, result.stderr
    assert not RAW.search(result.stderr), result.stderr
    assert '[evil^[[31m\\x07\\r\\x9b2J\\x0anode]: Error "disk \\x1b]0;pwned\\a full"' \
        in result.stderr


def test_relay_error_details_print_visibly(server: str) -> None:
    request = observer_pb2.GetFlowsRequest(number=1)
    request.field_mask.paths.append("\x1b[2Jsource")
    stream = FlowStream(Connection(server), request)
    with pytest.raises(RelayError) as raised:
        list(stream)
    assert "INVALID_ARGUMENT" in str(raised.value)
    assert not RAW.search(str(raised.value))
    assert "^[[2Jsource" in str(raised.value)


def test_bad_line_reasons_print_visibly() -> None:
    report = ReadReport()
    report.bad("f:1", "bad identity '\x1b[31m\x07'")
    assert report.examples == ["f:1: bad identity '^[[31m\\x07'"]
