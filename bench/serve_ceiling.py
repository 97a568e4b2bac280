"""What an ideal server would reach: the p99 latency of one replica with no noise and no cost beyond
the model's own, at shares of its offline limit, under the Poisson load bench/serve.py offers.

    python bench/serve_ceiling.py --limit 111.8 --fixed-ms 10

A model, not a measurement: it tells how far ``embed_saturation_ratio`` (throughput with p99 <=
500 ms over the offline limit) can go at all. Requests (one sentence each, lengths drawn from
bench/serve.py's corpus) arrive at Poisson times; whenever the replica is free it takes every
waiting sentence up to 64 or 8,000 characters (the example's shoal.toml), and a batch takes
``fixed`` seconds (the model's cost per call beyond the limit's share of it: small passes use
the CPU less well) plus each sentence's share of 1/limit, in proportion to its length (a packed
batch costs its tokens, not its count). With 5-10 ms of it, p99 passes 500 ms between 0.85 and
0.9 of the limit from the queue's bursts alone. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from collections import deque

from serve import P99_BOUND_S, sentences

SHARES = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def p99(rate: float, limit: float, fixed: float, lengths: list[int], seconds: float, seed: int) -> float:
    """The 99th percentile latency, in seconds, of ``seconds`` of Poisson arrivals at ``rate``."""
    rng = random.Random(seed)
    per_char = 1 / limit / statistics.mean(lengths)
    waiting: deque[tuple[float, int]] = deque()
    latencies: list[float] = []
    arrive, free = rng.expovariate(rate), 0.0
    while arrive < seconds or waiting:
        if not waiting:
            free = max(free, arrive)
        while arrive < seconds and arrive <= free:
            waiting.append((arrive, rng.choice(lengths)))
            arrive += rng.expovariate(rate)
        batch: list[float] = []
        chars = 0
        while waiting and len(batch) < 64 and (not batch or chars + waiting[0][1] <= 8000):
            chars += waiting[0][1]
            batch.append(waiting.popleft()[0])
        free += fixed + per_char * chars
        latencies += [free - at for at in batch]
    latencies.sort()
    return latencies[int(0.99 * len(latencies))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=float, default=111.8, help="the offline limit, sentences/s")
    parser.add_argument("--fixed-ms", type=float, nargs="+", default=[5.0, 10.0, 15.0, 20.0], help="cost per batch")
    parser.add_argument("--seconds", type=float, default=120.0, help="seconds of arrivals per run")
    parser.add_argument("--seeds", type=int, default=5, help="runs per point (the median is kept)")
    args = parser.parse_args()
    lengths = [len(s) for s in sentences(2048)]
    figures: dict[str, dict[str, float | None]] = {}
    for fixed_ms in args.fixed_ms:
        row = {
            str(share): statistics.median(
                p99(share * args.limit, args.limit, fixed_ms / 1000, lengths, args.seconds, seed)
                for seed in range(args.seeds)
            )
            for share in SHARES
        }
        within = [float(s) for s, q in row.items() if q <= P99_BOUND_S]
        figures[f"fixed_{fixed_ms:g}ms"] = {"best_share_within_bound": max(within, default=None)}
        figures[f"fixed_{fixed_ms:g}ms"].update({f"p99_ms_at_{s}": round(q * 1000) for s, q in row.items()})
        print(f"fixed {fixed_ms:g} ms: " + "  ".join(f"{s} {q * 1000:.0f} ms" for s, q in row.items()), flush=True)
    print(json.dumps({"limit": args.limit, **figures}))


if __name__ == "__main__":
    main()
