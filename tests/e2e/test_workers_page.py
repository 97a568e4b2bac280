"""The Workers page in a real browser: every live `shoal worker` a row, a killed one marked lost,
a worker's log on a click."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MakeProject
from tests.engines import engine_for
from tests.integration.test_workers_view import BLOCKING

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_the_workers_page_lists_workers_marks_a_lost_one_and_shows_a_log(
    serve: Callable[..., Any], make_project: MakeProject, home: Path, page: Any
) -> None:
    cluster = engine_for("celery-redis", home)
    try:
        first, second = cluster.start_workers(make_project(BLOCKING), 2)
        server = serve(engine="celery", broker_url=cluster.broker)
        page.goto(server.url + "/workers")
        for process in (first, second):
            page.wait_for_selector(
                f"#workers tr[data-worker$='-{process.pid}@' i], #workers tr[data-worker*='-{process.pid}@']"
            )
        assert page.locator("#workers tr[data-state='up']").count() == 2

        first.kill()  # no goodbye: it stops heartbeating
        first.wait()
        page.wait_for_selector(f"#workers tr[data-worker*='-{first.pid}@'][data-state='lost']", timeout=90_000)
        assert page.locator(f"#workers tr[data-worker*='-{second.pid}@'][data-state='up']").count() == 1

        page.click(f"#workers tr[data-worker*='-{second.pid}@'] button[data-log]")
        page.wait_for_selector("#worker-log:not([hidden])")
        assert "ready." in page.text_content("#worker-log-text")  # Celery's start-up line, from its own log
    finally:
        cluster.stop_workers()
