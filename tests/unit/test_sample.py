"""Distributions of a job in bounded memory: exact while small, a uniform sample beyond."""

from __future__ import annotations

import numpy as np

from shoal.report._sample import Sample


def test_a_small_stream_is_summarised_exactly() -> None:
    sample = Sample(size=1000)
    values = np.random.default_rng(5).exponential(size=900)
    for start in range(0, 900, 100):
        sample.add(values[start : start + 100], [f"i{n}" for n in range(start, start + 100)])
    summary = sample.summary()
    assert summary["count"] == 900
    assert "sampled" not in summary
    assert summary["p95"] == np.percentile(values, 95)
    assert summary["max_item"] == f"i{int(values.argmax())}"
    assert abs(summary["mean"] - values.mean()) < 1e-12


def test_a_large_stream_keeps_exact_extremes_and_close_percentiles() -> None:
    sample = Sample(size=5000, seed=3)
    values = np.random.default_rng(7).lognormal(size=200_000)
    for start in range(0, len(values), 20_000):
        sample.add(values[start : start + 20_000], [str(n) for n in range(start, start + 20_000)])
    summary = sample.summary()
    assert summary["count"] == 200_000
    assert summary["sampled"] == 5000
    assert summary["min"] == values.min()
    assert summary["max_item"] == str(int(values.argmax()))
    for q in (50, 95):  # the sampled percentile sits within a percentile or so of the true one
        low, high = np.percentile(values, [q - 1.5, q + 1.5])
        assert low <= summary[f"p{q}"] <= high
