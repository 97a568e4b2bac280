"""summarize: the per-interval table, the joins by item id, correlations, and clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from shoal.errors import ConfigError
from shoal.metrics.summarize import Sources, correlations, load, summarize
from tests.helpers import shoal_cli

T = 1_800_000_000.0  #: a round epoch second, on a minute boundary


def column(names: list[str], table: np.ndarray, name: str) -> list[float]:  # type: ignore[type-arg]
    return [round(float(v), 6) if math.isfinite(v) else math.nan for v in table[:, names.index(name)]]


def test_rates_percentiles_and_end_to_end_latency_per_interval() -> None:
    sources = Sources(
        sent=[(T + i, 1_000_000.0, f"i{i}") for i in range(20)],  # one 1 MB item a second, for 20 s
        items=[(T + i + 0.5, T + i + 1.0 + (i >= 10), f"i{i}") for i in range(20)],
    )
    names, table = summarize(sources, 10.0)
    assert len(table) == 2
    assert column(names, table, "input_mb_per_s") == pytest.approx([1.0, 10 / 9.0])  # the last covers 9 s
    assert column(names, table, "e2e_p50_s") == [1.0, 2.0]
    assert column(names, table, "processing_p95_s") == [0.5, 1.5]
    assert column(names, table, "covered_s") == [10.0, 9.0]


def test_a_barely_covered_interval_has_no_rate() -> None:
    sources = Sources(sent=[(T, 10.0, "a"), (T + 10.5, 10.0, "b")])
    names, table = summarize(sources, 10.0)
    assert math.isnan(column(names, table, "input_items_per_s")[1])


def test_correlations_pick_the_columns_there_are() -> None:
    sources = Sources(
        sent=[(T + k, 1e5 * (k % 5), f"i{k}") for k in range(30)],
        items=[(T + k, T + k + 0.1 * (k % 5), f"x{k}") for k in range(30)],  # not the fed ids: no e2e
    )
    names, table = summarize(sources, 5.0)
    result = correlations(names, table)
    assert result["columns"] == ["input_mb_per_s", "processing_p95_s"]


def test_constant_series_have_no_correlation() -> None:
    names = ["start", "input_items_per_s", "processing_p95_s"]
    table = np.array([[0, 1.0, float(v)] for v in range(5)])
    assert correlations(names, table)["pearson"]["input_items_per_s"]["processing_p95_s"] is None


def test_feed_log_times_need_a_zone(tmp_path: Path) -> None:
    feed = tmp_path / "feed.csv"
    feed.write_text("time,bytes,item_id\n2026-11-25T12:00:00,10,a\n")
    with pytest.raises(ConfigError, match=r"feed.csv, line 2: time '2026-11-25T12:00:00' has no zone"):
        load(feed, None, None)


def test_feed_log_needs_its_columns(tmp_path: Path) -> None:
    feed = tmp_path / "feed.csv"
    feed.write_text("when,size\n")
    with pytest.raises(ConfigError, match="needs columns time, bytes and item_id"):
        load(feed, None, None)


def test_summarize_command(tmp_path: Path) -> None:
    feed, run = tmp_path / "feed.csv", tmp_path / "run"
    run.mkdir()
    feed.write_text("time,bytes,item_id\n" + "".join(f"2026-11-25T12:00:{s:02d}Z,1000,i{s}\n" for s in range(40)))
    (run / "results.jsonl").write_text(
        "".join(
            json.dumps(
                {"id": f"i{s}", "started": f"2026-11-25T12:00:{s:02d}.1Z", "finished": f"2026-11-25T12:00:{s:02d}.5Z"}
            )
            + "\n"
            for s in range(40)
        )
    )
    result = shoal_cli("metrics", "summarize", "--feed", str(feed), "--run", str(run), "--out", str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    assert "4 intervals of 10 s" in result.stdout
    assert (tmp_path / "s" / "summary.png").exists()
    header = (tmp_path / "s" / "summary.csv").read_text().splitlines()[0]
    assert header.startswith("start,covered_s,input_items_per_s,input_mb_per_s,done_items_per_s")


def test_summarize_needs_a_feed_or_a_run(tmp_path: Path) -> None:
    result = shoal_cli("metrics", "summarize", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr == "shoal: error: give --feed (a feed log) or --run (a run folder), or both\n"
