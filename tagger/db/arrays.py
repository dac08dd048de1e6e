"""Numeric arrays handed to PostgreSQL as one text literal, cast in SQL (`%(ids)s::bigint[]`)."""

from __future__ import annotations

from collections.abc import Iterable


def array_literal(values: Iterable[int | float]) -> str:
    """`[1, 2, 3]` -> `'{1,2,3}'`, for a parameter the statement casts to int[], bigint[] or float8[].

    psycopg adapts a list element by element in Python, holding the GIL: 2.4 ms for a batch's three
    arrays of 320 numbers (profiled, issue 15), ten times the join. Numbers only: nothing to quote;
    `repr` keeps every float exact.
    """
    return "{" + ",".join(map(repr, values)) + "}"
