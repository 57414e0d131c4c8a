"""Policy files from anyone: alias bombs refused in bounded memory, values of the wrong type or
size are errors naming the file and the field, messages never repeat input unbounded, and many
policies load quickly (libyaml's C parser where installed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from process_limits import peak_rss_mb

from flowlens.policy import PolicyError, load_policies
from flowlens.policy.model import MAX_ALIAS_EXPANSION, _Loader, parse_policies

ROOT = Path(__file__).resolve().parents[1]

NETWORK_POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  podSelector: {{matchLabels: {{app: {app}}}}}
  ingress:
  - from: [{{podSelector: {{matchLabels: {{app: frontend}}}}}}]
    ports: [{{port: {port}}}]
"""


def _policy(name: str = "allow", namespace: str = "default", app: str = "backend",
            port: str = "8080") -> str:
    return NETWORK_POLICY.format(name=name, namespace=namespace, app=app, port=port)


# Nine levels of nine aliases: 9**9 strings from a few hundred bytes.
BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip([None, *"abcdefgh"], "abcdefghi", strict=False)) + "kind: *i\n"


def test_an_alias_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    assert len(BOMB) < 700
    run, peak = peak_rss_mb([sys.executable, "-m", "flowlens", "policy", "check", str(bomb),
                             str(ROOT / "samples" / "lab.jsonpb")], timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip() == (f"flowlens: error: {bomb}: document 1: its YAML aliases "
                                  f"expand to more than {MAX_ALIAS_EXPANSION:,} extra nodes")
    assert run.stdout == ""
    assert peak < 400, f"peak RSS {peak} MB"


def test_aliases_that_expand_a_little_still_load() -> None:
    shared = (_policy().replace("ports: [{port: 8080}]", "ports: &ports [{port: 8080}]")
              + "  - from: [{podSelector: {}}]\n    ports: *ports\n")
    (policy,) = parse_policies(shared, "p.yaml")
    first, second = policy.rules
    assert first.ports == second.ports and first.ports is not None


BAD = [
    pytest.param(_policy(namespace="[a, b]"), r"metadata\.namespace: want a string, got list",
                 id="namespace-list"),
    pytest.param(_policy(namespace="{a: b}"), r"metadata\.namespace: want a string, got dict",
                 id="namespace-map"),
    pytest.param(_policy(port="8080.9"),
                 r"spec\.ingress\[0\]\.ports\[0\]\.port: 8080\.9 is not a port number",
                 id="float-port"),
    pytest.param(_policy(port="true"), r"ports\[0\]\.port: True is not a port number",
                 id="bool-port"),
    pytest.param(_policy(name="123"), r"document 1: metadata\.name: want a string, got int",
                 id="numeric-name"),
    pytest.param(_policy(name="Not_A_Name"), r"metadata\.name: 'Not_A_Name' is not a "
                 r"Kubernetes name", id="bad-name"),
    pytest.param(_policy(name="a" * 254), r"metadata\.name: 'a{20,}\.\.\.a{20,}' is not a "
                 r"Kubernetes name \(up to 253", id="long-name"),
    pytest.param(_policy(namespace="n" * 64), r"metadata\.namespace: 'n+\.\.\.n+' is not a "
                 r"Kubernetes name \(up to 63", id="long-namespace"),
    pytest.param(_policy(app="[a, b]"), r"spec\.podSelector\.matchLabels\.app: want a label "
                 r"value \(a string\), got list", id="label-list"),
    pytest.param(_policy(app="null"), r"matchLabels\.app: want a label value \(a string\), "
                 r"got nothing", id="label-null"),
    pytest.param(_policy(app="1.5"), r"matchLabels\.app: want a label value \(a string\), got "
                 r"float", id="label-float"),
    pytest.param(_policy(app="b" * 64), r"matchLabels\.app: 'b+\.\.\.b+' is not a label value",
                 id="long-label"),
    pytest.param(_policy() + "  egress: []\n  egress: []\n",
                 r"line 10: not valid YAML: duplicate key 'egress'", id="duplicate-key"),
    pytest.param("kind: NetworkPolicy\nmetadata: {name: a, name: b}\nspec: {podSelector: {}}\n",
                 r"line 2: not valid YAML: duplicate key 'name'", id="duplicate-name"),
    pytest.param(_policy().replace("from: [{podSelector: {matchLabels: {app: frontend}}}]",
                                   "from: [{ipBlock: {cidr: [10.0.0.0/8]}}]"),
                 r"ipBlock\.cidr: want a CIDR such as 10\.0\.0\.0/8, got list", id="cidr-list"),
    pytest.param(_policy(port='"' + "x" * 5_000_000 + '"'),
                 r"port: 'x{20,}\.\.\.x{20,}' is not a port number", id="huge-value"),
    pytest.param("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: c}\n"
                 "spec:\n  endpointSelector: {}\n  egress:\n  - toEntities: [[world]]\n",
                 r"toEntities: unknown entity \['world'\]", id="entity-list"),
    pytest.param("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: c}\n"
                 "spec:\n  endpointSelector: {}\n  enableDefaultDeny: {ingress: 'no'}\n",
                 r"enableDefaultDeny\.ingress: want true or false, got str", id="default-deny"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_values_of_the_wrong_type_or_size_name_file_and_field(text: str, message: str,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as raised:
        load_policies(path)
    shown = str(raised.value)
    assert shown.startswith(f"{path}"), shown
    assert re.search(message, shown), shown
    assert "\n" not in shown and len(shown) < 400


def test_names_and_values_at_their_limits_load() -> None:
    (policy,) = parse_policies(_policy(name="a" * 253, namespace="n" * 63, app="b" * 63))
    assert policy.name == "a" * 253 and policy.namespace == "n" * 63


def test_the_c_parser_is_used_where_libyaml_is_installed() -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("libyaml is not installed: the pure-Python parser is used")
    assert issubclass(_Loader, yaml.CSafeLoader)


def test_ten_thousand_policies_load() -> None:
    text = "---\n".join(_policy(name=f"p{i}", app=f"a{i}", port=str(1 + i % 65535))
                        for i in range(10_000))
    policies = parse_policies(text, "many.yaml")
    assert len(policies) == 10_000
    assert policies[-1].name == "p9999"


def test_the_cli_prints_one_line_for_a_bad_policy(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(_policy(namespace="[a]"))
    run = subprocess.run([sys.executable, "-m", "flowlens", "policy", "check", str(path),
                          str(ROOT / "samples" / "lab.jsonpb")], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "metadata.namespace: want a string" in run.stderr
