"""Videos: how long one is, a range of its frames, and joining WebM files made segment by segment.

A long video is split into frame ranges that run as items of their own (``--input
"videos#segment=200"``, see shoal.sources.segments), so each worker must read its range without
decoding the whole file: `VideoFrames` seeks to the first frame, checks that the container landed
exactly there, and decodes its way there from the start only where it did not. `probe` counts
frames from the container's header and checks that its last frame is really there (some
containers claim more than they hold); `join_webm` concatenates the WebM files that segments
wrote, in order, without decoding them again.

OpenCV is imported only when a video is opened: ``pip install 'shoal[faces]'`` brings it.
"""

from __future__ import annotations

import io
import itertools
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from shoal.errors import CorruptInputError, MissingDependencyError

SUFFIXES = frozenset(
    {".avi", ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".wmv", ".ogv", ".flv", ".ts", ".3gp"}
)  #: file names taken for videos when inputs are split into segments


def opencv() -> Any:
    """OpenCV's module, or MissingDependencyError naming the extra that brings it."""
    try:
        import cv2
    except ImportError:
        raise MissingDependencyError("opencv-python-headless", "faces") from None
    return cv2


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, as far as splitting it needs."""

    frames: int  #: frames that can really be decoded
    fps: float  #: frames per second the container states (0.0 when it states none)
    width: int  #: pixels
    height: int  #: pixels


def _open(cv2: Any, path: str | Path, name: str) -> Any:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise CorruptInputError(f"{name}: not a readable video (OpenCV cannot open it)")
    return capture


def probe(path: str | Path, name: str | None = None) -> VideoInfo:
    """Frames, rate and size of a video. The frame count comes from the container, trusted only
    when its last frame can be read; otherwise (a header that claims more, or none) every frame
    is counted by decoding. Raises CorruptInputError for a file that is not a video, or is empty."""
    cv2, name = opencv(), name or str(path)
    capture = _open(cv2, path, name)
    try:
        claimed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        size = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if claimed > 0 and _at(cv2, capture, claimed - 1) and capture.grab():
            frames = claimed
        else:
            frames = _count(cv2, path, name)
    finally:
        capture.release()
    if frames == 0:
        raise CorruptInputError(f"{name}: a video with no frames that can be decoded")
    return VideoInfo(frames, fps, *size)


def _at(cv2: Any, capture: Any, index: int) -> bool:
    """Seek to frame ``index``; whether the container says it got exactly there."""
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    reached: float = capture.get(cv2.CAP_PROP_POS_FRAMES)
    return round(reached) == index


def _count(cv2: Any, path: str | Path, name: str) -> int:
    capture = _open(cv2, path, name)
    try:
        frames = 0
        while capture.grab():
            frames += 1
        return frames
    finally:
        capture.release()


def segments(frames: int, size: int) -> list[tuple[int, int | None]]:
    """``(start, stop)`` frame ranges of ``size`` frames covering ``frames``; the last one's stop is
    None (to the end), so frames a container under-counts are never lost."""
    if size < 1:
        raise ValueError(f"a segment must hold at least one frame, not {size}")
    starts = list(range(0, max(frames, 1), size))
    return [(start, start + size) for start in starts[:-1]] + [(starts[-1], None)]


class VideoFrames:
    """Frames ``start`` up to ``stop`` (exclusive; None: to the end) of a video, as ``(index,
    frame)`` pairs, each frame a BGR ``uint8`` array of shape (height, width, 3).

    Opening seeks to ``start`` instead of decoding every frame before it. Where the container
    cannot seek exactly (it reports another position), the frames before ``start`` are decoded
    and dropped instead: slower, never wrong. Iterating releases the file at the end; so do
    ``close()`` and leaving a ``with`` block. ``on_frame(done, total)`` hears, before each frame
    is read and once at the end, how many frames were handed out and how many there are to read
    (the container's count where ``stop`` is None; 0 when it has none)."""

    def __init__(
        self,
        path: str | Path,
        start: int = 0,
        stop: int | None = None,
        *,
        name: str | None = None,
        on_frame: Callable[[int, int], None] | None = None,
    ) -> None:
        if start < 0 or (stop is not None and stop < 0):
            raise ValueError(f"frame numbers count from 0: start={start}, stop={stop}")
        cv2 = opencv()
        self.name = name or str(path)
        self.start, self.stop = start, stop
        self._on_frame = on_frame
        self._capture: Any = _open(cv2, path, self.name)
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)  #: frames per second, 0.0 if unknown
        self.width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.seeked = start == 0 or _at(cv2, self._capture, start)  #: False: decoded up to start instead
        if not self.seeked:
            self._capture.release()
            self._capture = _open(cv2, path, self.name)
            for _ in range(start):
                if not self._capture.grab():
                    break

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        index = self.start
        total = self._total()
        try:
            while self._capture is not None and (self.stop is None or index < self.stop):
                if self._on_frame is not None:
                    self._on_frame(index - self.start, total)
                ok, frame = self._capture.read()
                if not ok:
                    break
                yield index, frame
                index += 1
            if self._on_frame is not None:
                self._on_frame(index - self.start, index - self.start)
        finally:
            self.close()

    def _total(self) -> int:
        """Frames to read: up to ``stop``, else to the container's count (0 when unknown)."""
        if self.stop is not None:
            return max(0, self.stop - self.start)
        if self._capture is None:
            return 0
        count = int(self._capture.get(opencv().CAP_PROP_FRAME_COUNT) or 0)
        return max(0, count - self.start)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


