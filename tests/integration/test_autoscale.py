"""Scaling real `shoal worker`s on shoal's backlog signal, by KEDA's rule (issue 14): a burst takes
the pool above its minimum and back down to it after the drain, workers stopped with SIGTERM while
they run items finish them, and every item is recorded exactly once. The controller and the
burst are the ones `bench/autoscale.py` measures with; no timing is asserted here."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.autoscale import Burst, write_burst
from tests.engines import REDIS_URL, require_service

pytestmark = pytest.mark.integration

ITEMS = 400
PERIOD_S = 0.25  #: seconds; the drain's tail lasts about a second, and the rule must see it


def test_a_burst_scales_the_pool_up_and_back_down_losing_nothing(home: Path) -> None:
    require_service(6379)
    burst = write_burst(home, ITEMS)
    outcome = Burst(home / "shoal", burst, REDIS_URL, "shoal", low=1, high=3, period_s=PERIOD_S).run()
    assert outcome.peak_workers == 3
    assert outcome.final_workers == 1
    assert outcome.settled, "the stopped workers did not exit by themselves"
    assert outcome.scale_downs >= 2
    assert outcome.stops_mid_item >= 1, "no worker was stopped while running an item"
    assert outcome.lost_items == 0
    assert outcome.duplicate_results == 0
