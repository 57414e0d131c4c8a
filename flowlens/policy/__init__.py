"""The policy lens: evaluate NetworkPolicy (and a subset of CiliumNetworkPolicy) against the
connections in recorded flows, and suggest least-privilege policies from them.

    >>> from flowlens import policy
    >>> policies = policy.load_policies(["deny.yaml", "allow.yaml"])
    >>> result = policy.check(df, policies)
    >>> result.connections[result.connections.change == "would_break"]
"""

from flowlens.policy.check import CHANGES, CONNECTION_COLUMNS, PolicyCheck, check
from flowlens.policy.evaluate import Decision, decide
from flowlens.policy.model import (
    DIRECTIONS,
    Policy,
    PolicyError,
    PolicySet,
    load_policies,
    parse_named_ports,
    parse_policies,
    split_paths,
)
from flowlens.policy.peers import Peer, peer
from flowlens.policy.suggest import Suggestion, parse_selector, suggest

__all__ = [
    "CHANGES",
    "CONNECTION_COLUMNS",
    "DIRECTIONS",
    "Decision",
    "Peer",
    "Policy",
    "PolicyCheck",
    "PolicyError",
    "PolicySet",
    "Suggestion",
    "check",
    "decide",
    "load_policies",
    "parse_named_ports",
    "parse_policies",
    "parse_selector",
    "peer",
    "split_paths",
    "suggest",
]
