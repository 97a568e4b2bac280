"""Cost of Prometheus metrics: no-op items per second with metrics on against off, in one run.

    python bench/metrics.py [--items 50000] [--repeat 9]

No-op items are the worst case: the coordinator's per-item work is all there is, so anything
metrics add shows. "On" serves /metrics (job series, embedded-worker series with histograms,
jobs by state, process metrics) and is scraped once a second by a separate process (started
once, before the rounds), as a Prometheus with a 1 s scrape interval would; "off" is the same
run without --metrics-port.
Rounds alternate on and off so drifts in machine load hit both alike; medians are reported,
and the coordinator's CPU seconds per 10,000 items beside them, which a machine shared with
other work disturbs less than wall time.
The last line printed is one JSON object: items_per_s_on, items_per_s_off, overhead_ratio
(on / off; the target is at least 0.97).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import shoal

WORKERS = 2
SCRAPER = """
import sys, time, urllib.request
url = sys.argv[1]
while True:
    try:
        urllib.request.urlopen(url, timeout=1).read()
    except OSError:
        pass
    time.sleep(1)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rate(project: Path, listing: Path, count: int, db: Path, port: int | None) -> tuple[float, float]:
    """Items per second, and the coordinator process's CPU seconds (all its threads) per 10,000 items."""
    db.unlink(missing_ok=True)  # every round starts from an empty ledger
    began, cpu = time.perf_counter(), time.process_time()
    result = shoal.run(
        project, [str(listing)], workers=WORKERS, report=False, new=True, db_url=f"sqlite:///{db}", metrics_port=port
    )
    took, cpu = time.perf_counter() - began, time.process_time() - cpu
    assert result.counts["succeeded"] == count, result.counts
    return count / took, cpu / count * 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-metrics-") as tmp:
        root = Path(tmp)
        project = root / "noop"
        project.mkdir()
        (project / "pipeline.py").write_text(
            'import shoal\npipeline = shoal.Pipeline("noop")\n\n@pipeline.stage()\ndef noop(item):\n    return {}\n'
        )
        listing = root / "items.txt"
        listing.write_text("".join(f"item-{i:06d}\n" for i in range(args.items)))
        import shoal.metrics.endpoint
        import shoal.runner  # noqa: F401

        rate(project, listing, args.items, root / "warm.db", None)  # warm caches and the page cache
        port = free_port()
        scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, f"http://127.0.0.1:{port}/metrics"])
        on: list[tuple[float, float]] = []
        off: list[tuple[float, float]] = []
        try:
            for round_ in range(args.repeat):
                first_on = round_ % 2 == 0
                for metrics in (first_on, not first_on):
                    figure = rate(project, listing, args.items, root / "bench.db", port if metrics else None)
                    (on if metrics else off).append(figure)
                print(
                    f"round {round_ + 1}: metrics on {on[-1][0]:,.0f} items/s ({on[-1][1]:.3f} CPU s per 10k), "
                    f"off {off[-1][0]:,.0f} items/s ({off[-1][1]:.3f})",
                    flush=True,
                )
        finally:
            scraper.kill()
            scraper.wait()
    with_metrics, without = statistics.median(r for r, _ in on), statistics.median(r for r, _ in off)
    cpu_on, cpu_off = statistics.median(c for _, c in on), statistics.median(c for _, c in off)
    print(f"median: on {with_metrics:,.0f} items/s, off {without:,.0f} items/s, ratio {with_metrics / without:.3f}")
    print(f"coordinator CPU per 10k items (less sensitive to a busy machine): on {cpu_on:.3f} s, off {cpu_off:.3f} s")
    figures = {
        "items_per_s_on": round(with_metrics),
        "items_per_s_off": round(without),
        "overhead_ratio": round(with_metrics / without, 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
