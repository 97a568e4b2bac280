"""Code bundles: exactly the fingerprinted files, signed, refused when tampered with or foreign."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from shoal.bundle_store import FsspecBundles, open_store
from shoal.bundles import KEY_ENV, MAGIC, cluster_key, make_bundle, open_bundle
from shoal.environments import hold, unused
from shoal.errors import BundleError, ConfigError
from shoal.project import code_files, load_project
from tests.conftest import MakeProject

KEY = b"k" * 32
CODE = """
import shoal
from helpers import shout

pipeline = shoal.Pipeline("loud")

@pipeline.stage()
def speak(item):
    return {"text": shout(item.read_text())}
"""


def _project(make_project: MakeProject, toml: str | None = None) -> Path:
    folder = make_project(CODE, toml=toml)
    (folder / "helpers.py").write_text("def shout(text):\n    return text.upper()\n")
    (folder / "data").mkdir()
    (folder / "data" / "big.bin").write_bytes(b"\0" * 1000)  # data is no code: not in the bundle
    (folder / ".venv").mkdir()
    (folder / ".venv" / "x.py").write_text("")
    return folder


def test_a_bundle_holds_exactly_the_fingerprinted_files_and_unpacks_to_the_same_version(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = load_project(_project(make_project))
    blob = make_bundle(project, KEY)
    assert make_bundle(project, KEY) == blob  # the same code makes the same bytes
    manifest = open_bundle(blob, KEY, project.fingerprint, tmp_path / "unpacked")
    root = tmp_path / "unpacked" / "files"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == [p.relative_to(project.root).as_posix() for p in code_files(project.root)]
    assert files == ["helpers.py", "pipeline.py"]
    assert (manifest.pipeline, manifest.stages, manifest.requirements) == ("loud", ["speak"], None)
    assert load_project(tmp_path / "unpacked" / "files").fingerprint == project.fingerprint


@pytest.mark.parametrize("how", ["other key", "flipped byte", "truncated", "not a bundle"])
def test_a_bundle_not_signed_with_the_key_is_refused_before_it_is_unpacked(
    make_project: MakeProject, tmp_path: Path, how: str
) -> None:
    project = load_project(_project(make_project))
    (tmp_path / "cache").mkdir()
    blob = make_bundle(project, b"x" * 32 if how == "other key" else KEY)
    if how == "flipped byte":
        blob = blob[:-10] + bytes([blob[-10] ^ 1]) + blob[-9:]
    elif how == "truncated":
        blob = blob[: len(blob) // 2]
    elif how == "not a bundle":
        blob = b"#!/bin/sh\nrm -rf /\n"
    with pytest.raises(BundleError, match=f"code bundle {project.fingerprint} is not (signed|a shoal bundle)"):
        open_bundle(blob, KEY, project.fingerprint, tmp_path / "cache" / "unpacked")
    assert list((tmp_path / "cache").iterdir()) == [], "nothing unpacked, not even half"


def test_a_signed_bundle_of_other_code_than_the_job_names_is_refused(make_project: MakeProject, tmp_path: Path) -> None:
    project = load_project(_project(make_project))
    with pytest.raises(BundleError, match="holds version"):
        open_bundle(make_bundle(project, KEY), KEY, "0123456789abcdef", tmp_path / "unpacked")


def test_a_signed_archive_cannot_write_outside_its_folder(tmp_path: Path) -> None:
    import hashlib
    import hmac

    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.py")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    data = payload.getvalue()
    blob = MAGIC + hmac.new(KEY, data, hashlib.sha256).digest() + data
    with pytest.raises(BundleError, match=r"holds '\.\./escaped\.py', which is not a file of a project: refused"):
        open_bundle(blob, KEY, "0123456789abcdef", tmp_path / "in" / "unpacked")
    assert not (tmp_path / "in" / "escaped.py").exists()


@pytest.mark.parametrize(
    ("declared", "refused"), [(None, False), (">=3.11", False), ("<3.0", True), ("not a range", True)]
)
def test_code_for_another_python_is_refused_with_the_versions_named(
    make_project: MakeProject, tmp_path: Path, declared: str | None, refused: bool
) -> None:
    toml = f'[project]\npython = "{declared}"\n' if declared else None
    project = load_project(_project(make_project, toml))
    blob = make_bundle(project, KEY)
    if not refused:
        open_bundle(blob, KEY, project.fingerprint, tmp_path / "unpacked")
        return
    with pytest.raises(BundleError, match=r"declares Python <3\.0; this worker runs Python 3|is no version range"):
        open_bundle(blob, KEY, project.fingerprint, tmp_path / "unpacked")


def test_a_missing_or_short_cluster_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"{KEY_ENV} is not set: workers need it"):
        cluster_key("workers need it")
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(ConfigError, match="shorter than 16 bytes"):
        cluster_key("workers need it")
    monkeypatch.setenv(KEY_ENV, "a" * 16)
    assert cluster_key("workers need it") == b"a" * 16


def test_bundles_in_a_folder_are_whole_or_absent(tmp_path: Path) -> None:
    store = open_store("amqp://guest:guest@127.0.0.1:5672//", f"file://{tmp_path / 'bundles'}")
    assert isinstance(store, FsspecBundles)
    assert store.get("abc") is None
    store.put("abc", b"one")
    store.put("abc", b"one")  # the same again: left as it is
    assert store.get("abc") == b"one"
    store.put("abc", b"two")  # re-signed with a new key: replaced
    assert store.get("abc") == b"two"
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == ["abc.bundle"]


def test_a_rabbitmq_broker_needs_a_bundle_store_named() -> None:
    with pytest.raises(ConfigError, match="RabbitMQ broker keeps no code bundles: set --bundles URL"):
        open_store("amqp://guest:guest@127.0.0.1:5672//", None)


def test_a_folder_held_by_a_pool_is_never_trimmed(tmp_path: Path) -> None:
    folder = tmp_path / "0123456789abcdef"
    folder.mkdir()
    held = hold(folder)
    assert not unused(folder), "held: in use by some worker's processes"
    held.close()
    assert unused(folder)
