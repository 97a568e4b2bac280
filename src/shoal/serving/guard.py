"""Guardrails of a canary or shadow version: judged on what it answered, with a minimum sample.

A canary is rolled back when, after ``min_samples`` answers, its error rate passes
``max_error_rate`` or its p99 latency passes ``max_p99_ms``; a shadow is stopped when it
disagrees with production on more than ``max_disagreement`` of the inputs both answered. Passing
with ``auto_promote`` makes it production. A version that fails to start is rolled back at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from shoal.serving.pool import ReplicaPool


@dataclass(frozen=True)
class Guardrails:
    min_samples: int = 50
    max_error_rate: float = 0.02
    max_p99_ms: float | None = None
    max_disagreement: float = 0.05
    auto_promote: bool = False

    @classmethod
    def of(cls, options: dict[str, Any]) -> Guardrails:
        known = {k: v for k, v in options.items() if k in cls.__dataclass_fields__ and v is not None}
        return cls(**known)


class Agreement:
    """How often a shadow's answers matched production's on the same inputs."""

    def __init__(self) -> None:
        self.compared = 0
        self.differed = 0
        self._lock = threading.Lock()

    def add(self, production: list[dict[str, Any]], shadow: list[dict[str, Any]]) -> None:
        with self._lock:
            for mine, theirs in zip(production, shadow, strict=False):
                self.compared += 1
                same = mine.get("ok") == theirs.get("ok") and mine.get("result") == theirs.get("result")
                self.differed += not same

    @property
    def rate(self) -> float | None:
        return self.differed / self.compared if self.compared else None


def verdict(role: str, pool: ReplicaPool, rails: Guardrails, agreement: Agreement | None) -> tuple[str, str] | None:
    """("rollback" | "promote", why), or None while there is not enough to judge."""
    if pool.failure is not None:
        return "rollback", f"it failed to start: {pool.failure}"
    if role == "shadow":
        if agreement is None or agreement.compared < rails.min_samples:
            return None
        rate = agreement.rate or 0.0
        if rate > rails.max_disagreement:
            return "rollback", (
                f"it disagreed with production on {rate:.1%} of {agreement.compared} inputs "
                f"(the limit is {rails.max_disagreement:.1%})"
            )
        return (
            ("promote", f"it agreed with production on {1 - rate:.1%} of {agreement.compared} inputs")
            if (rails.auto_promote)
            else None
        )
    traffic = pool.traffic
    if traffic.answered < rails.min_samples:
        return None
    error_rate = traffic.failed / traffic.answered
    if error_rate > rails.max_error_rate:
        return "rollback", (
            f"its error rate {error_rate:.1%} over {traffic.answered} inputs passed "
            f"the limit of {rails.max_error_rate:.1%}"
        )
    p99 = traffic.percentile(99)
    if rails.max_p99_ms is not None and p99 is not None and p99 * 1000 > rails.max_p99_ms:
        return "rollback", f"its p99 latency {p99 * 1000:.0f} ms passed the limit of {rails.max_p99_ms:g} ms"
    if rails.auto_promote:
        return "promote", f"{traffic.answered} inputs at an error rate of {error_rate:.1%}: within its guardrails"
    return None
