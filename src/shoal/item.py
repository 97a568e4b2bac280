"""Item: one unit of work as a stage sees it.

An item is a file (local path or any fsspec URL, fetched on first use) or a row of a CSV/JSONL
file (its fields in ``meta``). Stages read it, see earlier stages' results in ``result``, and
write artifacts that shoal commits only when the whole item succeeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from shoal.access import local_of
from shoal.errors import CorruptInputError, FetchError

if TYPE_CHECKING:
    from shoal.video import VideoFrames
    from shoal.worker.context import ItemContext


class Item:
    """One input item inside a worker process."""

    __slots__ = (
        "_ctx",
        "_local",
        "_on_progress",
        "_staging",
        "attempt",
        "id",
        "input",
        "meta",
        "result",
        "results",
        "state",
        "uri",
    )

    def __init__(
        self,
        id: str,
        uri: str | None,
        *,
        input: str | None = None,
        meta: dict[str, Any] | None = None,
        attempt: int = 1,
        context: ItemContext | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.id = id
        self.uri = uri  #: the file to read: a local path or a URL; None for a data row
        self.input = input or uri or id  #: how the input is named in reports
        self.meta: dict[str, Any] = meta or {}  #: the CSV/JSONL row, if any
        self.attempt = attempt  #: 1 on the first try
        self.result: dict[str, Any] = {}  #: earlier stages' results, merged
        self.results: dict[str, dict[str, Any]] = {}  #: earlier stages' results by stage
        self.state: dict[str, Any] = {}  #: scratch space shared by stages; never saved
        self._ctx = context
        self._on_progress = on_progress
        self._local: Path | None = None
        self._staging: Path | None = None

    def __repr__(self) -> str:
        return f"Item({self.id!r}, {self.input!r})"

    def progress(self, done: int, total: int | None = None) -> None:
        """Say how far the running stage has got with this item (frames, rows, pages), for the
        job and workers pages while it runs. A memory write on a worker, so cheap enough to call
        for every frame; the count starts again at each stage. Outside a run it does nothing."""
        if self._on_progress is not None:
            self._on_progress(done, total or 0)

    # --- reading the input -------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """A local file holding the input; remote inputs are downloaded on first use. A job with
        a read policy (a server's) gets only a file the policy allows, by its real path."""
        if self._local is None:
            if self.uri is None:
                raise FetchError(f"{self.input}: this item is a data row with no file; use item.meta")
            policy = self._context().policy
            local = local_of(self.uri)
            if local is not None:
                if policy is not None:
                    policy.real(local)
                self._local = Path(local)
            else:
                from shoal.worker.fetch import fetch

                if policy is not None:
                    policy.remote(self.uri)
                self._local = fetch(self.uri, self._context().fetch_dir(self.id), self._context().fetch_timeout)
        return self._local

    def read_bytes(self) -> bytes:
        """The input's bytes, with a clear error for a missing or unreadable file."""
        with self._explained(), self._open() as handle:
            return handle.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        data = self.read_bytes()
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise CorruptInputError(
                f"{self.input}: not valid {encoding} text ({exc.reason} at byte {exc.start})"
            ) from None

    def open(self) -> BinaryIO:
        with self._explained():
            return self._open()

    @contextmanager
    def _explained(self) -> Iterator[None]:
        """A missing, unreadable or wrong kind of file as a FetchError naming the input."""
        try:
            yield
        except FileNotFoundError:
            raise FetchError(f"{self.input}: no such file", retry=False) from None
        except IsADirectoryError:
            raise FetchError(f"{self.input}: is a directory, not a file", retry=False) from None
        except PermissionError:
            raise FetchError(f"{self.input}: permission denied") from None

    def _open(self) -> BinaryIO:
        """The input, opened; with a read policy, refused unless the file opened (whatever its
        name led to, checked on the descriptor itself) lies inside the allowed folders."""
        path = self.path
        handle = path.open("rb")
        policy = self._context().policy if self._ctx is not None else None
        if policy is not None and not self.fetched:
            try:
                policy.opened(handle.fileno(), str(path))
            except BaseException:
                handle.close()
                raise
        return handle

    def read_image(self, flags: int | None = None) -> Any:
        """Decode the input as an image (an OpenCV BGR array); corrupt files raise CorruptInputError."""
        try:
            import cv2
            import numpy as np
        except ImportError:
            from shoal.errors import MissingDependencyError

            raise MissingDependencyError("opencv-python-headless", "faces") from None
        data = self.read_bytes()
        if not data:
            raise CorruptInputError(f"{self.input}: file is empty (0 bytes)")
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if flags is None else flags)
        if image is None:
            raise CorruptInputError(f"{self.input}: not a readable image ({len(data)} bytes)")
        return image

    def read_video(self, start: int | None = None, stop: int | None = None) -> VideoFrames:
        """The input's frames ``start`` up to ``stop`` as ``(index, BGR frame)`` pairs, reached by
        seeking, not by decoding the frames before them. Left out, they are this item's segment
        (``meta`` start and stop, from an input split with ``#segment=N``), else the whole video.
        Reading them reports the item's progress frame by frame (see ``progress``).
        A file that is not a video raises CorruptInputError; without OpenCV, MissingDependencyError."""
        from shoal.video import VideoFrames

        with self._explained(), self._open():  # missing, unreadable or not allowed: said now, by name
            pass
        first = int(self.meta.get("start") or 0) if start is None else start
        last = self.meta.get("stop") if stop is None else stop
        return VideoFrames(
            self.path, first, None if last is None else int(last), name=self.input, on_frame=self.progress
        )

    # --- artifacts ---------------------------------------------------------------------------
    def artifact_path(self, name: str) -> Path:
        """Where to write artifact ``name``; kept only if the item succeeds."""
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or any(p in ("..", ".") for p in parts):
            raise ValueError(f"artifact name {name!r} must be a relative path inside the item's folder")
        if self._staging is None:
            self._staging = self._context().staging_dir(self.id, self.attempt)
        target = self._staging.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_artifact(self, name: str, data: bytes | str) -> Path:
        path = self.artifact_path(name)
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
        return path

    @property
    def staging(self) -> Path | None:
        """The folder of artifacts written so far, or None."""
        return self._staging

    @property
    def fetched(self) -> bool:
        """Whether the input was downloaded (and its copy must be deleted)."""
        return self._local is not None and self.uri is not None and local_of(self.uri) is None

    def _context(self) -> ItemContext:
        if self._ctx is None:
            from shoal.worker.context import ItemContext

            self._ctx = ItemContext.standalone()
        return self._ctx
