"""The adaptive batcher's decisions, with the clock given: full batches, the latency budget
counted from the oldest input's arrival, no holding for a lone request, costs, deadlines."""

from __future__ import annotations

from shoal.serving.batcher import Batcher, BatchPolicy, BatchTimes, Waiting


def _waiting(*arrivals: float, cost: float = 1.0, deadline: float = 1e9) -> list[Waiting]:
    return [Waiting(at, n, cost, deadline) for n, at in enumerate(arrivals)]


def test_a_lone_request_on_an_idle_replica_goes_at_once() -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=8, max_latency_ms=50))
    batcher.add(_waiting(10.0))
    assert [w.payload for w in batcher.take(10.0)] == [0]


def test_a_full_batch_goes_and_the_rest_waits_its_turn() -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=4, max_latency_ms=50))
    batcher.add(_waiting(*[1.0] * 6))
    assert [w.payload for w in batcher.take(1.0)] == [0, 1, 2, 3]
    assert len(batcher) == 2


def test_waiting_pays_only_when_the_fixed_cost_is_large_and_inputs_arrive_fast() -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=32, max_latency_ms=20))
    for size in (1, 8, 16, 32):  # t(n) = 10 ms + 0.1 ms * n: a large fixed cost (say a GPU call)
        batcher.measured(size, 0.010 + 0.0001 * size)
    for k in range(4):  # four requests, 2,000 inputs/s
        batcher.add(_waiting(1.0 + k * 0.0005))
    assert batcher.take(1.002) == []  # 4 wait, ~36 more come within the budget: hold them
    assert batcher.wake_at(1.002) == 1.0 + 0.020  # due by the oldest's arrival + max_latency_ms
    assert len(batcher.take(1.020)) == 4  # the budget is spent, counted from the oldest's arrival

    cheap = Batcher(BatchPolicy(max_batch_size=32, max_latency_ms=20))
    for size in (1, 8, 16, 32):  # t(n) = 0.1 ms + 2 ms * n: no fixed cost worth sharing
        cheap.measured(size, 0.0001 + 0.002 * size)
    for k in range(4):
        cheap.add(_waiting(1.0 + k * 0.0005))
    assert len(cheap.take(1.002)) == 4


def test_costs_cut_batches_by_total_size() -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=10, max_latency_ms=5, max_batch_cost=100))
    batcher.add([Waiting(1.0, n, cost) for n, cost in enumerate([40, 40, 40, 10])])
    assert [w.payload for w in batcher.take(1.0)] == [0, 1]
    assert [w.payload for w in batcher.take(1.0)] == [2, 3]


def test_inputs_past_their_deadline_leave_the_queue() -> None:
    batcher = Batcher(BatchPolicy(max_queue=3))
    batcher.add(_waiting(1.0, 1.0, deadline=2.0) + _waiting(1.0, deadline=9.0))
    assert batcher.room() == 0
    assert len(batcher.expired(2.5)) == 2
    assert len(batcher) == 1


def test_batch_time_is_fitted_as_a_line() -> None:
    times = BatchTimes()
    assert times.fit() is None
    for size in (1, 2, 4, 8):
        times.add(size, 0.005 + 0.001 * size)
    a, b = times.fit() or (0, 0)
    assert abs(a - 0.005) < 1e-9
    assert abs(b - 0.001) < 1e-9
    assert abs((times.predict(16) or 0) - 0.021) < 1e-9


def test_a_fixed_window_holds_even_a_lone_request() -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=10, max_latency_ms=10, adaptive=False))
    batcher.add(_waiting(1.0))
    assert batcher.take(1.0) == []
    assert len(batcher.take(1.010)) == 1


def test_the_arrival_rate_is_estimated_from_the_mean_gap() -> None:
    batcher = Batcher(BatchPolicy(max_queue=10_000))
    gaps = [0.001, 0.9, 0.05, 0.4, 0.2, 0.0001, 0.35] * 30  # Poisson-like: a few tiny gaps
    now = 0.0
    for gap in gaps:
        now += gap
        batcher.add(_waiting(now))
    mean = sum(gaps) / len(gaps)
    assert 0.5 / mean < batcher.rate < 2 / mean  # 1/gap averaged would be dominated by the tiny ones
    batcher.add(_waiting(*[now + 0.3] * 10))  # one request of ten inputs: ten inputs in 0.3 s
    assert batcher.rate > 1 / mean
