"""The Models page in a real browser: a pipeline's versions with their aliases, the traffic
share and latency each answers, and the history of a promotion."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MakeProject
from tests.helpers import shoal_cli
from tests.integration.test_models import PIPELINE, TOML, _version

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_the_models_page_shows_versions_aliases_traffic_and_history(
    serve: Callable[..., Any], make_project: MakeProject, home: Path, page: Any
) -> None:
    project = _version(make_project(PIPELINE, toml=TOML), 1.0)
    first = shoal_cli("models", "register", str(project)).stdout.strip()
    _version(project, 2.0)
    second = shoal_cli("models", "register", str(project)).stdout.strip()
    assert shoal_cli("models", "promote", "scorer", first).returncode == 0
    assert shoal_cli("models", "promote", "scorer", second).returncode == 0
    server = serve(projects=[project])
    with server.client() as client:
        for _ in range(5):
            answer = client.post("/api/v1/pipelines/scorer/predict", json={"inputs": [{"meta": {"text": "ab"}}]})
            assert answer.json()["outputs"][0]["version"] == second
    page.goto(server.url + "/models")
    row = f"section[data-pipeline='scorer'] tr[data-version='{second}']"
    page.wait_for_selector(f"{row} td.share:has-text('100.0%')")
    assert page.text_content(f"{row} td.aliases") == "production"
    assert page.text_content(f"{row} td.p50").endswith(" ms")
    assert page.text_content(f"{row} td.errors") == "0.0%"
    assert page.text_content(f"section[data-pipeline='scorer'] tr[data-version='{first}'] td.aliases") == ""
    history = page.text_content("section[data-pipeline='scorer'] ul.events")
    assert "promoted" in history
    assert second in history
