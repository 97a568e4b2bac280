"""JSON for results and messages: orjson, with the common scientific types made plain JSON.

NumPy arrays and scalars, paths and datetimes are converted to what they mean in JSON. A stage's
result is checked first (`inexact`): a value JSON would not hold as it is (NaN, infinity, a set,
a key that is not a string, a type JSON has no form for) is refused naming its key, because
storing null for NaN or a list for a set would record something the stage did not return.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import PurePath
from typing import Any

import numpy as np
import orjson

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def to_jsonable(value: Any) -> Any:
    """Conversion hook for types orjson does not know."""
    if hasattr(value, "tolist") and callable(value.tolist):  # NumPy scalars and odd arrays
        return value.tolist()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"a {type(value).__name__} is not JSON-serialisable")


def inexact(value: Any, where: str = "") -> str | None:
    """Where ``value`` holds something JSON would not store as it is, and what: ``None`` if nothing.

    The answer names the key path (``['scores'][2] is nan``), so the error can point at it.
    """
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where or 'the value'} is {value}"
    if isinstance(value, dict):
        for key, inner in value.items():
            if not isinstance(key, str):
                return f"{where or 'the result'} has a key {key!r} that is not a string"
            found = inexact(inner, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        if _finite_numbers(value):
            return None  # a vector (an embedding, a box): checked at C speed, not element by element
        for i, inner in enumerate(value):
            found = inexact(inner, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(value, np.ndarray | np.generic):
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            if value.ndim == 0:
                return f"{where or 'the value'} is {value}"
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0])
            return f"{where}{''.join(f'[{i}]' for i in bad)} is {np.asarray(value)[bad]}"
        if value.dtype.kind in "biufU":
            return None
        return f"{where or 'the value'} is NumPy {value.dtype}, which JSON has no form for"
    if isinstance(value, set | frozenset):
        return f"{where or 'the value'} is a {type(value).__name__}, which JSON would store as a list"
    if isinstance(value, PurePath | dt.date):
        return None
    return f"{where or 'the value'} is of type {type(value).__name__}, which JSON has no form for"


def _finite_numbers(values: list[Any] | tuple[Any, ...]) -> bool:
    """Whether every value is a finite float or an int (JSON holds it as it is)."""
    if not set(map(type, values)) <= _NUMBERS:
        return False
    try:
        return all(map(math.isfinite, values))
    except OverflowError:  # an int beyond a float's range: still exact in JSON
        return all(type(v) is int or math.isfinite(v) for v in values)


_NUMBERS = {float, int}


def dumps(value: Any) -> str:
    """Compact JSON text."""
    return encode(value).decode()


def encode(value: Any) -> bytes:
    """Compact JSON bytes, for messages."""
    try:
        return orjson.dumps(value, default=to_jsonable, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise TypeError(str(exc)) from None


loads = orjson.loads
