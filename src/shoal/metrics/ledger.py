"""shoal_jobs: jobs by state, read from the ledger when Prometheus scrapes.

The ledger is the truth about jobs, whoever runs them, so this is a query at scrape time (one
GROUP BY over the small jobs table) rather than a count kept in memory. Every process that shares
a ledger reports the same figures: aggregate with max(), not sum().
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from shoal.states import JOB_STATES
from shoal.store import Ledger
from shoal.store.ledger import job_state


class JobsCollector(Collector):
    """Register on a registry to export shoal_jobs{state} from ``ledger``."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def collect(self) -> Iterator[Metric]:
        family = _family()
        try:
            with self.ledger.engine.connect() as conn:
                seen_as = job_state(time.time())  # a job whose coordinator is gone counts as interrupted
                rows = conn.execute(select(seen_as, func.count()).group_by(seen_as))
                found: dict[str, int] = {str(state): int(n) for state, n in rows}
        except SQLAlchemyError:
            return  # the ledger is unreachable: no figure is better than a wrong one
        for state in dict.fromkeys([*JOB_STATES, *found]):
            family.add_metric([state], found.get(state, 0))
        yield family

    def describe(self) -> Iterator[Metric]:
        yield _family()


def _family() -> GaugeMetricFamily:
    return GaugeMetricFamily("shoal_jobs", "Jobs in the ledger by state.", labels=["state"])
