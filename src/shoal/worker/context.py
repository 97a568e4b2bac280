"""Where a worker puts an item's downloads and artifacts, and how artifacts are committed.

Artifacts are written to a staging folder and published only when the whole item succeeded: by
a rename next to their final place on a local or shared folder, by an upload to an object store
(``s3://...``) otherwise.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shoal.access import ReadPolicy
from shoal.item import Item

STAGING = ".staging"


@dataclass(frozen=True)
class ItemContext:
    """Per-worker locations for one job."""

    artifacts: str  #: where artifacts/<item-id>/ go: a folder, or an fsspec URL
    scratch_root: Path  #: local scratch space: downloads, and staging for remote artifacts
    fetch_timeout: float = 30.0  #: seconds
    policy: ReadPolicy | None = None  #: what the job's items may read (a server's jobs); None: anything

    @classmethod
    def standalone(cls) -> ItemContext:
        """Throw-away folders, for an Item used outside a run (tests, notebooks)."""
        root = Path(tempfile.mkdtemp(prefix="shoal-item-"))
        return cls(str(root / "artifacts"), root / "scratch")

    @property
    def remote(self) -> bool:
        return "://" in self.artifacts

    def staging_dir(self, item_id: str, attempt: int) -> Path:
        base = self.scratch_root / STAGING if self.remote else Path(self.artifacts) / STAGING
        path = base / f"{item_id}.{os.getpid()}.{attempt}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def fetch_dir(self, item_id: str) -> Path:
        path = self.scratch_root / item_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, item: Item) -> None:
        """Publish the item's staged artifacts as artifacts/<item-id>/, replacing older ones."""
        if item.staging is None:
            return
        if self.remote:
            self._upload(item.staging, f"{self.artifacts}/{item.id}")
            shutil.rmtree(item.staging, ignore_errors=True)
            return
        final = Path(self.artifacts) / item.id
        if final.exists():
            shutil.rmtree(final)
        os.replace(item.staging, final)

    def discard(self, item: Item) -> None:
        if item.staging is not None:
            shutil.rmtree(item.staging, ignore_errors=True)

    def release(self, item: Item) -> None:
        """Delete the item's downloads so a long run does not fill the disk."""
        if item.fetched:
            shutil.rmtree(self.scratch_root / item.id, ignore_errors=True)

    @staticmethod
    def _upload(staging: Path, url: str) -> None:
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
        if fs.exists(root):
            fs.rm(root, recursive=True)
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            fs.put_file(str(path), f"{root}/{path.relative_to(staging).as_posix()}")
