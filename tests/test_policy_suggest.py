"""`policy.suggest` on small hand-built frames: how peers, ports and names come out, what it
refuses to widen, and that `check` of every suggestion allows exactly the observed traffic."""

from __future__ import annotations

from typing import Any

import pandas as pd
import yaml
from test_analyses import frame

from flowlens import policy

NS_LABEL = "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name"


def labels(ns: str, *own: str) -> str:
    return ",".join([*own, f"{NS_LABEL}={ns}", "k8s:io.cilium.k8s.policy.cluster=kind",
                     f"k8s:io.kubernetes.pod.namespace={ns}", "k8s:pod-template-hash=5f7c"])


def side(prefix: str, ns: str | None, pod: str | None, ip: str, label_text: str,
         identity: int = 12345) -> dict[str, Any]:
    return {f"{prefix}_namespace": ns, f"{prefix}_pod": pod, f"{prefix}_ip": ip,
            f"{prefix}_labels": label_text, f"{prefix}_identity": identity}


def request(src: dict[str, Any], dst: dict[str, Any], port: int | None, protocol: str = "TCP",
            direction: str = "INGRESS", verdict: str = "FORWARDED", t: float = 0,
            **extra: Any) -> dict[str, Any]:
    return {**{k.replace("dst", "src", 1) if k.startswith("dst") else k: v
               for k, v in src.items()}, **dst, "dst_port": port, "protocol": protocol,
            "traffic_direction": direction, "verdict": verdict, "is_reply": False,
            "event_type": 4, "time": t, **extra}


WEB_V1 = side("dst", "shop", "web-v1-abc", "10.0.1.1", labels("shop", "k8s:app=web",
                                                                 "k8s:version=v1"))
WEB_V2 = side("dst", "shop", "web-v2-def", "10.0.1.2", labels("shop", "k8s:app=web",
                                                                 "k8s:version=v2"))
CLIENT = side("dst", "shop", "client-123", "10.0.2.1", labels("shop", "k8s:app=client"))
MONITOR = side("dst", "ops", "prom-0", "10.0.3.1", labels("ops", "k8s:app=prometheus"))
HOST = side("dst", None, None, "172.18.0.2", "reserved:host", identity=1)
REMOTE = side("dst", None, None, "172.18.0.3", "reserved:remote-node", identity=6)
WORLD = side("dst", None, None, "203.0.113.7", "reserved:world", identity=2)


def flows() -> pd.DataFrame:
    return frame(
        request(CLIENT, WEB_V1, 8080), request(CLIENT, WEB_V2, 8080),
        request(MONITOR, WEB_V1, 9090), request(MONITOR, WEB_V2, 9090),
        request(HOST, WEB_V1, 8080),                         # kubelet probe: no rule needed
        request(REMOTE, WEB_V1, 8080),                       # another node: not expressible
        request(WORLD, WEB_V2, 443),                         # from outside: a /32 ipBlock
        request(CLIENT, WEB_V1, None, protocol="ICMPv4"),    # ICMP: not expressible
        request(CLIENT, WEB_V1, 8443, verdict="DROPPED", drop_reason="POLICY_DENIED"),
        request(CLIENT, WEB_V1, 8080, is_reply=True),
    )


def manifests(suggestion: policy.Suggestion) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in yaml.safe_load_all(suggestion.yaml()) if p}


def test_workloads_sharing_an_app_label_get_distinct_names_and_peer_rules() -> None:
    suggestion = policy.suggest(flows())
    found = manifests(suggestion)
    assert sorted(found) == ["web-v1-allow-ingress", "web-v2-allow-ingress"]
    v1 = found["web-v1-allow-ingress"]["spec"]
    assert v1["podSelector"] == {"matchLabels": {"app": "web", "version": "v1"}}
    client = {"podSelector": {"matchLabels": {"app": "client"}}}
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
                  "podSelector": {"matchLabels": {"app": "prometheus"}}}
    assert {(tuple(map(str, r["from"])), tuple(p["port"] for p in r["ports"]))
            for r in v1["ingress"]} == {((str(client),), (8080,)), ((str(prometheus),), (9090,))}
    v2 = found["web-v2-allow-ingress"]["spec"]["ingress"]
    assert {"from": [{"ipBlock": {"cidr": "203.0.113.7/32"}}],
            "ports": [{"protocol": "TCP", "port": 443}]} in v2
    # The denied 8443, the host's probe and the reply gave no rule.
    assert "8443" not in suggestion.yaml() and "172.18.0.2" not in suggestion.yaml()


def test_what_networkpolicy_cannot_say_is_noted_not_widened() -> None:
    suggestion = policy.suggest(flows())
    notes = "\n".join(suggestion.notes)
    assert "remote-node -> shop/web-v1-abc TCP 8080: NetworkPolicy cannot select remote-node" \
        in notes
    assert "shop/client-123 -> shop/web-v1-abc ICMPv4: NetworkPolicy has no rule" in notes
    assert suggestion.yaml().startswith("# note: ")
    for rule in (r for p in suggestion.policies for r in p["spec"]["ingress"]):
        assert rule["ports"] and rule["from"]  # never an allow-all


def test_check_of_the_suggestion_breaks_only_what_it_could_not_express() -> None:
    df = flows()
    suggested = policy.PolicySet(tuple(policy.parse_policies(policy.suggest(df).yaml())))
    result = policy.check(df, suggested).connections
    broken = result[result["change"] == "would_break"]
    assert sorted(zip(broken["source"], broken["protocol"], strict=True)) == [
        ("remote-node", "TCP"), ("shop/client-123", "ICMPv4")]
    assert (result.loc[result["source"] == "host", "predicted"] == "allowed").all()


def test_selector_namespace_and_direction_choose_the_workloads() -> None:
    df = flows()
    assert list(manifests(policy.suggest(df, selector="version=v2"))) == ["web-allow-ingress"]
    assert policy.suggest(df, namespace="ops").policies == ()
    egress = manifests(policy.suggest(df, directions=("egress",)))
    assert sorted(egress) == []  # every flow here was seen at its destination (INGRESS)
    both = frame(*(r | {"traffic_direction": None} for r in [request(CLIENT, WEB_V1, 8080)]))
    assert sorted(manifests(policy.suggest(both, directions=("ingress", "egress")))) == [
        "client-allow-egress", "web-allow-ingress"]


def test_text_input_without_labels_is_noted() -> None:
    src = side("dst", "shop", "client-123", "10.0.2.1", "")
    dst = side("dst", "shop", "web-v1-abc", "10.0.1.1", "")
    suggestion = policy.suggest(frame(request(src, dst, 8080)))
    assert suggestion.policies == ()
    assert suggestion.notes == ("shop/web-v1-abc: labels unknown (text input); read jsonpb or "
                                "a relay",)
