"""When to send a batch of waiting online inputs to a replica, and how many: adaptive batching.

The rules, in order, each time a replica is idle:

- nothing waits: nothing to do;
- ``max_batch_size`` inputs (or ``max_batch_cost`` by the cost function) wait: send a full batch;
- the oldest input has waited ``max_latency_ms`` since it arrived (not since a batch began):
  send what waits;
- waiting does not pay: send at once. Batch time is fitted as t(n) = a + b*n from the batches
  measured so far (least squares over a recent window). Holding the batch for dt seconds gains
  the ``rate * dt`` inputs expected to arrive, each saving ``a / n`` of fixed cost, and costs
  every waiting input dt. It pays only where the fixed cost is large against the per-input cost
  and inputs arrive fast enough to fill the batch before the latency budget runs out; a lone
  request on an idle replica is therefore never held back.

Admission: with ``latency_slo_ms`` set, a request whose answer is expected later than that is
refused at once (429) rather than answered late, so the requests taken keep to it under any
load. The expectation is the batches ahead of the request, spread over the replicas as they
come free, then its own batch, grown by the inputs expected to join it while it waits, all
timed by the fitted t(n). A request that finds nothing ahead of it is always taken.

The batcher is pure bookkeeping (no threads, no clock of its own): the pool calls it with the
time, which keeps it exact to test.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BatchPolicy:
    """A pipeline's batching settings (``[serve]`` in shoal.toml)."""

    max_batch_size: int = 32
    max_latency_ms: float = 10.0  #: the longest the oldest waiting input is held to grow a batch
    max_queue: int = 1024  #: inputs waiting at most; past it requests are refused (429)
    max_batch_cost: float | None = None  #: a batch's cost limit, by ``cost`` (total text length, pixels)
    cost: Callable[[Any], float] | None = None  #: an input's cost; None: each counts 1
    adaptive: bool = True  #: False: a fixed window, always held until full or max_latency_ms (to compare)
    latency_slo_ms: float | None = None  #: refuse (429) a request expected to be answered later than this


@dataclass
class Waiting:
    """One input waiting for a batch."""

    arrived: float
    payload: Any
    cost: float = 1.0
    deadline: float = math.inf


@dataclass
class BatchTimes:
    """t(n) = a + b*n fitted to the last ``window`` batches measured."""

    window: int = 64
    samples: deque[tuple[int, float]] = field(default_factory=deque)

    def add(self, size: int, seconds: float) -> None:
        self.samples.append((size, seconds))
        while len(self.samples) > self.window:
            self.samples.popleft()

    def fit(self) -> tuple[float, float] | None:
        """(a, b), or None before two batch sizes have been seen."""
        if len(self.samples) < 2:
            return None
        sizes = [float(n) for n, _ in self.samples]
        times = [t for _, t in self.samples]
        mean_n, mean_t = sum(sizes) / len(sizes), sum(times) / len(times)
        spread = sum((n - mean_n) ** 2 for n in sizes)
        if spread == 0:
            return None
        b = sum((n - mean_n) * (t - mean_t) for n, t in zip(sizes, times, strict=True)) / spread
        b = max(b, 0.0)
        return max(mean_t - b * mean_n, 0.0), b

    def predict(self, size: int) -> float | None:
        fitted = self.fit()
        if fitted is None:
            return None
        a, b = fitted
        return a + b * size


