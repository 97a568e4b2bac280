"""What a code bundle costs a worker: publishing, then the first fetch of a new version.

    python bench/bundles.py [--project examples/faces] [--broker redis://127.0.0.1:6379/9] [--rounds 20]

For the project: make (hash, archive, sign) and publish its bundle to Redis, then, as a worker
seeing the fingerprint for the first time, fetch it, check the signature and the files' hash,
and unpack it into an empty cache (requirements are left out: their install time is the
package index's, not shoal's). The baseline, measured in the same run, is copying the project's
code files to a fresh folder with shutil, what a worker would do with a shared disk. The
medians of --rounds and their ratios are printed; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from shoal.bundle_store import RedisBundles
from shoal.bundles import make_bundle, open_bundle
from shoal.project import code_files, load_project

KEY = b"bench-cluster-key-0123456789abcdef"


def median_seconds(action: Callable[[int], object], rounds: int) -> float:
    times = []
    for round_ in range(rounds):
        started = time.perf_counter()
        action(round_)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="examples/faces")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    project = load_project(args.project)
    store = RedisBundles(args.broker)
    work = Path(tempfile.mkdtemp(prefix="shoal-bench-bundles-"))
    try:
        blob = make_bundle(project, KEY)

        def publish(_: int) -> None:
            store._redis.delete(f"shoal:bundle:{project.fingerprint}")  # each round a new version to the store
            store.put(project.fingerprint, make_bundle(project, KEY))

        def fetch(round_: int) -> None:
            found = store.get(project.fingerprint)
            assert found is not None
            open_bundle(found, KEY, project.fingerprint, work / f"fetched-{round_}")

        def copy(round_: int) -> None:
            for path in code_files(project.root, project.config):
                target = work / f"copied-{round_}" / path.relative_to(project.root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)

        figures = {
            "project": str(project.root),
            "files": len(code_files(project.root, project.config)),
            "bundle_kib": round(len(blob) / 1024, 1),
            "publish_s": median_seconds(publish, args.rounds),
            "fetch_s": median_seconds(fetch, args.rounds),
            "copy_s": median_seconds(copy, args.rounds),
        }
        figures["fetch_over_copy"] = round(figures["fetch_s"] / figures["copy_s"], 2)
        for name in ("publish_s", "fetch_s", "copy_s"):
            figures[name] = round(figures[name], 5)
        print(f"{figures['project']}: {figures['files']} files, bundle {figures['bundle_kib']} KiB")
        print(f"publish {figures['publish_s'] * 1000:.2f} ms, first fetch (get, verify, unpack) "
              f"{figures['fetch_s'] * 1000:.2f} ms, shared-disk copy {figures['copy_s'] * 1000:.2f} ms: "
              f"fetch/copy {figures['fetch_over_copy']}")  # fmt: skip
        print(json.dumps(figures))
    finally:
        store.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
