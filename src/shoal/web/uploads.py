"""Uploads: multipart files streamed straight into the data folder, under a size limit.

Files land in ``<data>/uploads/<upload-id>/`` under safe names: any path parts a client sends are
dropped, odd characters replaced, and a name taken twice gets a number, so no upload can write
outside its folder or over another file. The limit counts the bytes as they arrive, so an
oversized upload is refused without being stored.
"""

from __future__ import annotations

import secrets
import shutil
import time
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from shoal.errors import ConfigError, UploadTooLargeError

MAX_NAME = 150  #: bytes (UTF-8) of a stored file name: numbering a repeat stays under the 255 of a file system
MAX_FIELD = 64 * 1024  #: bytes of a plain form field
_KEEP = set(" ._-()+,@=~'&")


def safe_name(raw: str, taken: set[str] | None = None) -> str:
    """A file name that is safe on disk and unique in ``taken`` (which it joins)."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(c if c.isalnum() or c in _KEEP else "_" for c in name)
    name = name.strip(" .") or "file"  # no hidden files (inputs skip them), no "." or ".."
    if len(name.encode()) > MAX_NAME:  # bytes, not characters: 150 of "é" would be 300 bytes
        stem, dot, suffix = name.rpartition(".")
        keep = f".{suffix}" if dot and len(suffix.encode()) <= 10 else ""
        name = name.encode()[: MAX_NAME - len(keep.encode())].decode("utf-8", "ignore").rstrip(" .") + keep
    if taken is None:
        return name
    stem, dot, suffix = name.rpartition(".") if "." in name else (name, "", "")
    candidate, n = name, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{stem} ({n}){dot}{suffix}"
    taken.add(candidate.lower())
    return candidate


def new_upload_dir(data_root: Path) -> Path:
    folder = data_root / "uploads" / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
    folder.mkdir(parents=True)
    return folder


@dataclass
class Upload:
    """What a multipart request carried: its plain fields and the files it stored."""

    folder: Path
    fields: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


class _Receiver:
    """python-multipart callbacks that write file parts to disk as they arrive."""

    def __init__(self, upload: Upload) -> None:
        self.upload = upload
        self.taken: set[str] = set()
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.value = bytearray()
        self.handle: IO[bytes] | None = None

    def on_part_begin(self) -> None:
        self.headers, self.value, self.handle = {}, bytearray(), None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is not None:
            stored = safe_name(filename.decode("utf-8", "replace"), self.taken)
            path = self.upload.folder / stored
            self.handle = path.open("xb")
            self.upload.files.append(path)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.handle is not None:
            self.handle.write(data[start:end])
            return
        self.value += data[start:end]
        if len(self.value) > MAX_FIELD:
            raise ConfigError(f"form field {self.name!r} is longer than {MAX_FIELD} bytes")

    def on_part_end(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        elif self.name:
            self.upload.fields[self.name] = self.value.decode("utf-8", "replace")

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


async def receive(
    content_type: str, length: str | None, stream: AsyncIterator[bytes], folder: Path, limit: int
) -> Upload:
    """Store a multipart/form-data body's files in ``folder``; on any error the folder is removed."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in options:
        shutil.rmtree(folder, ignore_errors=True)
        raise ConfigError("send the files as multipart/form-data (fields: pipeline, files, options)")
    if length is not None and length.isdigit() and int(length) > limit:
        shutil.rmtree(folder, ignore_errors=True)
        raise UploadTooLargeError(limit)
    upload = Upload(folder)
    receiver = _Receiver(upload)
    callbacks = {name: getattr(receiver, name) for name in dir(receiver) if name.startswith("on_")}
    parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > limit:
                raise UploadTooLargeError(limit)
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        receiver.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise ConfigError(f"not valid multipart/form-data: {exc}") from None
    except BaseException:
        receiver.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return upload
