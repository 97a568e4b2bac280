"""A pipeline's ``[serve]`` table: what it sets, and settings it refuses by name."""

from __future__ import annotations

import pytest

from shoal.errors import ConfigError
from shoal.project import load_project
from shoal.serving.config import ServeConfig
from tests.conftest import MakeProject

PIPELINE = """
import shoal
pipeline = shoal.Pipeline("echo")

@pipeline.stage(batch_size=8)
def echo(items):
    return [{"ok": True} for _ in items]
"""


def test_the_table_sets_the_batch_policy_and_the_pipeline_sets_its_batch_size(make_project: MakeProject) -> None:
    policy = ServeConfig.of(load_project(make_project(PIPELINE, toml="[serve]\nlatency_slo_ms = 400\n"))).policy()
    assert policy.latency_slo_ms == 400
    assert policy.max_batch_size == 8
    assert ServeConfig.of(load_project(make_project(PIPELINE, name="plain"))).policy().latency_slo_ms is None


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ("latency_slo_ms = 0", "latency_slo_ms: above 0, not 0"),
        ("max_queue = 0", "max_queue >= 1"),
        ("batch_latency = 5", "unknown setting(s) batch_latency"),
        ("swap = 'sideways'", "beside or rolling, not 'sideways'"),
    ],
)
def test_bad_settings_are_named(make_project: MakeProject, table: str, words: str) -> None:
    project = load_project(make_project(PIPELINE, toml=f"[serve]\n{table}\n"))
    with pytest.raises(ConfigError, match=r"shoal\.toml \[serve\]") as raised:
        ServeConfig.of(project)
    assert words in str(raised.value)
