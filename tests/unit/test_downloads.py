"""Artifacts as the server finds them: in a local run folder or one at a URL (fsspec's in-memory
filesystem stands in for an object store here; test_s3 uses a real S3-compatible server)."""

from __future__ import annotations

import importlib.util
import uuid
import zipfile
from pathlib import Path

import fsspec
import pytest

from shoal.errors import NotFoundError, RangeNotSatisfiableError, StorageError
from shoal.store import JobRecord
from shoal.web import downloads
from shoal.web.views import artifacts_of

pytest.importorskip("upath")

Remote = tuple[JobRecord, fsspec.AbstractFileSystem, str]  #: a job, its store, its run folder there


def job_at(out: str) -> JobRecord:
    return JobRecord(
        1, "j-1", "k", "p", "f1ng3r", "/p", "[]", "{}", out, "running", 0.0, 0.0, None, 0, False, None, None
    )


@pytest.fixture
def remote() -> Remote:
    fs = fsspec.filesystem("memory")
    base = f"/runs-{uuid.uuid4().hex[:8]}/j-1"
    fs.pipe(f"{base}/artifacts/item-1/frame.png", b"\x89PNG...")
    fs.pipe(f"{base}/artifacts/item-1/clips/a.webm", b"webm" * 100)
    fs.pipe(f"{base}/artifacts/.staging/item-2/half.png", b"not finished")
    fs.pipe(f"{base}/secret.txt", b"not an artifact")
    return job_at(f"memory://{base}"), fs, base


def test_artifacts_at_a_url_are_listed_opened_and_zipped(remote: Remote, tmp_path: Path) -> None:
    job, fs, base = remote
    assert downloads.artifacts(job, "item-1") == [("clips/a.webm", 400, "video"), ("frame.png", 7, "image")]
    handle, size = downloads.open_remote(downloads.artifact(job, "item-1", "clips/a.webm"))
    assert (b"".join(downloads.chunks(handle, size=64)), size) == (b"webm" * 100, 400)

    fs.pipe(f"{base}/artifacts/item-1/late.txt", b"written since the last listing")
    assert "late.txt" in [name for name, _, _ in downloads.artifacts(job, "item-1")]

    archive = zipfile.ZipFile(downloads.job_zip(None, job, tmp_path, "item-1"))  # type: ignore[arg-type]
    assert sorted(archive.namelist()) == ["item-1/clips/a.webm", "item-1/frame.png", "item-1/late.txt"]
    assert archive.read("item-1/frame.png") == b"\x89PNG..."


@pytest.mark.parametrize(
    ("item", "name"),
    [("item-1", "../../secret.txt"), ("item-1", "/secret.txt"), ("..", "secret.txt"), ("item-1/..", "secret.txt"),
     (".staging", "item-2/half.png"), ("item-1", "missing.png"), ("item-2", "half.png"),
     ("item-1", "a\x00b"), ("it\x00em-1", "frame.png"), ("item-1", "a" * 256), ("item-1", "é" * 128),
     ("é" * 128, "frame.png"), ("item-1", "ab/" * 1400)],
)  # fmt: skip
def test_names_outside_an_items_artifacts_are_not_found(remote: Remote, item: str, name: str, tmp_path: Path) -> None:
    job, _, _ = remote
    with pytest.raises(NotFoundError):
        downloads.artifact(job, item, name)
    local = job_at(str(tmp_path))
    (tmp_path / "artifacts" / "item-1").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("not an artifact")
    with pytest.raises(NotFoundError):
        downloads.artifact(local, item, name)


def test_a_loop_of_links_is_not_found(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "artifacts" / "item-1"
    folder.mkdir(parents=True)
    (folder / "loop").symlink_to(folder / "loop")
    with pytest.raises(NotFoundError):
        downloads.artifact(job_at(str(tmp_path / "run")), "item-1", "loop/x")


def test_a_link_out_of_a_local_run_folder_is_neither_listed_nor_served(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "artifacts" / "item-1"
    folder.mkdir(parents=True)
    (folder / "ok.txt").write_text("mine")
    (tmp_path / "elsewhere.txt").write_text("not the job's")
    (folder / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    job = job_at(str(tmp_path / "run"))
    assert [name for name, _, _ in downloads.artifacts(job, "item-1")] == ["ok.txt"]
    with pytest.raises(NotFoundError):
        downloads.artifact(job, "item-1", "link.txt")


def test_a_store_the_server_cannot_read_is_a_storage_error_not_a_crash(tmp_path: Path) -> None:
    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed here: this test needs a store whose library is missing")
    job = job_at("gcs://bucket/runs/j-1")
    with pytest.raises(StorageError, match=r"gcs://bucket/runs/j-1/artifacts/item-1: ImportError: .*gcsfs"):
        downloads.artifacts(job, "item-1")
    assert artifacts_of(job, "item-1") == []  # the item's page still shows, without artifacts
    with pytest.raises(StorageError):
        downloads.job_zip(None, job, tmp_path, "item-1")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # no half-written zip left behind


@pytest.mark.parametrize(
    ("header", "span"),
    [(None, None), ("bytes=0-99", (0, 99)), ("bytes=100-", (100, 399)), ("bytes=-50", (350, 399)),
     ("bytes=390-1000", (390, 399)), ("bytes=-1000", (0, 399)), ("bytes=0-1,5-9", None), ("lines=1-2", None),
     ("bytes=-", None)],
)  # fmt: skip
def test_a_range_header_picks_the_bytes_of_a_400_byte_file(header: str | None, span: tuple[int, int] | None) -> None:
    assert downloads.byte_range(header, 400) == span


@pytest.mark.parametrize("header", ["bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 20])
def test_a_range_with_numbers_past_any_file_is_no_range(header: str) -> None:
    """Numbers too long for int() (Python refuses 4300 digits) are not a range: the whole file."""
    assert downloads.byte_range(header, 400) is None


@pytest.mark.parametrize("header", ["bytes=400-", "bytes=500-600", "bytes=9-3", "bytes=-0"])
def test_a_range_outside_the_file_is_refused_with_its_size(header: str) -> None:
    with pytest.raises(RangeNotSatisfiableError) as refused:
        downloads.byte_range(header, 400)
    assert refused.value.size == 400


def test_chunks_read_the_span_asked_for(remote: Remote) -> None:
    job, _, _ = remote
    path = downloads.artifact(job, "item-1", "clips/a.webm")
    handle, _ = downloads.open_remote(path)
    assert b"".join(downloads.chunks(handle, 6, 7, size=3)) == (b"webm" * 100)[6:13]
