"""Facts about Hubble that readers and renderers share: enum names, labels, reserved identities.

Every table here restates ../shared/spec/hubble-api.md (Cilium v1.19.4).
"""

from __future__ import annotations

import re

VERDICTS: tuple[str, ...] = (
    "VERDICT_UNKNOWN", "FORWARDED", "DROPPED", "ERROR", "AUDIT", "REDIRECTED", "TRACED", "TRANSLATED",
)

# How `hubble observe` prints the verdict of a policy-verdict event (type 5).
POLICY_VERDICT_TEXT: dict[str, str] = {
    "FORWARDED": "ALLOWED", "REDIRECTED": "ALLOWED",
    "DROPPED": "DENIED", "ERROR": "DENIED",
    "AUDIT": "AUDITED",
}

# DropReason number -> (enum name, monitor text printed as the TYPE label of drop events).
# The enum name and the text disagree for 136 and 161: the text is what the CLI shows.
DROP_REASONS: dict[int, tuple[str, str]] = {
    0: ('DROP_REASON_UNKNOWN', 'Success'),
    130: ('INVALID_SOURCE_MAC', 'Invalid source mac'),
    131: ('INVALID_DESTINATION_MAC', 'Invalid destination mac'),
    132: ('INVALID_SOURCE_IP', 'Invalid source ip'),
    133: ('POLICY_DENIED', 'Policy denied'),
    134: ('INVALID_PACKET_DROPPED', 'Invalid packet'),
    135: ('CT_TRUNCATED_OR_INVALID_HEADER', 'CT: Truncated or invalid header'),
    136: ('CT_MISSING_TCP_ACK_FLAG', 'Fragmentation needed'),
    137: ('CT_UNKNOWN_L4_PROTOCOL', 'CT: Unknown L4 protocol'),
    138: ('CT_CANNOT_CREATE_ENTRY_FROM_PACKET', "CT: Can't create entry from packet"),
    139: ('UNSUPPORTED_L3_PROTOCOL', 'Unsupported L3 protocol'),
    140: ('MISSED_TAIL_CALL', 'Missed tail call'),
    141: ('ERROR_WRITING_TO_PACKET', 'Error writing to packet'),
    142: ('UNKNOWN_L4_PROTOCOL', 'Unknown L4 protocol'),
    143: ('UNKNOWN_ICMPV4_CODE', 'Unknown ICMPv4 code'),
    144: ('UNKNOWN_ICMPV4_TYPE', 'Unknown ICMPv4 type'),
    145: ('UNKNOWN_ICMPV6_CODE', 'Unknown ICMPv6 code'),
    146: ('UNKNOWN_ICMPV6_TYPE', 'Unknown ICMPv6 type'),
    147: ('ERROR_RETRIEVING_TUNNEL_KEY', 'Error retrieving tunnel key'),
    148: ('ERROR_RETRIEVING_TUNNEL_OPTIONS', 'Error retrieving tunnel options'),
    149: ('INVALID_GENEVE_OPTION', 'Invalid Geneve option'),
    150: ('UNKNOWN_L3_TARGET_ADDRESS', 'Unknown L3 target address'),
    151: ('STALE_OR_UNROUTABLE_IP', 'Stale or unroutable IP'),
    152: ('NO_MATCHING_LOCAL_CONTAINER_FOUND', 'No matching local container found'),
    153: ('ERROR_WHILE_CORRECTING_L3_CHECKSUM', 'Error while correcting L3 checksum'),
    154: ('ERROR_WHILE_CORRECTING_L4_CHECKSUM', 'Error while correcting L4 checksum'),
    155: ('CT_MAP_INSERTION_FAILED', 'CT: Map insertion failed'),
    156: ('INVALID_IPV6_EXTENSION_HEADER', 'Invalid IPv6 extension header'),
    157: ('IP_FRAGMENTATION_NOT_SUPPORTED', 'IP fragmentation not supported'),
    158: ('SERVICE_BACKEND_NOT_FOUND', 'Service backend not found'),
    160: ('NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT', 'No tunnel/encapsulation endpoint (datapath BUG!)'),
    161: ('FAILED_TO_INSERT_INTO_PROXYMAP', 'NAT 46/64 not enabled'),
    162: ('REACHED_EDT_RATE_LIMITING_DROP_HORIZON', 'Reached EDT rate-limiting drop horizon'),
    163: ('UNKNOWN_CONNECTION_TRACKING_STATE', 'Unknown connection tracking state'),
    164: ('LOCAL_HOST_IS_UNREACHABLE', 'Local host is unreachable'),
    165: ('NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION', 'No configuration available to perform policy decision'),
    166: ('UNSUPPORTED_L2_PROTOCOL', 'Unsupported L2 protocol'),
    167: ('NO_MAPPING_FOR_NAT_MASQUERADE', 'No mapping for NAT masquerade'),
    168: ('UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE', 'Unsupported protocol for NAT masquerade'),
    169: ('FIB_LOOKUP_FAILED', 'FIB lookup failed'),
    170: ('ENCAPSULATION_TRAFFIC_IS_PROHIBITED', 'Encapsulation traffic is prohibited'),
    171: ('INVALID_IDENTITY', 'Invalid identity'),
    172: ('UNKNOWN_SENDER', 'Unknown sender'),
    173: ('NAT_NOT_NEEDED', 'NAT not needed'),
    174: ('IS_A_CLUSTERIP', 'Is a ClusterIP'),
    175: ('FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND', 'First logical datagram fragment not found'),
    176: ('FORBIDDEN_ICMPV6_MESSAGE', 'Forbidden ICMPv6 message'),
    177: ('DENIED_BY_LB_SRC_RANGE_CHECK', 'Denied by LB src range check'),
    178: ('SOCKET_LOOKUP_FAILED', 'Socket lookup failed'),
    179: ('SOCKET_ASSIGN_FAILED', 'Socket assign failed'),
    180: ('PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL', 'Proxy redirection not supported for protocol'),
    181: ('POLICY_DENY', 'Policy denied by denylist'),
    182: ('VLAN_FILTERED', 'VLAN traffic disallowed by VLAN filter'),
    183: ('INVALID_VNI', 'Incorrect VNI from VTEP'),
    184: ('INVALID_TC_BUFFER', 'Failed to update or lookup TC buffer'),
    185: ('NO_SID', 'No SID was found for the IP address'),
    186: ('MISSING_SRV6_STATE', 'SRv6 state was removed during tail call'),
    187: ('NAT46', 'L3 translation from IPv4 to IPv6 failed (NAT46)'),
    188: ('NAT64', 'L3 translation from IPv6 to IPv4 failed (NAT64)'),
    189: ('AUTH_REQUIRED', 'Authentication required'),
    190: ('CT_NO_MAP_FOUND', 'No conntrack map found'),
    191: ('SNAT_NO_MAP_FOUND', 'No nat map found'),
    192: ('INVALID_CLUSTER_ID', 'Invalid ClusterID'),
    193: ('UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP', 'Unsupported packet protocol for DSR encapsulation'),
    194: ('NO_EGRESS_GATEWAY', 'No egress gateway found'),
    195: ('UNENCRYPTED_TRAFFIC', 'Traffic is unencrypted'),
    196: ('TTL_EXCEEDED', 'TTL exceeded'),
    197: ('NO_NODE_ID', 'No node ID found'),
    198: ('DROP_RATE_LIMITED', 'Rate limited'),
    199: ('IGMP_HANDLED', 'IGMP handled'),
    200: ('IGMP_SUBSCRIBED', 'IGMP subscribed'),
    201: ('MULTICAST_HANDLED', 'Multicast handled'),
    202: ('DROP_HOST_NOT_READY', 'Host datapath not ready'),
    203: ('DROP_EP_NOT_READY', 'Endpoint policy program not available'),
    204: ('DROP_NO_EGRESS_IP', 'No Egress IP configured'),
    205: ('DROP_PUNT_PROXY', 'Punt to proxy'),
}

