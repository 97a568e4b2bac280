"""Request values checked at the edge, so nothing hostile reaches the core.

A value the operating system, the database or the JSON encoder cannot take fails deep inside
(``ValueError: embedded null byte``, ``OSError: File name too long``, a UnicodeEncodeError for a
lone surrogate, NaN that no JSON may hold, a number too large for any counter). Each check here
raises ValueError, which pydantic reports as a 422 naming the field.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator

from shoal._json import encode

NAME_MAX = 255  #: bytes of one path component (Linux NAME_MAX)
PATH_MAX = 4095  #: bytes of a whole local path (Linux's PATH_MAX, 4096, counts the final NUL)
URL_MAX = 8192  #: bytes of a URL
COUNT_MAX = 2**53  #: largest count: every JSON client (JavaScript too) reads it exactly
META_DEPTH = 32  #: levels of nesting in an item's meta
META_BYTES = 64 * 1024  #: bytes of an item's meta as JSON
INT64 = (-(2**63), 2**63 - 1)  #: integers a stored record may hold


def check_text(value: str) -> str:
    """No NUL (no file name, no PostgreSQL text holds one) and no lone surrogate (not UTF-8)."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (it holds a lone surrogate such as \\udc80)") from None
    return value


def check_name(value: str) -> str:
    """An id or a name: text without control characters."""
    check_text(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


def check_item_id(value: str) -> str:
    """An item's id: a name that is also a folder name (its artifacts' folder)."""
    check_name(value)
    if len(value.encode()) > NAME_MAX:
        raise ValueError(f"may be at most {NAME_MAX} bytes")
    return value


def check_path(value: str) -> str:
    """A local path (each part at most NAME_MAX bytes, the whole at most PATH_MAX) or a URL."""
    check_text(value)
    if not value.strip():
        raise ValueError("must not be empty (an empty path would mean the server's working folder)")
    scheme, sep, rest = value.partition("://")
    if sep and scheme != "file":
        if len(value.encode()) > URL_MAX:
            raise ValueError(f"a URL may be at most {URL_MAX} bytes")
        return value
    local = rest if sep else value
    if len(local.encode()) > PATH_MAX:
        raise ValueError(f"a path may be at most {PATH_MAX} bytes")
    if any(len(part.encode()) > NAME_MAX for part in local.split("/")):
        raise ValueError(f"each part of a path may be at most {NAME_MAX} bytes")
    return value


def check_json(value: Any) -> Any:
    """A value a record can keep: finite numbers, 64-bit integers, text checked, bounded nesting."""
    _check_json(value, 0)
    if len(encode(value)) > META_BYTES:
        raise ValueError(f"may be at most {META_BYTES} bytes as JSON")
    return value


def _check_json(value: Any, depth: int) -> None:
    if depth > META_DEPTH:
        raise ValueError(f"may be nested at most {META_DEPTH} levels deep")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        raise ValueError("integers must fit in 64 bits")
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


Text = Annotated[str, AfterValidator(check_text)]
Name = Annotated[str, AfterValidator(check_name)]
ItemName = Annotated[str, AfterValidator(check_item_id)]
PathText = Annotated[str, AfterValidator(check_path)]
