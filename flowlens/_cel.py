"""CEL expressions over `flow.Flow`, as hubble's `--cel-expression` evaluates them.

hubble compiles each expression with cel-go in the container `flow`, with the variable `_flow`
of type `flow.Flow`, type-checked against the proto (an unknown field or a non-bool result is
refused), and keeps a flow when any expression evaluates to true; an evaluation error (a
division by zero, a missing map key) counts as false. Here the same is done by Google's C++
CEL implementation (cel-expr-python) over the project's own `flow.Flow` descriptor, which has
Hubble's field names and numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from flowlens._proto.flow import flow_pb2

VARIABLE = "_flow"


@functools.cache
def _env() -> Any:
    from cel_expr_python import cel

    return cel.NewEnv(variables={VARIABLE: cel.Type(flow_pb2.Flow.DESCRIPTOR.full_name)},
                      container="flow")


@functools.lru_cache(maxsize=64)
def compile_expression(text: str) -> Any:
    """The compiled expression; ValueError naming hubble's reason when it would refuse it."""
    from cel_expr_python import cel

    try:
        expression = _env().compile(text)
    except RuntimeError as exc:  # cel-expr-python reports compile errors so
        raise ValueError(_first_error(str(exc))) from None
    kind = expression.return_type()
    if kind != cel.Type.BOOL:
        raise ValueError(f"got {kind.name().lower()!r}, wanted 'bool' result type")
    return expression


def _first_error(message: str) -> str:
    """'INVALID_ARGUMENT: ERROR: <input>:1:6: undefined field ... [INVALID_ARGUMENT]' -> the
    first line without the status words."""
    line = message.strip().splitlines()[0] if message.strip() else "invalid expression"
    for prefix in ("INVALID_ARGUMENT: ", "ERROR: "):
        line = line.removeprefix(prefix)
    return line


def matches(expressions: Sequence[str], flows: Iterable[flow_pb2.Flow]) -> np.ndarray:
    """Per flow: does any expression evaluate to true on it?"""
    compiled = [compile_expression(e) for e in expressions]
    out = []
    for flow in flows:
        data = {VARIABLE: flow}
        out.append(any(_true(e, data) for e in compiled))
    return np.asarray(out, dtype=bool)


def _true(expression: Any, data: dict[str, Any]) -> bool:
    try:
        return expression.eval(data=data).value() is True
    except (RuntimeError, ValueError):  # an evaluation error: hubble counts it as false
        return False
