"""The event stream's end: decided from a record read after the job left its slot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from shoal.store import Ledger
from shoal.web.api.routes.events import _from_ledger
from shoal.web.views import JobViews


class FinishingService:
    """A service whose job leaves its slot, its final state written, just as it is asked about."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def active(self, job_id: str) -> bool:
        self.ledger.set_state(job_id, "failed", finished=True)  # the slot records the end, then lets go
        return False

    def feed(self, job_id: str) -> None:
        return None

    def error(self, job_id: str) -> str | None:
        return None


def test_a_passing_state_is_not_taken_for_the_end(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    now = time.time()
    ledger.open_job("k", lambda: dict(
        id="j", pipeline="p", fingerprint="f", project="/p", inputs="[]", options="{}", out="/out",
        state="interrupted", created_at=now, updated_at=now, finished_at=None, entries=0, ingested=False,
        owner=None, heartbeat_at=None,
    ))  # fmt: skip
    service: Any = FinishingService(ledger)
    parts: Any = type("Parts", (), {"ledger": ledger, "service": service, "views": JobViews(ledger, service)})()
    data, done = _from_ledger(parts, "j")
    assert (data["state"], done) == ("failed", True)
    ledger.close()