# Monitor texts for codes below 130: not DropReason enum values, but printed as drop labels.
LOW_DROP_TEXTS: dict[int, str] = {
    0: "Success", 2: "Invalid packet", 3: "Interface", 4: "Interface Decrypted",
    9: "Fragmented packet", 10: "Fragmented packet entry update failed",
    11: "Missed tail call to custom program", 12: "Interface Decrypting",
    13: "Interface Encrypting", 14: "LB: sock cgroup: Reverse entry delete succeeded",
    15: "MTU error message",
}


def drop_text(code: int) -> str:
    """The TYPE label hubble prints for a drop event with this sub type."""
    known = DROP_REASONS.get(code)
    if known is not None and code != 0:
        return known[1]
    low = LOW_DROP_TEXTS.get(code)
    return low if low is not None else f"{code}, 0"


DROP_REASON_NAMES: dict[int, str] = {n: name for n, (name, _) in DROP_REASONS.items()}
DROP_REASON_NUMBERS: dict[str, int] = {name: n for n, name in DROP_REASON_NAMES.items()}

# Trace observation point (event sub type of trace events) -> label.
TRACE_POINTS: tuple[str, ...] = (
    "to-endpoint", "to-proxy", "to-host", "to-stack", "to-overlay", "from-endpoint", "from-proxy",
    "from-host", "from-stack", "from-overlay", "from-network", "to-network", "from-crypto",
    "to-crypto",
)

