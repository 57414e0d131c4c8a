"""The policy lens on the lab: predictions from the flows before any policy against what the
later phases of the capture observed, `suggest` round-tripping through `check`, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner, Result

import flowlens
from flowlens import policy
from flowlens.cli import main
from flowlens.relay_server import ReplayData, ReplayRelay

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
LAB = str(SAMPLES / "lab.jsonpb")
DENY = str(SAMPLES / "policies" / "backend-ingress-deny.yaml")
ALLOW = str(SAMPLES / "policies" / "backend-allow-ingress-frontend.yaml")
CONTRACT = {"source", "destination", "port", "protocol", "direction", "flows", "observed",
            "predicted", "allowed_by"}


@pytest.fixture(scope="module")
def lab() -> pd.DataFrame:
    return flowlens.read(LAB)


@pytest.fixture(scope="module")
def phases(lab: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    """When each policy took effect, from the flows themselves: the first policy verdict
    (default deny applied), and the first allowing one (the allow policy applied)."""
    verdicts = lab[lab["event_type"] == 5]
    deny_applied = verdicts["time"].min()
    allow_applied = verdicts.loc[verdicts["verdict"] == "FORWARDED", "time"].min()
    assert deny_applied < allow_applied
    return deny_applied, allow_applied


def until_first_policy(phases: tuple[pd.Timestamp, pd.Timestamp]) -> str:
    """--until for the first phase (--until includes its own instant)."""
    return (phases[0] - pd.Timedelta("1us")).isoformat()


def before(lab: pd.DataFrame, when: pd.Timestamp) -> pd.DataFrame:
    return lab[lab["time"] < when]


def since(lab: pd.DataFrame, when: pd.Timestamp) -> pd.DataFrame:
    return lab[lab["time"] >= when]


def ends(result: policy.PolicyCheck) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = result.connections.to_dict("records")
    return {(r["source"], r["destination"], r["port"], r["protocol"], r["direction"]): r
            for r in rows}


def backend_ingress(result: policy.PolicyCheck, client: str) -> dict[str, Any]:
    found = [r for key, r in ends(result).items()
             if key[0].startswith(f"default/{client}-") and key[1].startswith("default/backend-")
             and key[2:] == (8080, "TCP", "ingress")]
    assert len(found) == 1, found
    return found[0]


def test_predictions_from_before_any_policy_match_what_happened_later(
        lab: pd.DataFrame, phases: tuple[pd.Timestamp, pd.Timestamp]) -> None:
    deny_applied, allow_applied = phases
    both = policy.load_policies([DENY, ALLOW])
    predicted = policy.check(before(lab, deny_applied), both)
    frontend = backend_ingress(predicted, "frontend")
    not_frontend = backend_ingress(predicted, "not-frontend")
    assert (frontend["observed"], frontend["predicted"]) == ("allowed", "allowed")
    assert frontend["allowed_by"] == ("default/backend-allow-ingress-frontend ingress[0]",)
    assert (not_frontend["observed"], not_frontend["predicted"]) == ("allowed", "denied")
    assert not_frontend["change"] == "would_break" and not_frontend["allowed_by"] == ()
    # What breaks is exactly not-frontend -> backend (over IPv4 and IPv6: one connection).
    broken = predicted.connections[predicted.connections["change"] == "would_break"]
    assert [(r.source.split("-")[0], r.destination.split("-")[0]) for r in broken.itertuples()] \
        == [("default/not", "default/backend")]
    assert predicted.summary["would_break"] == 1 and predicted.summary["newly_allowed"] == 0

    # The last phase ran under exactly these two policies: every connection end it observed
    # is what the check predicted from the first phase.
    observed = ends(policy.check(since(lab, allow_applied), both))
    compared = 0
    for key, row in ends(predicted).items():
        later = observed.get(key)
        if later is None or later["observed"] == "unknown" or row["predicted"] == "unknown":
            continue
        assert later["observed"] == row["predicted"], key
        compared += 1
    assert compared >= 8
    assert observed[next(k for k in observed if k[0].startswith("default/not-frontend-")
                         and k[4] == "ingress")]["observed"] == "denied"


def test_default_deny_alone_predicts_the_second_phase(
        lab: pd.DataFrame, phases: tuple[pd.Timestamp, pd.Timestamp]) -> None:
    deny_applied, allow_applied = phases
    deny = policy.load_policies([DENY])
    predicted = policy.check(before(lab, deny_applied), deny)
    for client in ("frontend", "not-frontend"):
        row = backend_ingress(predicted, client)
        assert (row["predicted"], row["change"]) == ("denied", "would_break")
        assert "default/backend-ingress-deny isolates" in row["reason"]
    second = lab[(lab["time"] >= deny_applied) & (lab["time"] < allow_applied)]
    observed = policy.check(second, deny)
    assert backend_ingress(observed, "frontend")["observed"] == "denied"
    assert backend_ingress(observed, "not-frontend")["observed"] == "denied"
    # The kubelet's probes come from backend's own node: never denied.
    host = [r for k, r in ends(predicted).items() if k[0] == "host"]
    assert host and all(r["predicted"] == "allowed" for r in host)


def test_suggest_on_the_first_phase_allows_both_clients_on_8080(
        lab: pd.DataFrame, phases: tuple[pd.Timestamp, pd.Timestamp]) -> None:
    first = before(lab, phases[0])
    suggestion = policy.suggest(first, selector="app=backend")
    assert len(suggestion.policies) == 1
    manifest = yaml.safe_load(suggestion.yaml())
    assert manifest["kind"] == "NetworkPolicy"
    assert manifest["metadata"] == {"name": "backend-allow-ingress", "namespace": "default"}
    spec = manifest["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app": "backend"}}
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [{
        "from": [{"podSelector": {"matchLabels": {"app": "frontend"}}},
                 {"podSelector": {"matchLabels": {"app": "not-frontend"}}}],
        "ports": [{"protocol": "TCP", "port": 8080}]}]

    result = policy.check(first, policy.PolicySet(tuple(policy.parse_policies(
        suggestion.yaml()))))
    assert result.summary["would_break"] == 0
    assert result.summary["newly_allowed"] == 0
    assert backend_ingress(result, "not-frontend")["predicted"] == "allowed"


def test_suggest_both_directions_allows_exactly_the_observed_traffic(
        lab: pd.DataFrame, phases: tuple[pd.Timestamp, pd.Timestamp]) -> None:
    first = before(lab, phases[0])
    suggestion = policy.suggest(first, directions=("ingress", "egress"))
    kinds = {(p["metadata"]["name"], tuple(p["spec"]["policyTypes"]))
             for p in suggestion.policies}
    assert ("backend-allow-ingress", ("Ingress",)) in kinds
    assert ("frontend-allow-egress", ("Egress",)) in kinds
    egress = next(p for p in suggestion.policies
                  if p["metadata"]["name"] == "frontend-allow-egress")
    dns = [r for r in egress["spec"]["egress"] if r["ports"] == [{"protocol": "UDP", "port": 53}]]
    assert dns and dns[0]["to"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    result = policy.check(first, policy.PolicySet(tuple(policy.parse_policies(
        suggestion.yaml()))))
    assert result.summary["would_break"] == 0
    allowed_before = result.connections[result.connections["observed"] == "allowed"]
    assert (allowed_before["predicted"] == "allowed").all()
    # Every isolated end that is allowed names the suggested rule that allows it.
    isolated = allowed_before[~allowed_before["reason"].str.startswith(("no policy", "from"))]
    assert len(isolated) >= 5 and all(len(a) >= 1 for a in isolated["allowed_by"])


# --- the command line ---------------------------------------------------------------------------

def run(*argv: str) -> Result:
    return CliRunner().invoke(main, list(argv))


def test_check_json_has_the_contract_keys(phases: tuple[pd.Timestamp, pd.Timestamp]) -> None:
    result = run("policy", "check", DENY, ALLOW, LAB, "--until", until_first_policy(phases),
                 "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc["summary"]) >= {"would_break", "newly_allowed", "unchanged"}
    assert doc["summary"]["would_break"] == 1
    assert doc["summary_flows"]["would_break"] == sum(
        r["flows"] for r in doc["connections"] if r["change"] == "would_break") > 0
    assert all(set(row) >= CONTRACT for row in doc["connections"])
    broken = [r for r in doc["connections"] if r["observed"] == "allowed"
              and r["predicted"] == "denied"]
    assert len(broken) == 1 and broken[0]["source"].startswith("default/not-frontend-")
    assert broken[0]["port"] == 8080 and broken[0]["protocol"] == "TCP"
    assert broken[0]["direction"] == "ingress"
    assert "1 would break" in result.stderr


@pytest.mark.parametrize("fmt, marker", [("text", "== Policy check: Would break"),
                                         ("md", "## Policy check: Would break"),
                                         ("html", 'id="policy_would_break"')])
def test_check_formats_show_what_breaks(fmt: str, marker: str,
                                        phases: tuple[pd.Timestamp, pd.Timestamp]) -> None:
    result = run("policy", "check", DENY, ALLOW, LAB, "--until", until_first_policy(phases),
                 "--format", fmt, "--plotlyjs", "cdn")
    assert result.exit_code == 0, result.output
    assert marker in result.stdout
    assert "not-frontend" in result.stdout.split(marker, 1)[1]
    if fmt == "text":  # a long reason is wrapped, without the space it was broken at
        reason = result.stdout.split("reason       ", 1)[1].splitlines()
        assert reason[0].endswith(" isolate") and reason[1].strip().startswith("default/")
        assert not [line for line in result.stdout.splitlines() if line.endswith(" ")]


def test_report_with_policy_gains_the_section(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run("report", LAB, "--policy", DENY, "--format", "json", "-o", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["drop_reasons"]  # the dashboard is still there
    assert doc["policy_check"]["policies"] == ["default/backend-ingress-deny (NetworkPolicy)"]
    html = run("report", LAB, "--policy", DENY, "--format", "html", "--plotlyjs", "cdn")
    assert 'id="policy_changes"' in html.stdout and "What this policy changes" in html.stdout


def test_suggest_cli_output_checks_clean(tmp_path: Path,
                                         phases: tuple[pd.Timestamp, pd.Timestamp]) -> None:
    out = tmp_path / "suggested.yaml"
    until = until_first_policy(phases)
    result = run("policy", "suggest", LAB, "--until", until, "--selector", "app=backend",
                 "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "1 policy from" in result.stderr
    checked = run("policy", "check", str(out), LAB, "--until", until, "--format", "json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["summary"]["would_break"] == 0


@pytest.mark.parametrize("text, message", [
    ("kind: NetworkPolicy\nmetadata: {name: x\nspec: {}\n", "not valid YAML"),
    ("kind: Deployment\nmetadata: {name: x}\n", "kind 'Deployment' is not one of"),
    ("kind: NetworkPolicy\nmetadata: {name: x}\nspec: {podSelector: {}, ingres: []}\n",
     "spec.ingres: unknown or unsupported field"),
])
def test_bad_policy_files_get_one_line(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    result = run("policy", "check", str(bad), LAB)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowlens: error: ")
    assert str(bad) in lines[0] and message in lines[0]
    assert "Traceback" not in result.output


def test_a_policy_that_selects_nothing_is_named(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\n"
                    "metadata: {name: backend-deny}\nspec:\n  podSelector:\n"
                    "    matchLabels: {app: backnd}\n")
    result = run("policy", "check", str(typo), LAB, "--format", "json")
    assert result.exit_code == 0, result.output
    warning = ("flowlens: warning: default/backend-deny (NetworkPolicy) selects no pod in these "
               "flows (selector app=backnd in namespace default)")
    assert warning in result.stderr.splitlines()
    assert json.loads(result.stdout)["notes"] == [warning.split("warning: ", 1)[1]]


def test_check_needs_a_policy(tmp_path: Path) -> None:
    """What was taken for flows is named: a folder of policies beside other files is one."""
    result = run("policy", "check", LAB)
    assert result.exit_code == 2
    assert "no policy given" in result.stderr
    mixed = tmp_path / "policies"
    mixed.mkdir()
    (mixed / "deny.yaml").write_text(Path(DENY).read_text(encoding="utf-8"), encoding="utf-8")
    (mixed / "README.md").write_text("Our policies\n", encoding="utf-8")
    result = run("policy", "check", str(mixed), LAB)
    assert result.exit_code == 2
    assert result.stderr == ("flowlens: error: no policy given: name POLICY.yaml files (.yaml, "
                             f".yml), or folders of them only, first; taken for flows: {mixed}, "
                             f"{LAB}\n")


def test_check_and_suggest_from_a_relay(phases: tuple[pd.Timestamp, pd.Timestamp]) -> None:
    """No SOURCE: the flows hubble-relay holds over the window, as for `report`."""
    until = until_first_policy(phases)
    offline = json.loads(run("policy", "check", DENY, ALLOW, LAB, "--until", until,
                             "--format", "json").stdout)
    with ReplayRelay(ReplayData.from_sources(LAB), listen="127.0.0.1:0") as relay:
        server = f"127.0.0.1:{relay.port}"
        live = run("policy", "check", DENY, ALLOW, "--server", server, "--until", until,
                   "--format", "json")
        suggested = run("policy", "suggest", "--server", server, "--until", until,
                        "--selector", "app=backend")
    assert live.exit_code == 0, live.output
    assert json.loads(live.stdout)["connections"] == offline["connections"]
    assert suggested.exit_code == 0, suggested.output
    assert "app: not-frontend" in suggested.stdout and "port: 8080" in suggested.stdout
