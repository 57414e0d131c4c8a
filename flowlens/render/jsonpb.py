"""Byte-exact reproduction of ``hubble observe -o jsonpb`` lines.

Hubble writes each response with protojson (``UseProtoNames``) and then passes it through Go's
``encoding/json`` encoder, which compacts it and HTML-escapes ``<``, ``>``, ``&``, U+2028 and
U+2029. The rules this module reproduces (spec §3.6):

- keys are proto field names, in **declaration** order (not field-number order);
- proto3 defaults (0, false, "", empty lists) and unset messages are omitted, while a set
  message is kept even when empty and wrapper types are kept even when false/0;
- enums are names (unknown numbers stay numbers), 64-bit integers are decimal strings;
- timestamps are UTC RFC 3339 with 0, 3, 6 or 9 fraction digits.

The input is a plain ``dict`` as decoded from any jsonpb line (proto or lowerCamelCase names,
any key order, enums as names or numbers, 64-bit values as strings or numbers). Unknown keys are
dropped, as hubble does when it re-reads a file leniently.

Timestamps may carry an offset or any number of fraction digits (more than 9 are truncated
where protojson would refuse them). Malformed values raise ``ValueError`` or ``TypeError``.

For speed, one straight-line encoder function per message type is generated from the
descriptors (fields in declaration order, so no sorting at run time), and the result is
serialised by orjson, whose string escaping matches protojson's (short escapes for
``\\b \\t \\n \\f \\r``, ``\\u00xx`` for other control characters, UTF-8 left raw).
"""

from __future__ import annotations

import base64
import math
import re
import struct
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Final

import orjson
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from flowlens._proto.flow import flow_pb2
from flowlens._proto.observer import observer_pb2

__all__ = ["encode_flow", "encode_message", "encode_response", "encode_response_bytes"]

_Converter = Callable[[Any], Any]

_SKIP: Final = object()

_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"
_ANY = "google.protobuf.Any"
_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_INT32_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_SFIXED32,
    }
)


class _Raw:
    """Pre-rendered JSON text; orjson rejects it, which routes the line to the slow writer."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


# ---------------------------------------------------------------- scalar conversions


def _enum_number(v: str) -> int | str:
    """An enum number written as text (as readers name a number their enum does not know;
    protojson reads it so), else the text."""
    digits = v[1:] if v.startswith("-") else v
    return int(v) if digits.isascii() and digits.isdigit() else v


def _to_int(v: Any) -> int:
    # protojson accepts integers as numbers or strings, including "1e3"-style integral values.
    if type(v) is int:
        return v
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            f = float(v)
    elif isinstance(v, float):
        f = v
    else:
        raise ValueError(f"not an integer: {v!r}")
    if not f.is_integer():
        raise ValueError(f"not an integer: {v!r}")
    return int(f)


def _to_float(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        return float(v)  # also "NaN", "Infinity", "-Infinity"
    raise ValueError(f"not a number: {v!r}")


def _shortest(x: float, bits: int) -> str:
    if bits == 64:
        return repr(x)
    # float32: fewest significant digits that round-trip through a 32-bit float, as Go does.
    for precision in range(1, 10):
        text = f"{x:.{precision}g}"
        if struct.unpack("<f", struct.pack("<f", float(text)))[0] == x:
            return text
    return repr(x)


def _go_float_text(x: float, bits: int = 64) -> str:
    """Format like protojson: %f for 1e-6 <= |x| < 1e21, else %e with a 2-digit exponent."""
    if bits == 32:
        x = struct.unpack("<f", struct.pack("<f", x))[0]
    dec = Decimal(_shortest(x, bits)).normalize()
    a = abs(x)
    if a == 0 or 1e-6 <= a < 1e21:
        return format(dec, "f")
    sign, digits, exponent = dec.as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(map(str, digits))
    exp10 = exponent + len(digits) - 1
    text = ("-" if sign else "") + mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
    # Go writes e+21, e-07; protojson then shortens a single-digit negative exponent to e-7.
    if exp10 < 0:
        return f"{text}e-{-exp10}" if exp10 > -10 else f"{text}e{exp10:03d}"
    return f"{text}e+{exp10:02d}"


def _json_float(v: Any, bits: int = 64) -> Any:
    x = _to_float(v)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    text = _go_float_text(x, bits)
    if orjson.dumps(x) == text.encode():
        return x
    if text == "-0":
        return _Raw(text)  # int("-0") would lose the sign
    if "." not in text and "e" not in text and -(2**63) <= int(text) < 2**63:
        return int(text)  # orjson prints "5.0" for 5.0; Go prints "5"
    return _Raw(text)


def _is_zero_float(x: float) -> bool:
    # proto3 presence for doubles is "bits != 0": -0.0 is set.
    return x == 0 and math.copysign(1.0, x) > 0


def _json_bytes(v: Any) -> str:
    text = str(v).rstrip("=")
    altchars = b"-_" if ("-" in text or "_" in text) else None
    raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)
    return base64.b64encode(raw).decode("ascii")


_TS_RE: Final = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")
_TS_CACHE: dict[str, str] = {}
_TS_CACHE_MAX: Final = 4096


def _fraction(digits: str | None) -> str:
    """0, 3, 6 or 9 digits, as protojson prints nanos; extra digits are truncated like Go's time."""
    if not digits:
        return ""
    nanos = (digits + "00000000")[:9]
    if nanos.endswith("000000"):
        return "" if nanos == "000000000" else "." + nanos[:3]
    if nanos.endswith("000"):
        return "." + nanos[:6]
    return "." + nanos


