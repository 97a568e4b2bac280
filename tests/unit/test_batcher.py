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


def _timed(policy: BatchPolicy) -> Batcher:
    batcher = Batcher(policy)
    for size in (1, 4, 8):  # t(n) = 20 ms + 10 ms * n
        batcher.measured(size, 0.020 + 0.010 * size)
    return batcher


def test_the_expected_answer_time_counts_the_batches_ahead_and_those_joining() -> None:
    batcher = _timed(BatchPolicy(max_batch_size=8, max_queue=100))
    assert batcher.expected_s(1, [0.0]) == 0.030  # idle: a batch of one
    batcher.add(_waiting(*[1.0] * 10))  # two batches: 8, then 2 and this request's 3
    assert abs((batcher.expected_s(3, [0.05]) or 0) - (0.05 + 0.100 + 0.070)) < 1e-9
    # Two replicas: the full batch goes to the first free, this request's to the other.
    assert abs((batcher.expected_s(3, [0.05, 0.08]) or 0) - (0.08 + 0.070)) < 1e-9
    # 29 inputs, four batches: A 0.05-0.15, B 0.08-0.18, A 0.15-0.25, and its last (5) on B.
    assert abs((batcher.expected_s(3 + 16, [0.05, 0.08]) or 0) - (0.08 + 0.100 + 0.070)) < 1e-9
    # With 100 inputs a second arriving, the 0.15 s before its batch starts bring 15 more: full.
    batcher.add(_waiting(*[1.0 + k / 100 for k in range(1, 20)]))
    assert batcher.rate > 50
    batcher.waiting.clear()
    batcher.add(_waiting(*[2.0] * 10))
    assert (batcher.expected_s(3, [0.05]) or 0) > 0.05 + 0.100 + 0.070


def test_a_request_expected_past_the_slo_is_refused_unless_nothing_is_ahead() -> None:
    batcher = _timed(BatchPolicy(max_batch_size=8, max_queue=100, latency_slo_ms=200))
    assert batcher.refuses(40, [0.0]) is None  # nothing ahead: taken, however large
    assert batcher.refuses(1, [0.1]) is None  # 100 ms left + 30 ms
    batcher.add(_waiting(*[1.0] * 16))
    expected = batcher.refuses(1, [0.1])  # 100 ms left + two full batches of 100 ms + its own 30
    assert expected is not None
    assert abs(expected - 0.330) < 1e-9
    assert Batcher(BatchPolicy(max_batch_size=8)).refuses(1, [5.0]) is None  # no SLO: only max_queue
