"""The parts of one server, built once by create_app and reached by routes through app.state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shoal.serving import Serving
from shoal.store import Ledger
from shoal.web.catalog import Catalog
from shoal.web.security import Guard
from shoal.web.service import JobService
from shoal.web.settings import ServerSettings
from shoal.web.views import JobViews


@dataclass
class Parts:
    settings: ServerSettings
    ledger: Ledger
    catalog: Catalog
    service: JobService
    guard: Guard
    views: JobViews
    serving: Serving  #: pipelines answering predict requests online

    @property
    def exports(self) -> Path:
        """Where files made on request (exports of running jobs, zips) are written."""
        return self.settings.data_root / "exports"
