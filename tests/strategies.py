"""Hypothesis strategies for hostile request values: paths, names, numbers and JSON that a
client may send and the file system, the database or the JSON encoder cannot take."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

#: characters that break something somewhere: NUL, lone surrogates, separators, wide ones
ODD = ["\x00", "\udc80", "\ud800", "\udfff", "/", "\\", "é", "\U0001f600", ".", " ", "\n", "*", "%", ":"]
CHARS = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.characters(categories=["Cs"]),  # lone surrogates: JSON's "\udc80" decodes to one
    st.sampled_from(ODD),
)
#: one path part: short and odd, or about the 255 bytes a file system takes, in 1- and 2-byte characters
PARTS = st.one_of(
    st.text(CHARS, max_size=12),
    st.integers(250, 260).map(lambda n: "a" * n),
    st.integers(124, 130).map(lambda n: "é" * n),
    st.integers(62, 66).map(lambda n: "\U0001f600" * n),
)
RELATIVE = st.lists(PARTS, min_size=1, max_size=5).map("/".join)
PATHS = st.one_of(
    RELATIVE,
    RELATIVE.map(lambda p: "/" + p),
    RELATIVE.map(lambda p: "file:///" + p),
    RELATIVE.map(lambda p: "s3://bucket/" + p),
    st.integers(4090, 4100).map(lambda n: "/" + ("ab/" * n)[: n - 1]),  # about PATH_MAX
)
NAMES = st.one_of(st.text(CHARS, min_size=1, max_size=20), PARTS.filter(bool))

HUGE = [2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63) - 1]
NUMBERS = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=100_000),
    st.integers(-(2**70), 2**70),
    st.integers(-5, 200),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e309, *HUGE]),
)

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from(HUGE),
    st.text(CHARS, max_size=8),
)
JSON: st.SearchStrategy[Any] = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(CHARS, max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


def deep(levels: int) -> Any:
    """A JSON value nested ``levels`` deep."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value