# Monitor event type names, as `--type` takes them.
EVENT_TYPES: dict[str, int] = {
    "drop": 1, "debug": 2, "capture": 3, "trace": 4, "policy-verdict": 5, "trace-sock": 7,
    "l7": 129, "agent": 130,
}

# policy_match_type -> label; anything else prints as "unknown".
POLICY_MATCH: tuple[str, ...] = ("none", "L3-Only", "L3-L4", "L4-Only", "all", "L3-Proto", "Proto-Only")

SOCK_XLATE_POINTS: tuple[str, ...] = (
    "SOCK_XLATE_POINT_UNKNOWN", "pre-xlate-fwd", "post-xlate-fwd", "pre-xlate-rev", "post-xlate-rev",
)

DEBUG_CAPTURE_POINTS: dict[int, str] = {
    0: "DBG_CAPTURE_POINT_UNKNOWN", 4: "DBG_CAPTURE_DELIVERY", 5: "DBG_CAPTURE_FROM_LB",
    6: "DBG_CAPTURE_AFTER_V46", 7: "DBG_CAPTURE_AFTER_V64", 8: "DBG_CAPTURE_PROXY_PRE",
    9: "DBG_CAPTURE_PROXY_POST", 10: "DBG_CAPTURE_SNAT_PRE", 11: "DBG_CAPTURE_SNAT_POST",
}

TRAFFIC_DIRECTIONS: tuple[str, ...] = ("TRAFFIC_DIRECTION_UNKNOWN", "INGRESS", "EGRESS")

# Reserved security identities that print as a name; every other number prints as (ID:n).
RESERVED_IDENTITIES: dict[int, str] = {
    0: "unknown", 1: "host", 2: "world", 3: "unmanaged", 4: "health", 5: "init", 6: "remote-node",
    7: "kube-apiserver", 8: "ingress", 9: "world-ipv4", 10: "world-ipv6",
}
RESERVED_IDENTITY_NUMBERS: dict[str, int] = {v: k for k, v in RESERVED_IDENTITIES.items()}
# --identity also accepts this name although it prints as (ID:11).
IDENTITY_FLAG_NAMES: dict[str, int] = {**RESERVED_IDENTITY_NUMBERS, "overlay-to-encrypt": 11}

LOST_EVENT_SOURCES: tuple[str, ...] = (
    "UNKNOWN_LOST_EVENT_SOURCE", "PERF_EVENT_RING_BUFFER", "OBSERVER_EVENTS_QUEUE", "HUBBLE_RING_BUFFER",
)

L7_TYPES: tuple[str, ...] = ("UNKNOWN_L7_TYPE", "REQUEST", "RESPONSE", "SAMPLE")

# Order in which the server lists TCP flags in summaries; flowlens uses it for `tcp_flags` too.
TCP_FLAG_ORDER: tuple[str, ...] = ("SYN", "ACK", "RST", "FIN", "PSH", "URG", "ECE", "CWR", "NS")

