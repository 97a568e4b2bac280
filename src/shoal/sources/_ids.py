"""Item ids: readable, safe as folder names, and stable for the same input."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SLUG_CHARS = 60


def item_id(label: str, key: str) -> str:
    """``<slug of label>-<12 hex of sha1(key)>``: people recognise it, machines never confuse two."""
    return f"{slug(label)}-{hashlib.sha1(key.encode('utf-8', 'surrogateescape')).hexdigest()[:12]}"


def slug(label: str) -> str:
    if len(label) <= _SLUG_CHARS and _SAFE_ID.match(label):
        return label  # already safe: the common case, kept cheap for long input lists
    ascii_label = label if label.isascii() else unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    text = _UNSAFE.sub("_", ascii_label).strip("._-")
    return text[-_SLUG_CHARS:].lstrip("._-") or "item"


def user_id(value: object) -> str:
    """An id a user supplied (an ``id`` column): kept as is when safe, else made safe."""
    text = str(value)
    return text if _SAFE_ID.match(text) else item_id(text, text)


def safe_text(text: str) -> str:
    """Text that can be stored and shown: bytes that were not UTF-8 (read as surrogate escapes)
    become ``\\xe9``-style escapes, other lone surrogates ``\\udc80``-style ones. Valid text is
    returned as it is."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