class Batcher:
    """Waiting inputs of one pipeline version, and the decision of what to send next."""

    def __init__(self, policy: BatchPolicy) -> None:
        self.policy = policy
        self.waiting: deque[Waiting] = deque()
        self.times = BatchTimes()
        self._gap: float | None = None  #: seconds between inputs, a moving average
        self._last_arrival: float | None = None

    def __len__(self) -> int:
        return len(self.waiting)

    def room(self) -> int:
        return self.policy.max_queue - len(self.waiting)

    def add(self, entries: list[Waiting]) -> None:
        """Queue a request's inputs together (the caller checked ``room``)."""
        if entries:
            self._arrival(entries[0].arrived, len(entries))
        self.waiting.extend(entries)

    def _arrival(self, now: float, count: int) -> None:
        """Average the gap between inputs, not its inverse: 1/gap of Poisson arrivals has no
        mean, and one request's inputs arrive at once (its gap is shared among them)."""
        if self._last_arrival is not None:
            gap = max(now - self._last_arrival, 0.0) / count
            self._gap = gap if self._gap is None else 0.9 * self._gap + 0.1 * gap
        self._last_arrival = now

    @property
    def rate(self) -> float:
        """Inputs per second lately (0 before two requests)."""
        return 0.0 if self._gap is None else 1 / max(self._gap, 1e-6)

    def expected_s(self, count: int, busy: list[float]) -> float | None:
        """Seconds until a request of ``count`` inputs queued now would be answered; None before
        batch times are known. ``busy``: each replica's seconds left on the batch it runs (0 idle)."""
        fitted = self.times.fit()
        if fitted is None or not busy:
            return None
        a, b = fitted
        size = self.policy.max_batch_size
        total = len(self.waiting) + count
        ahead = math.ceil(total / size) - 1  #: full batches before the one that ends the request
        # The batches ahead go to the replicas in turn as they come free (exact while the
        # replicas' time left differs by less than a full batch's).
        rounds, first = divmod(ahead, len(busy))
        start = sorted(busy)[first] + rounds * (a + b * size)
        joining = self.rate * start  #: inputs arriving meanwhile, which ride in the same batch
        last = min(size, total - ahead * size + joining)
        return start + a + b * last

    def refuses(self, count: int, busy: list[float]) -> float | None:
        """The expected seconds to answer, where that passes ``latency_slo_ms`` with work ahead
        of the request; None where the request is taken."""
        slo = self.policy.latency_slo_ms
        if slo is None or (not self.waiting and not any(busy)):
            return None
        expected = self.expected_s(count, busy)
        return expected if expected is not None and expected > slo / 1000 else None

    def expired(self, now: float) -> list[Waiting]:
        """Inputs past their deadline, taken out of the queue."""
        if not any(w.deadline <= now for w in self.waiting):
            return []
        gone = [w for w in self.waiting if w.deadline <= now]
        self.waiting = deque(w for w in self.waiting if w.deadline > now)
        return gone

    def take(self, now: float) -> list[Waiting]:
        """The batch to send to an idle replica now; empty to keep waiting (see `wake_at`)."""
        if not self.waiting:
            return []
        size = self._full_size()
        if size < len(self.waiting) or size == self.policy.max_batch_size:
            return self._pop(size)
        if self._held(now) >= self.policy.max_latency_ms / 1000:
            return self._pop(len(self.waiting))
        if self.policy.adaptive and not self._waiting_pays(now):
            return self._pop(len(self.waiting))
        return []

    def wake_at(self, now: float) -> float | None:
        """When a held batch is due at the latest: the oldest input's latency budget."""
        if not self.waiting:
            return None
        return self.waiting[0].arrived + self.policy.max_latency_ms / 1000

    def _held(self, now: float) -> float:
        return now - self.waiting[0].arrived

    def _full_size(self) -> int:
        """How many of the waiting inputs one batch takes: by count, and by cost if set."""
        limit = min(self.policy.max_batch_size, len(self.waiting))
        if self.policy.max_batch_cost is None:
            return limit
        total = 0.0
        for n, entry in enumerate(self.waiting):
            if n == limit or (n and total + entry.cost > self.policy.max_batch_cost):
                return n
            total += entry.cost
        return limit

    def _waiting_pays(self, now: float) -> bool:
        """Whether holding the batch a little longer lowers the waiting inputs' mean latency."""
        fitted = self.times.fit()
        if fitted is None or self.rate <= 0:
            return False
        a, _ = fitted
        n = len(self.waiting)
        budget = self.policy.max_latency_ms / 1000 - self._held(now)
        if budget <= 0:
            return False
        more = min(self.rate * budget, self.policy.max_batch_size - n)
        if more < 1:
            return False
        # Sending now puts the newcomers in a batch of their own, each paying the fixed cost a
        # again; holding makes each of the n waiting inputs wait until the newcomers are here.
        hold = more / self.rate
        return a * more > n * hold

    def _pop(self, count: int) -> list[Waiting]:
        return [self.waiting.popleft() for _ in range(count)]

    def measured(self, size: int, seconds: float) -> None:
        """A batch of ``size`` took ``seconds`` on a replica."""
        self.times.add(size, seconds)
