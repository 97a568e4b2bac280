"""Download a remote input (any fsspec URL) to a local file, with a bounded wait."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from shoal.errors import FetchError, MissingDependencyError


def fetch(uri: str, dest_dir: Path, timeout: float) -> Path:
    """Copy ``uri`` into ``dest_dir``, keeping its file name (decoders look at the suffix)."""
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a core dependency
        raise MissingDependencyError("fsspec", "s3") from None
    name = _file_name(uri) or "download"
    dest = dest_dir / name
    try:
        fs, path = fsspec.core.url_to_fs(uri, **_options(uri, timeout))
        fs.get_file(path, str(dest))
    except FileNotFoundError:
        raise FetchError(f"{uri}: not found{' (HTTP 404)' if _is_http(uri) else ''}", retry=False) from None
    except TimeoutError:
        raise FetchError(f"{uri}: timed out after {timeout:g} s") from None
    except ImportError as exc:
        raise FetchError(f"{uri}: no filesystem for this URL ({exc})") from None
    except Exception as exc:
        raise FetchError(f"{uri}: {_describe(exc)}") from None
    return dest


def _file_name(uri: str) -> str:
    """The last path segment of a URL, made safe as a local file name."""
    segment = unquote(urlsplit(uri).path.rstrip("/").rsplit("/", 1)[-1])
    return "".join("_" if c in "/\\\0" else c for c in segment).lstrip(".")[:200]


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _options(uri: str, timeout: float) -> dict[str, Any]:
    if not _is_http(uri):
        return {}
    import aiohttp

    return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=timeout)}}


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return f"HTTP {status} {getattr(exc, 'message', '')}".strip()
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