def _timestamp(v: Any) -> str:
    cached = _TS_CACHE.get(v)
    if cached is not None:
        return cached
    m = _TS_RE.fullmatch(v) if isinstance(v, str) else None
    if m is None:
        raise ValueError(f"invalid timestamp: {v!r}")
    seconds, digits, zone = m.groups()
    if zone != "Z":
        utc = datetime.fromisoformat(seconds + zone).astimezone(timezone.utc)
        seconds = utc.replace(tzinfo=None).isoformat(timespec="seconds")
    out = seconds + _fraction(digits) + "Z"
    if len(_TS_CACHE) >= _TS_CACHE_MAX:
        _TS_CACHE.clear()
    _TS_CACHE[v] = out
    return out


_DURATION_RE: Final = re.compile(r"(-?)(\d+)(?:\.(\d+))?s")


def _duration(v: Any) -> str:
    m = _DURATION_RE.fullmatch(v) if isinstance(v, str) else None
    if m is None:
        raise ValueError(f"invalid duration: {v!r}")
    sign, seconds, digits = m.groups()
    frac = _fraction(digits)
    if int(seconds) == 0 and not frac:
        sign = ""
    return f"{sign}{int(seconds)}{frac}s"


def _sorted_value(v: Any) -> Any:
    # protojson writes google.protobuf.Struct fields in sorted key order.
    if isinstance(v, dict):
        return {k: _sorted_value(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [_sorted_value(x) for x in v]
    return v


# ---------------------------------------------------------------- compiled encoders

_POOL: Final = descriptor_pool.Default()
_WRAPPERS_AS_IS: Final = frozenset({"google.protobuf.BoolValue", "google.protobuf.StringValue"})
_WRAPPERS_INT32: Final = frozenset({"google.protobuf.Int32Value", "google.protobuf.UInt32Value"})


def _enum_maps(field: FieldDescriptor) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """(singular map with the zero value -> None, full map): numbers and names -> names."""
    enum = field.enum_type
    assert enum is not None
    full: dict[Any, Any] = {}
    singular: dict[Any, Any] = {}
    for value in enum.values:  # values_by_number holds the canonical name of aliases
        name = enum.values_by_number[value.number].name
        full[value.number] = full[value.name] = name
        singular[value.number] = singular[value.name] = name if value.number else None
    return singular, full


def _well_known_converter(full_name: str) -> _Converter | None:
    """Converters for message types with a special JSON form (value -> JSON value)."""
    if full_name == _TIMESTAMP:
        return _timestamp
    if full_name == _DURATION:
        return _duration
    if full_name == _ANY:
        return _any
    if full_name in _WRAPPERS_AS_IS or full_name == "google.protobuf.FieldMask":
        return lambda v: v
    if full_name in _WRAPPERS_INT32:
        return _to_int
    if full_name in ("google.protobuf.Int64Value", "google.protobuf.UInt64Value"):
        return lambda v: str(_to_int(v))
    if full_name == "google.protobuf.DoubleValue":
        return _json_float
    if full_name == "google.protobuf.FloatValue":
        return lambda v: _json_float(v, 32)
    if full_name == "google.protobuf.BytesValue":
        return _json_bytes
    if full_name in (
        "google.protobuf.Struct",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
    ):
        return _sorted_value
    return None


def _scalar_converter(field: FieldDescriptor) -> _Converter:
    """Converter for one element of a scalar field (never skips)."""
    t = field.type
    if t in _INT64_TYPES:
        return lambda v: str(_to_int(v))
    if t in _INT32_TYPES:
        return _to_int
    if t == FieldDescriptor.TYPE_DOUBLE:
        return _json_float
    if t == FieldDescriptor.TYPE_FLOAT:
        return lambda v: _json_float(v, 32)
    if t == FieldDescriptor.TYPE_BYTES:
        return _json_bytes
    if t == FieldDescriptor.TYPE_ENUM:
        full = _enum_maps(field)[1]
        return lambda v: full.get(v, v)
    return lambda v: v  # string, bool


def _skip_default(convert: _Converter) -> _Converter:
    """For the rare implicit-presence scalars (double, float, bytes): omit zero values."""

    def converter(v: Any) -> Any:
        out = convert(v)
        if isinstance(out, float):
            return _SKIP if _is_zero_float(out) else out
        return _SKIP if out == 0 or out == "" else out

    return converter


# Code templates, one per field kind. KEY is the proto name (also the output key); the
# generated function has `g` = input dict's get and `r` = the output dict.
_T_MESSAGE = """
    v = g(KEY)
    if v is not None:
        r[KEY] = FN(v)"""
_T_TRUTHY = """
    v = g(KEY)
    if v:
        r[KEY] = v"""
_T_INT32 = """
    v = g(KEY)
    if v:
        if type(v) is not int:
            v = to_int(v)
        if v:
            r[KEY] = v"""
_T_BOOL = """
    if g(KEY) is True:
        r[KEY] = True"""
_T_ENUM = """
    v = g(KEY)
    if v is not None:
        n = CONST.get(v, SKIP)
        if n is SKIP and type(v) is str:
            v = enum_number(v)
            n = CONST.get(v, SKIP)
        if n is SKIP:
            if type(v) is int:
                r[KEY] = v
        elif n is not None:
            r[KEY] = n"""
_T_REPEATED_MESSAGE = """
    v = g(KEY)
    if v:
        r[KEY] = [FN(x) for x in v]"""
_T_PRESENT = """
    v = g(KEY)
    if v is not None:
        r[KEY] = v"""
_T_WRAPPED_INT32 = """
    v = g(KEY)
    if v is not None:
        r[KEY] = v if type(v) is int else to_int(v)"""
_T_TIMESTAMP = """
    v = g(KEY)
    if v is not None:
        t = ts_cache(v)
        r[KEY] = t if t is not None else ts(v)"""
_T_INT64 = """
    v = g(KEY)
    if v is not None:
        v = to_int(v)
        if v:
            r[KEY] = str(v)"""
_T_CONVERT = """
    v = g(KEY)
    if v is not None:
        v = CONST(v)
        if v is not SKIP:
            r[KEY] = v"""


class _Compiler:
    """Generates one straight-line encoder function per message type, from its descriptor.

    A generated function walks the fields in declaration order, so the output dict already
    has hubble's key order and no per-key dispatch or sorting happens at run time.
    """

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {
            "SKIP": _SKIP,
            "to_int": _to_int,
            "enum_number": _enum_number,
            "ts": _timestamp,
            "ts_cache": _TS_CACHE.get,
        }
        self.names: dict[str, str] = {}

    def encoder(self, desc: Descriptor) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        fn: Callable[[Mapping[str, Any]], dict[str, Any]] = self.namespace[self._compile(desc)]
        return fn

    def _const(self, value: Any) -> str:
        name = f"c{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def _compile(self, desc: Descriptor) -> str:
        name = self.names.get(desc.full_name)
        if name is not None:
            return name
        name = "enc_" + re.sub(r"\W", "_", desc.full_name)
        self.names[desc.full_name] = name  # registered first: message types may recurse
        lines = [f"def {name}(d):"]
        aliases = {f.json_name: f.name for f in desc.fields if f.json_name != f.name}
        if aliases:
            # lowerCamelCase input: rename once instead of probing two names per field.
            names = self._const(frozenset(f.name for f in desc.fields))
            alias = self._const(aliases)
            lines.append(f"    if not (d.keys() <= {names}):")
            lines.append(f"        d = {{{alias}.get(k, k): v for k, v in d.items()}}")
        lines.append("    g = d.get")
        lines.append("    r = {}")
        for field in desc.fields:
            template, subst = self._field(field)
            code = template.strip("\n").replace("KEY", repr(field.name))
            for placeholder, value in subst.items():
                code = code.replace(placeholder, value)
            lines.append(code)
        lines.append("    return r")
        # The source is built only from descriptor names and fixed templates.
        exec("\n".join(lines), self.namespace)
        return name

    def _field(self, field: FieldDescriptor) -> tuple[str, dict[str, str]]:
        msg = field.message_type
        special = _well_known_converter(msg.full_name) if msg is not None else None
        if field.is_repeated:
            if msg is not None and msg.GetOptions().map_entry:
                raise NotImplementedError(f"map field {field.full_name} is not supported")
            if field.type == FieldDescriptor.TYPE_STRING:
                return _T_TRUTHY, {}
            if msg is not None and special is None:
                return _T_REPEATED_MESSAGE, {"FN": self._compile(msg)}
            element = special or _scalar_converter(field)
            return _T_CONVERT, {"CONST": self._const(lambda v: [element(x) for x in v] or _SKIP)}
        if msg is not None:
            if special is None:
                return _T_MESSAGE, {"FN": self._compile(msg)}
            if msg.full_name == _TIMESTAMP:
                return _T_TIMESTAMP, {}
            if msg.full_name in _WRAPPERS_AS_IS:
                return _T_PRESENT, {}
            if msg.full_name in _WRAPPERS_INT32:
                return _T_WRAPPED_INT32, {}
            return _T_CONVERT, {"CONST": self._const(special)}
        if field.has_presence:
            # proto3 `optional` scalars and scalar oneof members print even when zero.
            return _T_CONVERT, {"CONST": self._const(_scalar_converter(field))}
        t = field.type
        if t == FieldDescriptor.TYPE_STRING:
            return _T_TRUTHY, {}
        if t in _INT32_TYPES:
            return _T_INT32, {}
        if t == FieldDescriptor.TYPE_BOOL:
            return _T_BOOL, {}
        if t == FieldDescriptor.TYPE_ENUM:
            return _T_ENUM, {"CONST": self._const(_enum_maps(field)[0])}
        if t in _INT64_TYPES:
            return _T_INT64, {}
        return _T_CONVERT, {"CONST": self._const(_skip_default(_scalar_converter(field)))}


_COMPILER: Final = _Compiler()
_ENCODERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {}


def _encoder(full_name: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    fn = _ENCODERS.get(full_name)
    if fn is None:
        fn = _ENCODERS[full_name] = _COMPILER.encoder(_POOL.FindMessageTypeByName(full_name))
    return fn


def _any(v: Any) -> Any:
    if not isinstance(v, dict):
        raise ValueError(f"google.protobuf.Any must be an object: {v!r}")
    url = v.get("@type")
    if not url:
        return {}
    type_name = str(url).rsplit("/", 1)[-1]
    try:
        encode = _encoder(type_name)
    except KeyError:
        # Type not linked in: keep its fields as given (protojson itself would refuse it).
        return {"@type": url, **{k: x for k, x in v.items() if k != "@type"}}
    special = _well_known_converter(type_name)
    if special is not None:
        return {"@type": url, "value": special(v.get("value"))}
    return {"@type": url, **encode(v)}


# ---------------------------------------------------------------- writing


def _dumps_slow(obj: Any) -> bytes:
    """Writer for the rare values orjson cannot take as is (pre-rendered floats, huge ints)."""
    if isinstance(obj, _Raw):
        return obj.text.encode()
    if isinstance(obj, dict):
        parts = [orjson.dumps(k) + b":" + _dumps_slow(x) for k, x in obj.items()]
        return b"{" + b",".join(parts) + b"}"
    if isinstance(obj, list):
        return b"[" + b",".join(_dumps_slow(x) for x in obj) + b"]"
    if type(obj) is int:
        return str(obj).encode()
    return orjson.dumps(obj)


def _html_escape(b: bytes) -> bytes:
    # What Go's json.Encoder (escapeHTML on by default) does to the protojson bytes.
    if b"<" in b:
        b = b.replace(b"<", b"\\u003c")
    if b">" in b:
        b = b.replace(b">", b"\\u003e")
    if b"&" in b:
        b = b.replace(b"&", b"\\u0026")
    # One-byte probe first: multi-byte `in` is far slower than memchr on long lines.
    if b"\xe2" in b and (b"\xe2\x80\xa8" in b or b"\xe2\x80\xa9" in b):
        b = b.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return b


def _dumps(obj: dict[str, Any]) -> bytes:
    try:
        out = orjson.dumps(obj)
    except TypeError:  # orjson.JSONEncodeError: a _Raw value or an int beyond 64 bits
        out = _dumps_slow(obj)
    return _html_escape(out)


_encode_response: Final = _encoder(observer_pb2.GetFlowsResponse.DESCRIPTOR.full_name)
_encode_flow: Final = _encoder(flow_pb2.Flow.DESCRIPTOR.full_name)


def encode_message(d: Mapping[str, Any], full_name: str) -> str:
    """Encode a message of any type in the pool (e.g. ``observer.ServerStatusResponse``)."""
    return _dumps(_encoder(full_name)(d)).decode()


def encode_response_bytes(d: Mapping[str, Any]) -> bytes:
    """``encode_response`` as UTF-8 bytes, for writers that avoid the decode."""
    return _dumps(_encode_response(d))


def encode_response(d: Mapping[str, Any]) -> str:
    """One ``GetFlowsResponse`` as the line ``hubble observe -o jsonpb`` prints (no newline)."""
    return _dumps(_encode_response(d)).decode()


def encode_flow(d: Mapping[str, Any]) -> str:
    """A bare ``Flow``, as legacy ``-o json`` printed it (pre-v0.11 / HUBBLE_COMPAT)."""
    return _dumps(_encode_flow(d)).decode()
