"""Every flag value is range-checked: out of range is one line naming the flag and the value,
a non-zero exit, no traceback, never a value wrapped into another."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from flowlens.cli import main
from flowlens.errors import UsageError
from flowlens.sources.relay import Connection

ROOT = Path(__file__).resolve().parents[1]
LAB = str(ROOT / "samples" / "lab.jsonpb")
TEXT = str(ROOT / "samples" / "lab.compact.txt")

CASES = [
    (["tail", "--timeout", "99999999h"], "invalid value '99999999h' for --timeout: want a "
     "duration from 1ms to 24h, like 5s"),
    (["tail", "--timeout", "25h"], "invalid value '25h' for --timeout"),
    (["tail", "--timeout", "1e400"], "invalid value '1e400' for --timeout"),
    (["tail", "--timeout", "0.0001s"], "invalid value '0.0001s' for --timeout"),
    (["tail", "--server", "localhost:99999"], "invalid server address 'localhost:99999': port "
     "99999 is outside 1..65535"),
    (["status", "--server", "localhost:65536"], "invalid server address 'localhost:65536': "
     "port 65536 is outside 1..65535"),
    (["tail", "--input-file", LAB, "--time-format", "bogus"], "invalid value 'bogus' for "
     "--time-format: want one of StampMilli"),
    (["tail", "--input-file", LAB, "--year", "99999"], "invalid value '99999' for --year: want "
     "a year from 1678 to 2261"),
    (["report", LAB, "--year", "1600"], "invalid value '1600' for --year: want a year from 1678 "
     "to 2261"),
    (["tail", "--input-file", TEXT, "--year", "-1"], "invalid value '-1' for --year: want a year "
     "from 1678"),
    (["convert", TEXT, "-o", "x.parquet", "--year", "last"], "invalid value 'last' for --year: "
     "want a year from 1678 to 2261"),
    (["relay", LAB, "--speed", "inf"], "invalid value 'inf' for --speed: the factor must be "
     "from 0.001 to 1,000,000"),
    (["relay", LAB, "--speed", "1e308"], "invalid value '1e308' for --speed"),
    (["relay", LAB, "--speed", "0.0001"], "invalid value '0.0001' for --speed"),
    (["relay", LAB, "--speed", "nan"], "invalid value 'nan' for --speed"),
    (["relay", LAB, "--listen", ":99999"], "invalid value ':99999' for --listen"),
    (["report", LAB, "--top", "99999999999999999999", "--format", "json"],
     "invalid value '99999999999999999999' for --top: want a count from 1 to 1,000,000"),
    (["report", LAB, "--top", "0"], "invalid value '0' for --top: want a count from 1"),
]
# Times the frame cannot hold, absolute, in every command that takes a window: from files,
# a store, and a relay (refused before connecting).
CASES += [([*command, flag, value], f"invalid value {value!r} for {flag}: out of range (times "
           "from 1677-09-21 to 2262-04-11)")
          for command in (["tail", "--input-file", LAB], ["report", LAB, "--format", "json"],
                          ["policy", "check", str(ROOT / "samples" / "policies"), LAB],
                          ["tail", "--server", "localhost:1"])
          for flag, value in (("--since", "1677-01-01T00:00:00Z"), ("--since", "0001-01-01"),
                              ("--until", "9999-12-31T23:59:59Z"),
                              ("--until", "Fri, 11 Apr 2262 23:47:17 +0000"))]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a[:1] + a[-2:])
                                                          for a, _ in CASES])
def test_out_of_range_flag_values_are_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    assert result.stderr.startswith(f"flowlens: error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("since", ["2026-07-01T08:00:00+25:00", "2026-07-01T08:00:00+23:60",
                                   "2026-07-01T08:00:00-24:00"])
def test_time_zone_offsets_are_validated(since: str) -> None:
    result = CliRunner().invoke(main, ["tail", "--input-file", LAB, "--since", since])
    assert result.exit_code == 2
    assert f"invalid value {since!r} for --since: time zone offset" in result.stderr
    assert "timedelta" not in result.stderr


def test_values_at_the_limits_are_taken() -> None:
    assert Connection("localhost:65535").target == "localhost:65535"
    assert Connection("unix:/run/hubble.sock").target == "unix:/run/hubble.sock"
    with pytest.raises(UsageError, match="port 0 is outside"):
        Connection("localhost:0")
    result = CliRunner().invoke(main, ["tail", "--input-file", LAB, "--last", "1",
                                       "--since", "2026-07-01T10:00:00+23:59",
                                       "--time-format", "rfc3339nano"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("2026-07-01T08:")
    # The first and last whole seconds the frame holds are taken.
    result = CliRunner().invoke(main, ["report", LAB, "--format", "json", "--top", "1000000",
                                       "--since", "1677-09-21T00:12:44Z",
                                       "--until", "2262-04-11T23:47:16Z"])
    assert result.exit_code == 0, result.stderr
    assert '"flows": 3230' in result.stdout
