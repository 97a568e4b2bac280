"""JSON for results and messages: orjson, with the common scientific types made plain JSON.

NumPy arrays and scalars, paths, sets and datetimes are converted; NaN becomes null (strict
JSON, which browsers and other languages can read). Anything else is refused with a clear error.
"""

from __future__ import annotations

import datetime as dt
from pathlib import PurePath
from typing import Any

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