AUTH_TYPES: tuple[str, ...] = ("DISABLED", "SPIRE", "TEST_ALWAYS_FAIL")

L4_PROTOCOLS: tuple[str, ...] = ("TCP", "UDP", "ICMPv4", "ICMPv6", "SCTP", "VRRP", "IGMP")
PORT_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})

# hubble's --time-format name -> (strftime layout down to the second, fraction digits, whether
# trailing zeros of the fraction are dropped, suffix)
TIME_LAYOUTS: dict[str, tuple[str, int, bool, str]] = {
    "StampMilli": ("%b %e %H:%M:%S", 3, False, ""),
    "YearMonthDay": ("%Y-%m-%d", 0, False, ""),
    "YearMonthDayHour": ("%Y-%m-%dT%H", 0, False, "Z"),
    "YearMonthDayHourMinute": ("%Y-%m-%dT%H:%M", 0, False, "Z"),
    "RFC3339": ("%Y-%m-%dT%H:%M:%S", 0, False, "Z"),
    "RFC3339Milli": ("%Y-%m-%dT%H:%M:%S", 3, True, "Z"),
    "RFC3339Micro": ("%Y-%m-%dT%H:%M:%S", 6, True, "Z"),
    "RFC3339Nano": ("%Y-%m-%dT%H:%M:%S", 9, True, "Z"),
    "RFC1123Z": ("%a, %d %b %Y %H:%M:%S", 0, False, " +0000"),
}
TIME_FORMATS: tuple[str, ...] = tuple(TIME_LAYOUTS)
_TIME_FORMAT_BY_LOWER_NAME = {name.lower(): name for name in TIME_FORMATS}


def time_format_name(time_format: str) -> str:
    """The canonical --time-format name: case-insensitive, unknown names mean StampMilli."""
    return _TIME_FORMAT_BY_LOWER_NAME.get(time_format.lower(), "StampMilli")


# --- labels both readers derive -------------------------------------------------------------

def event_label(proto: str | None, l7type: str | None, dns_source: str | None,
                etype: int | None, esub: int | None, match: int | None,
                capture: str | None, sock: str | None) -> str:
    """hubble's TYPE label, without the policy-verdict direction."""
    if l7type is not None:
        label = f"{proto or 'l7'}-{l7type.lower()}"
        return label + " " + (dns_source or "") if proto == "dns" else label
    sub = esub or 0
    if etype == 4:
        return TRACE_POINTS[sub] if 0 <= sub < len(TRACE_POINTS) else str(sub)
    if etype == 1:
        return drop_text(sub)
    if etype == 5:
        return "policy-verdict:" + match_label(match)
    if etype == 3:
        return capture or "DBG_CAPTURE_POINT_UNKNOWN"
    if etype == 7:
        return _SOCK_LABELS.get(sock or "SOCK_XLATE_POINT_UNKNOWN", sock or "")
    return "UNKNOWN"


def match_label(match: int | None) -> str:
    m = match or 0
    return POLICY_MATCH[m] if 0 <= m < len(POLICY_MATCH) else "unknown"


_SOCK_LABELS = dict(zip(
    ("SOCK_XLATE_POINT_UNKNOWN", "SOCK_XLATE_POINT_PRE_DIRECTION_FWD",
     "SOCK_XLATE_POINT_POST_DIRECTION_FWD", "SOCK_XLATE_POINT_PRE_DIRECTION_REV",
     "SOCK_XLATE_POINT_POST_DIRECTION_REV"),
    SOCK_XLATE_POINTS, strict=True))


# hubble neutralises terminal control characters in every record it prints (spec §3.3.8): ESC
# as `^[`, CR as `\r`. Text flowlens prints that hubble does not (node listings, messages on
# stderr) shows every other control character as `\xNN` too (BEL, LF, TAB, DEL, C1 ...).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def visible(text: str) -> str:
    """A string from a flow or a relay, safe to print on one line of a terminal."""
    text = text.replace("\x1b", "^[").replace("\r", "\\r")
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                         else f"\\u{ord(m.group()):04x}", text)
