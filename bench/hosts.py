"""Two worker hosts against one: items/s of the same job on separate hosts (network namespaces).

    sudo python bench/hosts.py [--items 400] [--work-ms 20]

The broker (Redis), the coordinator and each worker run in network namespaces of their own,
joined by a bridge, so every message crosses a network. Workers are `shoal worker` without a
project (code bundles) with one process each. The job: --items items of about --work-ms of
pure-Python work. First one worker host runs it, then, with a second host's worker started, a
new job of the same size runs on both. Items/s counts from the first item's start to the last
item's end (results.jsonl), so start-up is not in it. The baseline is the one-host run, measured
in the same run; on this 2-core machine both hosts share the cores, so 2x is the ceiling. The
last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the namespace helper the tests use

from tests.netns import Network, wait_for_line  # noqa: E402

WORK = """
import time
import shoal

pipeline = shoal.Pipeline("spin")

@pipeline.stage()
def spin(item):
    end, n = time.process_time() + {seconds}, 0
    while time.process_time() < end:
        n += 1
    return {{"n": n}}
"""


def items_per_second(out: Path) -> float:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    starts = [datetime.fromisoformat(r["started"].replace("Z", "+00:00")) for r in rows]
    ends = [datetime.fromisoformat(r["finished"].replace("Z", "+00:00")) for r in rows]
    return len(rows) / (max(ends) - min(starts)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--work-ms", type=float, default=20.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shoal-bench-hosts-"))
    (work / "spin").mkdir()
    (work / "spin" / "pipeline.py").write_text(WORK.format(seconds=args.work_ms / 1000))
    listing = work / "items.txt"
    (work / "items").mkdir()
    for i in range(args.items):
        (work / "items" / f"{i}.txt").write_text(f"{i}\n")
    listing.write_text("".join(f"{work / 'items' / f'{i}.txt'}\n" for i in range(args.items)))
    net = Network()
    try:
        env = {**os.environ, "SHOAL_BROKER_URL": net.start_redis(work / "redis.log"), "SHOAL_HOME": str(work / "home")}
        env["SHOAL_CLUSTER_KEY"] = "bench-key-0123456789abcdef"
        figures: dict[str, float] = {}
        for hosts in (1, 2):
            host = f"worker{hosts}"
            folder = work / host
            folder.mkdir()
            command = [sys.executable, "-m", "shoal", "worker", "--concurrency", "1", "--cache", str(folder / "cache")]
            worker = net.start(host, command, work / f"{host}.log", env=env, cwd=folder)
            wait_for_line(work / f"{host}.log", b" ready.", worker)
            out = work / f"run-{hosts}"
            run = [sys.executable, "-m", "shoal", "run", str(work / "spin"), "-i", str(listing), "--out", str(out)]
            run.append("--new")
            coordinator = net.start("coordinator", run, work / f"coordinator-{hosts}.log", env=env, cwd=work)
            if coordinator.wait(600) != 0:
                raise SystemExit((work / f"coordinator-{hosts}.log").read_text()[-3000:])
            figures[f"items_per_s_{hosts}_host{'s' if hosts > 1 else ''}"] = round(items_per_second(out), 2)
        figures["two_over_one"] = round(figures["items_per_s_2_hosts"] / figures["items_per_s_1_host"], 2)
        print(f"{args.items} items of {args.work_ms:g} ms: one worker host {figures['items_per_s_1_host']} items/s, "
              f"two hosts {figures['items_per_s_2_hosts']} items/s ({figures['two_over_one']}x)")  # fmt: skip
        print(json.dumps(figures))
    finally:
        net.close()


if __name__ == "__main__":
    main()
