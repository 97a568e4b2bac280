"""Where a worker puts an item's downloads and artifacts, and how artifacts are committed."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shoal.item import Item

STAGING = ".staging"


@dataclass(frozen=True)
class ItemContext:
    """Per-worker locations; artifacts are staged next to their final folder so commit is a rename."""

    artifacts_root: Path
    scratch_root: Path
    fetch_timeout: float = 30.0  #: seconds

    @classmethod
    def standalone(cls) -> ItemContext:
        """Throw-away folders, for an Item used outside a run (tests, notebooks)."""
        root = Path(tempfile.mkdtemp(prefix="shoal-item-"))
        return cls(root / "artifacts", root / "scratch")

    def staging_dir(self, item_id: str, attempt: int) -> Path:
        path = self.artifacts_root / STAGING / f"{item_id}.{os.getpid()}.{attempt}"
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
        final = self.artifacts_root / item.id
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