# --- joining WebM (Matroska) files ---------------------------------------------------------------
EBML, SEGMENT, SEEK_HEAD, INFO, TRACKS, CLUSTER, CUES = (
    0x1A45DFA3, 0x18538067, 0x114D9B74, 0x1549A966, 0x1654AE6B, 0x1F43B675, 0x1C53BB6B,
)  # fmt: skip
TIMECODE_SCALE, DURATION, TRACK_ENTRY, TRACK_UID = 0x2AD7B1, 0x4489, 0xAE, 0x73C5
TIMECODE, POSITION, PREV_SIZE, SIMPLE_BLOCK = 0xE7, 0xA7, 0xAB, 0xA3
SEEK, SEEK_ID, SEEK_POSITION = 0x4DBB, 0x53AB, 0x53AC
CUE_POINT, CUE_TIME, CUE_TRACK_POSITIONS, CUE_TRACK, CUE_CLUSTER_POSITION = 0xBB, 0xB3, 0xB7, 0xF7, 0xF1
COPY_CHUNK = 1 << 20  #: bytes copied at a time


@dataclass
class _Cluster:
    timecode: int  #: in the file's own timeline, TimecodeScale units
    spans: list[tuple[int, int]]  #: (offset, length) of the children kept, in the file
    key: tuple[int, int] | None  #: (track, relative time) of a first block that is a keyframe


@dataclass
class _Part:
    path: Path
    header: bytes  #: the EBML header element, whole
    info: list[tuple[int, bytes]]  #: Info's children: (id, whole element)
    tracks: bytes  #: the Tracks element, whole
    scale: int  #: nanoseconds per timecode unit
    duration: float  #: in timecode units
    clusters: list[_Cluster] = field(default_factory=list)


