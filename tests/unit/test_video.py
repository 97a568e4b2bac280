"""Videos: a range of frames read by seeking is exactly what decoding from the start gives; frame
counts are the real ones; segment inputs have stable ids and resume anywhere; WebM segments join
into one file that decodes to the same frames."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from shoal.errors import CorruptInputError, FetchError, InputError
from shoal.item import Item
from shoal.sources import open_inputs
from shoal.video import VideoFrames, join_webm, probe, segments

SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")
FRAMES = 50
SIZE = (96, 64)  #: width, height


def _write(path: Path, fourcc: str, frames: int = FRAMES, size: tuple[int, int] = SIZE, fps: float = 10.0) -> Path:
    """A video whose frames all differ: moving noise with the frame's number drawn on it."""
    rng = np.random.default_rng(len(path.name))
    base = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), fourcc
    for index in range(frames):
        frame = np.roll(base, 3 * index, axis=1)
        cv2.putText(frame, str(index), (5, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()
    return path


def _decoded(path: Path) -> list[Any]:
    """Every frame, decoded from the start: what a range read must match."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="module", params=[("clip.avi", "MJPG"), ("clip.mp4", "mp4v"), ("clip.webm", "VP80")])
def video(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    name, fourcc = request.param
    return _write(tmp_path_factory.mktemp("videos") / name, fourcc)


@pytest.mark.parametrize(("start", "stop"), [(0, 10), (7, 23), (12, 13), (37, None), (49, None), (45, 500), (60, None)])
def test_a_range_read_by_seeking_holds_exactly_the_frames_of_a_sequential_decode(
    video: Path, start: int, stop: int | None
) -> None:
    every = _decoded(video)
    assert len(every) == FRAMES
    with VideoFrames(video, start, stop) as frames:
        read = list(frames)
    assert [index for index, _ in read] == list(range(start, min(stop or FRAMES, FRAMES)))
    assert all(np.array_equal(frame, every[index]) for index, frame in read)


def test_vtest_ranges_match_a_sequential_decode_at_segment_boundaries() -> None:
    if not (SAMPLES / "vtest.avi").is_file():
        pytest.skip("needs Debian's opencv-doc sample videos (apt-get install opencv-doc)")
    every = list(itertools.islice(_decoded_first(SAMPLES / "vtest.avi", 260), 260))
    for start, stop in [(0, 3), (99, 102), (200, 203), (257, 260)]:
        frames = VideoFrames(SAMPLES / "vtest.avi", start, stop)
        assert frames.seeked
        assert all(np.array_equal(frame, every[index]) for index, frame in frames)


def _decoded_first(path: Path, count: int) -> Any:
    capture = cv2.VideoCapture(str(path))
    for _ in range(count):
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def test_probe_gives_the_real_frame_count_rate_and_size(video: Path) -> None:
    info = probe(video)
    assert (info.frames, info.width, info.height) == (FRAMES, *SIZE)
    assert info.fps == pytest.approx(10.0)


def test_a_container_that_claims_more_frames_than_it_holds_is_counted_and_read_to_its_real_end() -> None:
    tree = SAMPLES / "tree.avi"  # Cinepak: its header says 444 frames, 68 decode
    if not tree.is_file():
        pytest.skip("needs Debian's opencv-doc sample videos (apt-get install opencv-doc)")
    assert int(cv2.VideoCapture(str(tree)).get(cv2.CAP_PROP_FRAME_COUNT)) > 68
    assert probe(tree).frames == len(_decoded(tree)) == 68
    past_the_end = VideoFrames(tree, 100)
    assert not past_the_end.seeked  # the container could not go there: decoded up to it instead
    assert list(past_the_end) == []


def test_what_is_not_a_video_is_a_corrupt_input(tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video at all" * 100)
    with pytest.raises(CorruptInputError, match=r"fake\.mp4"):
        probe(fake)
    with pytest.raises(CorruptInputError, match=r"fake\.mp4"):
        VideoFrames(fake)


def test_segments_cover_every_frame_once_the_last_one_open_ended() -> None:
    assert segments(95, 30) == [(0, 30), (30, 60), (60, 90), (90, None)]
    assert segments(90, 30) == [(0, 30), (30, 60), (60, None)]
    assert segments(5, 30) == [(0, None)]
    with pytest.raises(ValueError, match="at least one frame"):
        segments(5, 0)


def test_an_item_reads_its_own_segment_unless_told_otherwise(tmp_path: Path) -> None:
    path = _write(tmp_path / "clip.avi", "MJPG")
    item = Item("clip@000030", str(path), meta={"start": 30, "stop": 40})
    assert [index for index, _ in item.read_video()] == list(range(30, 40))
    assert [index for index, _ in item.read_video(5, 8)] == [5, 6, 7]
    last = Item("clip@000040", str(path), meta={"start": 40, "stop": None})
    assert [index for index, _ in last.read_video()] == list(range(40, FRAMES))
    whole = Item("clip", str(path))
    assert len(list(whole.read_video())) == FRAMES
    with pytest.raises(FetchError, match="no such file"):
        Item("gone", str(tmp_path / "gone.avi")).read_video()


def test_reading_a_video_reports_the_items_progress_frame_by_frame(tmp_path: Path) -> None:
    path = _write(tmp_path / "clip.avi", "MJPG")
    said: list[tuple[int, int]] = []
    item = Item("clip@000030", str(path), meta={"start": 30, "stop": 40}, on_progress=lambda *n: said.append(n))
    for index, _ in item.read_video():
        assert said[-1] == (index - 30, 10)  # before each frame: the frames handed out so far, of all
    assert said[-1] == (10, 10)
    said.clear()
    last = Item("clip@000045", str(path), meta={"start": 45, "stop": 500}, on_progress=lambda *n: said.append(n))
    assert len(list(last.read_video())) == FRAMES - 45
    assert said[-1] == (FRAMES - 45, FRAMES - 45)  # a range past the end: done when the frames are
    said.clear()
    whole = Item("clip", str(path), on_progress=lambda *n: said.append(n))
    frames = iter(whole.read_video())
    next(frames)
    next(frames)
    assert said == [(0, FRAMES), (1, FRAMES)]  # the whole video: the container's frame count
    Item("quiet", str(path)).progress(3, 10)  # outside a run it does nothing


def test_webm_segments_join_into_one_file_with_the_same_frames(tmp_path: Path) -> None:
    parts = [_write(tmp_path / f"part{k}.webm", "VP80", frames=n) for k, n in enumerate((30, 30, 7))]
    expected = [frame for part in parts for frame in _decoded(part)]
    seconds = join_webm(parts, tmp_path / "joined.webm")
    assert seconds == pytest.approx(6.7)
    joined = _decoded(tmp_path / "joined.webm")
    assert len(joined) == 67
    assert all(np.array_equal(a, b) for a, b in zip(joined, expected, strict=True))
    with VideoFrames(tmp_path / "joined.webm", 58, 62) as frames:  # seeking works across the joins
        assert all(np.array_equal(frame, expected[index]) for index, frame in frames)


def test_webm_files_of_different_streams_are_not_joined(tmp_path: Path) -> None:
    small = _write(tmp_path / "small.webm", "VP80", frames=5)
    large = _write(tmp_path / "large.webm", "VP80", frames=5, size=(128, 96))
    with pytest.raises(ValueError, match="differs"):
        join_webm([small, large], tmp_path / "joined.webm")
    with pytest.raises(ValueError, match="not a WebM file"):
        join_webm([_write(tmp_path / "clip.avi", "MJPG", frames=5)], tmp_path / "joined.webm")


# --- inputs split into segments ----------------------------------------------------------------
@pytest.fixture
def videos(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    _write(folder / "a.avi", "MJPG", frames=25)
    _write(folder / "b.mp4", "mp4v", frames=8)
    (folder / "c.avi").write_bytes(b"broken" * 50)
    (folder / "notes.txt").write_text("not a video\n")
    return folder


def test_each_video_of_an_input_becomes_items_of_n_frames_with_ids_in_frame_order(videos: Path) -> None:
    entries = list(open_inputs([f"{videos}#segment=10"]))
    whole = {Path(e.input).name: e.id for e in open_inputs([str(videos)])}
    assert [e.id for e in entries] == [
        f"{whole['a.avi']}@000000",
        f"{whole['a.avi']}@000010",
        f"{whole['a.avi']}@000020",
        f"{whole['b.mp4']}@000000",
        whole["c.avi"],
        whole["notes.txt"],
    ]
    assert entries[1].input == f"{videos}/a.avi[10:20]"
    assert entries[1].uri == str(videos / "a.avi")
    assert entries[1].meta == {
        "video": whole["a.avi"], "start": 10, "stop": 20, "frames": 25, "fps": 10.0, "segment": 1, "segments": 3,
    }  # fmt: skip
    assert entries[2].meta is not None
    assert (entries[2].meta["start"], entries[2].meta["stop"]) == (20, None)  # the last reads to the end
    assert entries[4].error is not None
    assert "not a readable video" in entries[4].error  # fails alone, by the video's own id
    assert entries[5].error is None
    assert entries[5].meta is None  # not a video: passes as it is
    assert [e.id for e in open_inputs([f"{videos}#segment=10"])] == [e.id for e in entries]


def test_a_segmented_input_resumes_from_any_position(videos: Path) -> None:
    everything = [e.id for e in open_inputs([f"{videos}#segment=10"])]
    for done in range(len(everything) + 1):
        reading = open_inputs([f"{videos}#segment=10"])
        assert [e.id for e in itertools.islice(reading, done)] == everything[:done]
        rest = open_inputs([f"{videos}#segment=10"], start=reading.position())
        assert [e.id for e in rest] == everything[done:], done


@pytest.mark.parametrize("value", ["videos#segment=0", "videos#segment=ten", "#segment=10"])
def test_a_bad_segment_option_is_an_input_error(tmp_path: Path, value: str) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.avi").write_bytes(b"x")
    with pytest.raises(InputError, match="segment"):
        open_inputs([value], base=tmp_path)
