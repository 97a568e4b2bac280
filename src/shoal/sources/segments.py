"""Video segments: an input whose videos each become several items, one per range of frames.

``--input "videos#segment=200"`` (any input: a folder, a glob, a file, a list, a table) reads the
input as usual and splits each video in it (by its file name's suffix, shoal.video.SUFFIXES)
into items of 200 frames, so the frames of one long video run on many workers at once. A
segment's id is its video's id and its first frame, ``vtest.avi-3f2a9c1b7d40@000200``, so ids
sort in frame order and the same inputs give the same items; its ``meta`` says which frames it
holds (``item.read_video()`` reads just those)::

    {"video": "vtest.avi-3f2a9c1b7d40", "start": 200, "stop": 400, "frames": 795, "fps": 10.0,
     "segment": 1, "segments": 4}

``stop`` is None for a video's last segment: it reads to the end, whatever the container claimed.
Other files pass through as they are; a video that cannot be read is one failed item, by its own
id. Splitting reads each video's header (OpenCV) where the job is started, not its frames.

It resumes like the input it wraps: a position is ``[the inner input's position before a video,
segments of that video already read]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.errors import CorruptInputError, InputError
from shoal.sources import Entry, Source

if TYPE_CHECKING:
    from shoal.access import ReadPolicy

OPTION = "#segment="  #: what an input value ends with to be split: ``#segment=<frames>``
MIN_DIGITS = 6  #: a segment's first frame in its id, zero-padded so ids sort in frame order


def split_option(value: str) -> tuple[str, int]:
    """``("videos", 200)`` from ``"videos#segment=200"``; InputError for a count that is not one."""
    rest, _, frames = value.rpartition(OPTION)
    if not frames.isdigit() or int(frames) < 1:
        raise InputError(f"{value}: {OPTION}N takes a positive number of frames per segment, not {frames!r}")
    if not rest.strip():
        raise InputError(f"{value}: name the input to split before {OPTION}")
    return rest, int(frames)


def open_segmented(value: str, base: Path, policy: ReadPolicy | None = None) -> VideoSegments:
    """The input ``value`` names (less its ``#segment=N``), its videos split into segments."""
    from shoal.sources import open_input
    from shoal.video import opencv

    inner, frames = split_option(value)
    opencv()  # no OpenCV here: said before the job starts, not once per video
    return VideoSegments(open_input(inner, base, policy), frames)


class VideoSegments:
    """Each video of an input as items of ``frames`` frames; other entries as they are."""

    slow = True  #: each video's header is read: in the background

    def __init__(self, inner: Source, frames: int) -> None:
        self.inner = inner
        self.frames = frames
        self._at: list[Any] | None = None

    def __iter__(self) -> Iterator[Entry]:
        return self._read(iter(self.inner), None, 0)

    def position(self) -> list[Any] | None:
        return self._at

    def resume(self, position: Any) -> Iterator[Entry]:
        if position is None:
            return iter(self)
        inner_at, done = position
        entries = iter(self.inner) if inner_at is None else self.inner.resume(inner_at)
        return self._read(entries, inner_at, int(done))

    def _read(self, entries: Iterator[Entry], at: Any, skip: int) -> Iterator[Entry]:
        self._at = None if at is None and not skip else [at, skip]
        for entry in entries:
            for number, segment in enumerate(split(entry, self.frames)):
                if number >= skip:
                    self._at = [at, number + 1]
                    yield segment
            skip, at = 0, self.inner.position()
            self._at = [at, 0]


def split(entry: Entry, frames: int) -> list[Entry]:
    """The segments of one entry: itself unless it is a readable local video."""
    from shoal.video import SUFFIXES, probe, segments

    if entry.error is not None or entry.uri is None or Path(entry.uri).suffix.lower() not in SUFFIXES:
        return [entry]
    if "://" in entry.uri:
        return [entry._replace(uri=None, error=f"{entry.input}: only a local video can be split into segments")]
    try:
        info = probe(entry.uri, entry.input)
    except CorruptInputError as exc:
        return [entry._replace(uri=None, error=str(exc))]
    ranges = segments(info.frames, frames)
    digits = max(MIN_DIGITS, len(str(info.frames)))
    return [
        Entry(
            f"{entry.id}@{start:0{digits}d}",
            f"{entry.input}[{start}:{'' if stop is None else stop}]",
            entry.uri,
            {
                **(entry.meta or {}),
                "video": entry.id,
                "start": start,
                "stop": stop,
                "frames": info.frames,
                "fps": info.fps,
                "segment": number,
                "segments": len(ranges),
            },
        )
        for number, (start, stop) in enumerate(ranges)
    ]