def _vint(handle: IO[bytes], marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer: (value, bytes read); an ID keeps its length marker."""
    first = handle.read(1)
    if not first:
        raise ValueError("the file ends inside an element")
    length = 9 - first[0].bit_length()
    if length > 8:
        raise ValueError("not an EBML length")
    rest = handle.read(length - 1)
    value = first[0] if marker else first[0] & (0xFF >> length)
    for byte in rest:
        value = (value << 8) | byte
    if not marker and value == (1 << (7 * length)) - 1:
        raise ValueError("an element of unknown size (a live stream) cannot be joined")
    return value, length


def _children(handle: IO[bytes], start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(id, element start, data start, data size) of each element between two offsets."""
    at = start
    while at < end:
        handle.seek(at)
        eid, n = _vint(handle, marker=True)
        size, m = _vint(handle, marker=False)
        yield eid, at, at + n + m, size
        at += n + m + size


def _read(handle: IO[bytes], start: int, length: int) -> bytes:
    handle.seek(start)
    return handle.read(length)


def _uint(data: bytes) -> int:
    return int.from_bytes(data, "big")


def _part(path: Path) -> _Part:
    """What joining needs of one WebM file: its header, Info, Tracks and where its clusters are."""
    try:
        return _parse(path)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _parse(path: Path) -> _Part:
    with path.open("rb") as handle:
        if handle.read(4) != _id(EBML):
            raise ValueError("not a WebM file")
        end = handle.seek(0, 2)
        top = list(itertools.islice(_children(handle, 0, end), 2))
        if len(top) < 2 or top[1][0] != SEGMENT:
            raise ValueError("not a WebM file")
        header = _read(handle, 0, top[0][2] + top[0][3])
        part = _Part(path, header, [], b"", 1_000_000, 0.0)
        _, _, data, size = top[1]
        for eid, at, inner, length in _children(handle, data, min(data + size, end)):
            if eid == INFO:
                children = _children(handle, inner, inner + length)
                part.info = [(e, _read(handle, a, d + n - a)) for e, a, d, n in children]
            elif eid == TRACKS:
                part.tracks = _read(handle, at, inner + length - at)
            elif eid == CLUSTER:
                part.clusters.append(_cluster(handle, inner, inner + length))
    fields = dict(part.info)
    part.scale = _uint(_payload(fields[TIMECODE_SCALE])) if TIMECODE_SCALE in fields else 1_000_000
    if DURATION not in fields:
        raise ValueError("a WebM file without a duration cannot be joined")
    duration = _payload(fields[DURATION])
    part.duration = struct.unpack(">d" if len(duration) == 8 else ">f", duration)[0]
    return part


def _payload(element: bytes) -> bytes:
    """The data of a whole element held in memory."""
    with io.BytesIO(element) as handle:
        _vint(handle, marker=True)
        size, _ = _vint(handle, marker=False)
        return handle.read(size)


def _cluster(handle: IO[bytes], start: int, end: int) -> _Cluster:
    timecode, spans, key, first = 0, [], None, True
    for eid, at, data, size in _children(handle, start, end):
        if eid == TIMECODE:
            timecode = _uint(_read(handle, data, size))
        elif eid not in (POSITION, PREV_SIZE):  # byte offsets into the old file: dropped
            spans.append((at, data + size - at))
            if first and eid == SIMPLE_BLOCK:
                handle.seek(data)
                track, _ = _vint(handle, marker=False)
                relative, flags = struct.unpack(">hB", handle.read(3))
                key = (track, relative) if flags & 0x80 else None
            first = False
    return _Cluster(timecode, spans, key)


def _id(eid: int) -> bytes:
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big")


def _size(value: int, length: int | None = None) -> bytes:
    if length is None:
        length = next(n for n in range(1, 9) if value < (1 << (7 * n)) - 1)
    return (value | (1 << (7 * length))).to_bytes(length, "big")


def _element(eid: int, data: bytes) -> bytes:
    return _id(eid) + _size(len(data)) + data


def _unsigned(eid: int, value: int, width: int | None = None) -> bytes:
    return _element(eid, value.to_bytes(width or max(1, (value.bit_length() + 7) // 8), "big"))


def _track_signature(tracks: bytes) -> bytes:
    """A Tracks element without its track UIDs (random per file): equal for files that can be joined."""
    with io.BytesIO(tracks) as handle:
        _vint(handle, marker=True)
        size, _ = _vint(handle, marker=False)
        start = handle.tell()
        kept = []
        for eid, at, data, length in _children(handle, start, start + size):
            if eid != TRACK_ENTRY:
                kept.append(_read(handle, at, data + length - at))
                continue
            entry = [_read(handle, a, d + s - a) for e, a, d, s in _children(handle, data, data + length)]
            kept.append(b"".join(e for e in entry if not e.startswith(_id(TRACK_UID))))
        return b"".join(kept)


def join_webm(parts: Iterable[str | Path], out: str | Path) -> float:
    """Concatenate WebM files of the same stream (codec, size, rate: what one program writes segment
    by segment) into one, in the order given, without decoding: their clusters are copied with
    their times moved on by the parts before them, under one header, with cues (so a browser can
    seek) and the total duration. Returns the duration in seconds. Raises ValueError for a file
    that is not WebM or a stream unlike the first."""
    read = [_part(Path(p)) for p in parts]
    if not read:
        raise ValueError("no WebM files to join")
    first = read[0]
    for part in read[1:]:
        if part.scale != first.scale or _track_signature(part.tracks) != _track_signature(first.tracks):
            raise ValueError(f"{part.path}: its stream differs from {first.path}'s (codec, size or time scale)")
    clusters, elapsed = [], 0.0
    for part in read:
        shift = round(elapsed)
        clusters += [(shift + c.timecode, c) for c in part.clusters]
        elapsed += part.duration
    info = b"".join(e if eid != DURATION else _element(DURATION, struct.pack(">d", elapsed)) for eid, e in first.info)
    info = _element(INFO, info)
    heads = [_id(CLUSTER) + _size(_cluster_size(t, c), 8) + _unsigned(TIMECODE, t) for t, c in clusters]
    seek_head_size = len(_seek_head(0, 0, 0))
    at = seek_head_size + len(info) + len(first.tracks)  #: offsets relative to the segment's data
    cue_points = []
    for (timecode, cluster), head in zip(clusters, heads, strict=True):
        if cluster.key is not None:
            cue_points.append(_cue_point(timecode + cluster.key[1], cluster.key[0], at))
        at += len(head) + sum(length for _, length in cluster.spans)
    cues = _element(CUES, b"".join(cue_points))
    seek_head = _seek_head(seek_head_size, seek_head_size + len(info), at)
    total = at + len(cues)
    written = iter(heads)
    with Path(out).open("wb") as target:
        target.write(first.header + _id(SEGMENT) + _size(total, 8) + seek_head + info + first.tracks)
        for part in read:
            with part.path.open("rb") as source:
                for cluster in part.clusters:
                    target.write(next(written))
                    for offset, length in cluster.spans:
                        _copy(source, target, offset, length)
        target.write(cues)
    return elapsed * first.scale / 1e9


def _cluster_size(timecode: int, cluster: _Cluster) -> int:
    return len(_unsigned(TIMECODE, timecode)) + sum(length for _, length in cluster.spans)


def _seek_head(info: int, tracks: int, cues: int) -> bytes:
    """A SeekHead with fixed-width positions (its size does not depend on them)."""
    seeks = [
        _element(SEEK, _element(SEEK_ID, _id(eid)) + _unsigned(SEEK_POSITION, where, 8))
        for eid, where in ((INFO, info), (TRACKS, tracks), (CUES, cues))
    ]
    return _element(SEEK_HEAD, b"".join(seeks))


def _cue_point(time: int, track: int, position: int) -> bytes:
    where = _unsigned(CUE_TRACK, track) + _unsigned(CUE_CLUSTER_POSITION, position)
    return _element(CUE_POINT, _unsigned(CUE_TIME, max(0, time)) + _element(CUE_TRACK_POSITIONS, where))


def _copy(source: IO[bytes], target: IO[bytes], offset: int, length: int) -> None:
    source.seek(offset)
    while length > 0:
        chunk = source.read(min(COPY_CHUNK, length))
        if not chunk:
            raise ValueError(f"{getattr(source, 'name', 'a part')} ends early")
        target.write(chunk)
        length -= len(chunk)
