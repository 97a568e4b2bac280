"""Deploy by ``git push``: a bare repository whose post-receive hook checks and rolls out each push.

``shoal deploy init DIR`` makes the repository. On every push to the deploy branch (``main`` or
``master``; ``git config shoal.branch NAME`` picks another) the hook extracts the pushed commit
into a folder of its own and imports the pipeline; then one check process, with the project's
requirements.txt environment first on its path, runs every stage's ``setup()`` and a throw-away
run (a ledger and run folder of its own, so the user's jobs stay as they were) over the golden
set and the first sample inputs. The hook then registers the version and rolls it out as
``[deploy]`` in shoal.toml says. Each step is printed as it happens, so ``git push`` shows it as
``remote: shoal: ...``. A post-receive hook cannot refuse a push that git already took, so a
version failing a step is simply never registered nor rolled out: production stays as it was and
the pusher reads why. Pushes are deployed one at a time (a lock in the repository).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shoal.errors import ConfigError, ShoalError

if TYPE_CHECKING:
    from shoal.registry import ModelVersion
    from shoal.store.ledger import Ledger

HOOK_MARK = "# written by `shoal deploy init`"
DEFAULT_BRANCHES = ("main", "master")
NO_COMMIT = "0" * 40
GOLDEN_ID = "golden-{:05d}"  #: the ids the golden rows run under, apart from the sample's items
FILE_COLUMNS = ("uri", "url", "path", "file")
CHECK_MARK = "@shoal-check "  #: starts the check process's messages, apart from what stages print
ITEM_COLUMNS = ("id", "input", "status", "result", "error_stage", "error_type", "error_message")
Say = Callable[[str], None]


class DeployError(ShoalError):
    """Raised when a pushed version fails a step of its deploy: nothing is registered or rolled out."""

    def __init__(self, step: str, why: str) -> None:
        super().__init__(f"deploy failed at {step}: {why}")
        self.step, self.why = step, why


class DeploySettings(BaseModel):
    """The ``[deploy]`` table of the pushed shoal.toml, with push options (``git push -o
    rollout=canary``) over it."""

    model_config = ConfigDict(extra="forbid")

    sample: list[str] = Field(default_factory=list)  #: inputs of the smoke run [default: [run] inputs]
    sample_limit: int = Field(20, ge=1)  #: the smoke run takes the first N sample inputs
    golden: str | None = None  #: a JSONL file of {"input": ..., "expected": {...}} rows
    golden_field: list[str] = Field(default_factory=list)  #: compared fields [default: each expected key]
    golden_threshold: float = Field(1.0, ge=0, le=1)  #: the share of golden rows that must match
    golden_tolerance: float = Field(0.0, ge=0)  #: numbers this close (absolutely) match
    rollout: Literal["production", "canary", "shadow"] = "production"
    canary: float = 0.1  #: the canary's share of traffic ("10%" or 0.1)
    auto_promote: bool = False
    min_samples: int = Field(50, ge=1)
    max_error_rate: float = Field(0.02, ge=0, le=1)
    max_p99_ms: float | None = Field(None, gt=0)
    max_disagreement: float = Field(0.05, ge=0, le=1)
    timeout: float = Field(600.0, gt=0)  #: seconds setup() and the smoke run may each take
    workers: int = Field(1, ge=1, le=64)  #: worker processes of the smoke run

    @field_validator("sample", "golden_field", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("canary", mode="before")
    @classmethod
    def _share(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                value = float(value.strip()[:-1]) / 100
            except ValueError:
                raise ValueError(f"{value!r} is not a share of traffic such as 10%") from None
        if isinstance(value, int | float) and not 0 < value <= 1:
            raise ValueError("a share of traffic is more than 0% and at most 100%")
        return value

    @classmethod
    def of(cls, config: dict[str, Any], options: dict[str, str], root: Path) -> DeploySettings:
        """The settings; without a sample, the [run] inputs that came with the commit (data kept
        out of git is no sample)."""
        table = {**config.get("deploy", {}), **options}
        if "sample" not in table:
            given = [str(uri) for uri in config.get("run", {}).get("inputs", [])]
            table["sample"] = [uri for uri in given if "://" in uri or (root / uri).exists()]
        try:
            return cls.model_validate(table)
        except ValidationError as exc:
            problems = "; ".join(_problem(e) for e in exc.errors())
            raise ConfigError(f"shoal.toml [deploy] (or a push option): {problems}") from None

    def guardrails(self) -> dict[str, Any]:
        """The options a canary or shadow alias carries, as `shoal deploy --canary` records them."""
        keys = ("min_samples", "max_error_rate", "max_p99_ms", "max_disagreement", "auto_promote")
        return {key: getattr(self, key) for key in keys}


def _problem(error: Any) -> str:
    key = ".".join(map(str, error["loc"])) or "deploy"
    if error["type"] == "extra_forbidden":
        return f"unknown key {key!r} (known: {', '.join(DeploySettings.model_fields)})"
    return f"{key}: {error['msg']}"


@dataclass(frozen=True)
class Commit:
    sha: str
    ref: str
    subject: str
    author: str

    @property
    def short(self) -> str:
        return self.sha[:7]

    @property
    def source(self) -> str:
        """How the registry names where the version came from."""
        return f"{self.sha[:12]} {self.subject}".strip()


# --- the repository ------------------------------------------------------------------------------


def init_repository(
    folder: str | Path, *, db: str, branch: str | None = None, path: str | None = None, say: Say = print
) -> Path:
    """Make the bare repository (or renew the hook of one made before) and print how to push to it."""
    from shoal.settings import default_home
    from shoal.store import Ledger

    repo = Path(folder).expanduser().resolve()
    if repo.exists() and not repo.is_dir():
        raise ConfigError(f"{folder} is a file: name a new folder (or an empty one) for the repository")
    existing = repo.is_dir() and any(repo.iterdir())
    if existing and not _is_bare_repository(repo):
        raise ConfigError(f"{folder} is not empty and not a bare git repository: name a new or empty folder")
    if not existing:
        _git(None, "init", "--quiet", "--bare", "--initial-branch=main", str(repo))
    hook = repo / "hooks" / "post-receive"
    if hook.exists() and HOOK_MARK not in hook.read_text(encoding="utf-8", errors="replace"):
        raise ConfigError(f"{hook} is a hook shoal did not write: remove it (or merge it by hand), then run again")
    _git(repo, "config", "receive.advertisePushOptions", "true")  # git push -o rollout=canary
    if branch:
        _git(repo, "config", "shoal.branch", branch)
    if path:
        _git(repo, "config", "shoal.path", path.strip("/"))
    ledger = Ledger(db)  # made (or found) now: a URL that does not work fails here, not at the first push
    ledger.close()
    home = default_home()
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(_hook_script(db, home), encoding="utf-8")
    hook.chmod(0o700 if _has_password(db) else 0o755)  # a database password stays the owner's
    branches = branch or " or ".join(DEFAULT_BRANCHES)
    say(f"{'renewed the hook of' if existing else 'made'} bare repository {repo}")
    say(f"  pushes to {branches} are checked, registered and rolled out (hooks/post-receive)")
    say(f"  ledger {ledger.safe_url}, versions in {home / 'versions'}")
    say("add it as a remote of a project's repository and push:")
    say(f"  git remote add shoal {repo}        # from another machine: ssh://HOST{repo}")
    say("  git push shoal main")
    return repo


def _hook_script(db: str, home: Path) -> str:
    """The post-receive hook: this interpreter by its absolute path, so the hook works whatever
    PATH git gives it, and this shoal home, so versions land where the server looks."""
    command = f"{shlex.quote(sys.executable)} -m shoal.git_deploy receive --db {shlex.quote(db)}"
    return f"#!/bin/sh\n{HOOK_MARK}: deploy every push\nSHOAL_HOME={shlex.quote(str(home))} exec {command}\n"


def _is_bare_repository(folder: Path) -> bool:
    try:
        return _git(folder, "rev-parse", "--is-bare-repository").strip() == "true"
    except ConfigError:
        return False


def _has_password(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password is not None
    except Exception:  # not a URL SQLAlchemy reads: the ledger says so when opened
        return False


def _git(repo: Path | None, *args: str) -> str:
    """Run git (on ``repo``, a bare repository) and return what it printed; a failure is a ConfigError."""
    where = ["--git-dir", str(repo)] if repo is not None else []
    try:
        done = subprocess.run(["git", *where, *args], capture_output=True, text=True, env=_clean_env())
    except FileNotFoundError:
        raise ConfigError("git is not installed: shoal deploy by push needs it") from None
    if done.returncode != 0:
        raise ConfigError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without git's hook variables (GIT_DIR, ...), which would send a child's
    git at the deploy repository, and without SHOAL_* run settings other than the shoal home."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    keep = {k: v for k, v in keep.items() if not k.startswith("SHOAL_") or k == "SHOAL_HOME"}
    return {**keep, **extra}


# --- receiving a push ----------------------------------------------------------------------------


def receive(repo: Path, updates: list[tuple[str, str, str]], *, db: str, say: Say) -> int:
    """Deploy the pushed commit of each updated deploy branch; 0 when all went out, else 1."""
    branches = _branches(repo)
    path = _git_config(repo, "shoal.path")
    options = _push_options()
    failed = 0
    for _old, new, ref in updates:
        name = ref.removeprefix("refs/heads/")
        if not ref.startswith("refs/heads/") or name not in branches:
            say(f"{ref}: not deployed (pushes to {' or '.join(branches)} are)")
            continue
        if new == NO_COMMIT:
            say(f"{name} was deleted: nothing deployed, production unchanged")
            continue
        with _one_at_a_time(repo, say):
            failed += deploy(repo, _commit(repo, new, ref), db=db, path=path, options=options, say=say) != 0
    return 1 if failed else 0


def deploy(repo: Path, commit: Commit, *, db: str, path: str | None, options: dict[str, str], say: Say) -> int:
    """Check, register and roll out one commit; say each step, and why it stopped if it did."""
    from shoal import registry
    from shoal.project import load_project
    from shoal.store import Ledger

    say(f"deploying {commit.short} {commit.subject!r} ({commit.ref.removeprefix('refs/heads/')})")
    ledger = Ledger(db)
    work = Path(tempfile.mkdtemp(prefix=f"shoal-deploy-{commit.short}-"))
    pipeline: str | None = None
    try:
        code = _checkout(repo, commit, path, work / "code", say)
        project = _step("importing pipeline", lambda: load_project(code))
        pipeline = project.pipeline.name
        say(f"importing pipeline ... ok: {pipeline!r}, version {project.fingerprint}")
        settings = _step("reading [deploy]", lambda: DeploySettings.of(project.config, options, code))
        metrics: dict[str, Any] = {}  #: what the checks measured, kept with the version
        _check(code, work, settings, metrics, say)
        record = _step(
            "registering",
            lambda: registry.register(ledger, code, source=commit.source, by=_pusher(commit), metrics=metrics),
        )
        say(f"registered version {record.version} of {record.pipeline}")
        _step("rolling out", lambda: say(roll_out(ledger, record, settings, by=_pusher(commit), detail=commit.source)))
        return 0
    except DeployError as exc:
        say(str(exc))
        say(_unchanged(ledger, pipeline))
        return 1
    finally:
        ledger.close()
        shutil.rmtree(work, ignore_errors=True)


def roll_out(
    ledger: Ledger, record: ModelVersion, settings: DeploySettings, *, by: str | None, detail: str | None
) -> str:
    """Point production (or the canary or shadow alias, with its guardrails) at a registered
    version, as `shoal deploy` does; a first version goes straight to production, since a trial
    needs something to be compared with. Returns the line that says what changed."""
    from shoal import registry

    name, version = record.pipeline, record.version
    production = registry.aliases(ledger, name).get(registry.PRODUCTION)
    if settings.rollout == "production" or production is None:
        if production is not None and production.version == version:
            return f"production is {version} already: nothing changed"
        first = (
            " (its first version: a trial needs a production to compare with)"
            if settings.rollout != "production"
            else ""
        )
        alias = registry.promote(ledger, name, version, by=by, detail=detail)
        return f"production is {alias.version} (was {alias.previous or 'none'}){first}"
    if production.version == version:
        return f"{version} is production already: no {settings.rollout} started"
    guard = settings.guardrails()
    if settings.rollout == "canary":
        share = settings.canary
        registry.set_alias(
            ledger, name, registry.CANARY, version, by=by, weight=share, options=guard, kind="canary",
            detail=f"{share:.0%} of traffic",
        )  # fmt: skip
        return f"canary is {version} with {share:.0%} of traffic (production stays {production.version})"
    registry.set_alias(ledger, name, registry.SHADOW, version, by=by, options=guard, kind="shadow", detail=detail)
    return f"shadow is {version}: it sees a copy of traffic (production stays {production.version})"


def _unchanged(ledger: Ledger, pipeline: str | None) -> str:
    from shoal import registry

    if pipeline is None:
        return "nothing was registered or rolled out: production is as it was"
    production = registry.aliases(ledger, pipeline).get(registry.PRODUCTION)
    if production is None:
        return f"nothing was registered or rolled out; {pipeline} has no production version yet"
    return f"nothing was registered or rolled out; production is still {production.version}"


def _step(name: str, action: Callable[[], Any]) -> Any:
    """Run a step; any error it raises becomes a DeployError naming the step."""
    try:
        return action()
    except DeployError:
        raise
    except Exception as exc:
        why = str(exc) if isinstance(exc, ShoalError) else f"{type(exc).__name__}: {exc}"
        raise DeployError(name, why) from exc


def _checkout(repo: Path, commit: Commit, path: str | None, dest: Path, say: Say) -> Path:
    """The commit's files (or those under ``shoal.path``), extracted from `git archive`."""
    tree = f"{commit.sha}:{path}" if path else commit.sha
    say(f"checking out {commit.short}" + (f" ({path}/)" if path else ""))
    dest.mkdir(parents=True)
    process = subprocess.Popen(
        ["git", "--git-dir", str(repo), "archive", "--format=tar", tree],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_clean_env(),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
            archive.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        process.kill()
        raise DeployError("checkout", f"{type(exc).__name__}: {exc}") from exc
    finally:
        process.stdout.close()
        error = process.stderr.read().decode(errors="replace").strip()
        process.wait()
    if process.returncode != 0:
        raise DeployError("checkout", error or f"git archive exited {process.returncode}")
    return dest


def _check(code: Path, work: Path, settings: DeploySettings, metrics: dict[str, Any], say: Say) -> None:
    """Every stage's setup(), then the smoke run (the first sample inputs) and the golden set in
    one throw-away run, all in a process of its own with the project's requirements: what a
    worker or a serving replica does. A failed sample input fails the deploy; a golden row that
    fails counts as a mismatch."""
    golden = _golden_rows(code, settings) if settings.golden else []
    inputs = _inputs(code, work, settings, golden)
    command = [sys.executable, "-m", "shoal.git_deploy", "check", str(code), "--work", str(work)]
    command += ["--limit", str(len(golden) + settings.sample_limit), "--workers", str(settings.workers)]
    for uri in inputs:
        command += ["--input", uri]
    step, items = "setup()", None
    try:
        with contextlib.closing(
            _checking(command, _environment(code, say), work / "check.log", settings.timeout)
        ) as got:
            for message in got:
                if "why" in message:
                    raise _Stopped(message["why"])
                if "setup_s" in message:
                    metrics["setup_s"] = round(message["setup_s"], 3)
                    say(f"setup() ... ok ({message['setup_s']:.1f} s)")
                    step = "smoke run"
                if "items" in message:
                    items = RunOutcome.of(json.loads(Path(message["items"]).read_text()), message["run_s"])
    except _Stopped as exc:
        raise DeployError(step, str(exc)) from None
    if not inputs:
        say("smoke run: skipped: no [deploy] sample (nor [run] inputs in the commit) to run on")
    elif items is None:
        raise DeployError(step, f"the check stopped without a word: {_last_line(_tail(work / 'check.log'))}")
    else:
        if settings.sample:
            _judge_smoke(items, {row["id"] for row in golden}, metrics, say)
        if golden:
            _judge_golden(golden, items, settings, metrics, say)


def _inputs(code: Path, work: Path, settings: DeploySettings, golden: list[dict[str, Any]]) -> list[str]:
    """The golden rows first (as a table of their own), then the sample: the run's --limit then
    takes every golden row and the first sample inputs."""
    inputs = []
    if golden:
        table = work / "golden.jsonl"
        table.write_text("".join(json.dumps(row["row"]) + "\n" for row in golden), encoding="utf-8")
        inputs.append(str(table))
    for sample in settings.sample:
        if "://" in sample:
            inputs.append(sample)
        elif not (code / sample).exists():
            raise DeployError("smoke run", f"the sample {sample!r} is not in the commit")
        else:
            inputs.append(str(code / sample))
    return inputs


def _environment(code: Path, say: Say) -> dict[str, str]:
    """The check's environment: the project's requirements.txt installed (once per distinct file)
    and first on its path, as `shoal run` gives its workers."""
    from shoal.environments import REQUIREMENTS, project_environment

    if not (code / REQUIREMENTS).is_file():
        return _clean_env()
    env = _step(REQUIREMENTS, lambda: project_environment(code))
    say(f"{REQUIREMENTS} ... ok" + (f" (installed in {env})" if env else " (already met here)"))
    path = [str(env)] if env else []
    path += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return _clean_env(PYTHONPATH=os.pathsep.join(path))


class _Stopped(Exception):
    """The check process stopped: why, for the step it was at."""


def _checking(
    command: list[str], env: dict[str, str], log: Path, timeout: float
) -> Generator[dict[str, Any], None, None]:
    """The check process's messages as they come; it is stopped, workers and all, past the
    timeout or when the caller stops reading."""
    with log.open("w") as errors:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True
        )
    assert process.stdout is not None
    late = threading.Event()
    timer = threading.Timer(timeout, _kill_group, (process.pid, late))
    timer.start()
    try:
        for line in process.stdout:
            if line.startswith(CHECK_MARK):
                yield json.loads(line[len(CHECK_MARK) :])
        process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            _kill_group(process.pid)
        process.stdout.close()
        process.wait()
    if late.is_set():
        raise _Stopped(f"did not finish within {timeout:g} s ([deploy] timeout)")
    if process.returncode != 0:
        raise _Stopped(_last_line(_tail(log)) or f"the check exited {process.returncode}")


def _kill_group(pid: int, late: threading.Event | None = None) -> None:
    if late is not None:
        late.set()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _tail(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-4000:]
    except OSError:
        return ""


@dataclass(frozen=True)
class RunOutcome:
    results: dict[str, dict[str, Any]]  #: item id -> result
    errors: dict[str, dict[str, Any]]  #: item id -> its ledger row (input, error_stage, error_type, ...)
    seconds: float

    @classmethod
    def of(cls, items: list[dict[str, Any]], seconds: float) -> RunOutcome:
        done = {i["id"]: json.loads(i["result"] or "{}") for i in items if i["status"] == "succeeded"}
        return cls(done, {i["id"]: i for i in items if i["status"] == "failed"}, seconds)


def _judge_smoke(outcome: RunOutcome, golden: set[str], metrics: dict[str, Any], say: Say) -> None:
    ok = [i for i in outcome.results if i not in golden]
    failed = {i: e for i, e in outcome.errors.items() if i not in golden}
    total = len(ok) + len(failed)
    metrics["smoke"] = {"inputs": total, "failed": len(failed), "seconds": round(outcome.seconds, 2)}
    if total == 0:
        raise DeployError("smoke run", "the sample holds no inputs")
    if failed:
        shown = "; ".join(f"{e['input']}: {_error(e)}" for e in list(failed.values())[:3])
        raise DeployError("smoke run", f"{len(failed)} of {total} inputs failed: {shown}")
    say(f"smoke run: {total} of {total} inputs ok ({outcome.seconds:.1f} s)")


def _error(row: dict[str, Any]) -> str:
    stage = f" (stage {row['error_stage']})" if row.get("error_stage") else ""
    return f"{row.get('error_type') or 'Error'}: {row.get('error_message') or ''}{stage}"


# --- the golden set ------------------------------------------------------------------------------


def _golden_rows(code: Path, settings: DeploySettings) -> list[dict[str, Any]]:
    """The golden file's rows as inputs of their own (``golden-00001``...) with what each must give.

    A row is ``{"input": ..., "expected": {...}}``: ``input`` is a file (a path relative to the
    golden file, or a URL) or an object whose fields the stages get as ``item.meta`` (a ``uri``,
    ``url``, ``path`` or ``file`` field names a file, as in any JSONL input). Without ``input``,
    the row's other fields are the object. ``expected`` holds the result fields to compare.
    """
    assert settings.golden is not None
    path = code / settings.golden
    if not path.is_file():
        raise DeployError("golden set", f"[deploy] golden names {settings.golden!r}, which is not in the commit")
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{settings.golden}, line {number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DeployError("golden set", f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("expected"), dict):
            raise DeployError("golden set", f'{where}: expected {{"input": ..., "expected": {{...}}}}')
        given = raw["input"] if "input" in raw else {k: v for k, v in raw.items() if k != "expected"}
        fields = {"path": given} if isinstance(given, str) else given
        if not isinstance(fields, dict):
            raise DeployError("golden set", f"{where}: input is a file's path or an object of fields")
        fields = {k: _absolute(v, path.parent) if k in FILE_COLUMNS else v for k, v in fields.items()}
        key = GOLDEN_ID.format(len(rows) + 1)
        rows.append({"id": key, "line": number, "expected": raw["expected"], "row": {**fields, "id": key}})
    if not rows:
        raise DeployError("golden set", f"{settings.golden} holds no rows")
    return rows


def _absolute(value: Any, base: Path) -> Any:
    if not isinstance(value, str) or "://" in value or os.path.isabs(value):
        return value
    return str(base / value)


def _judge_golden(
    golden: list[dict[str, Any]], outcome: RunOutcome, settings: DeploySettings, metrics: dict[str, Any], say: Say
) -> None:
    misses: list[str] = []
    for row in golden:
        result = outcome.results.get(row["id"])
        if result is None:
            misses.append(f"line {row['line']}: failed: {_error(outcome.errors.get(row['id'], {}))}")
            continue
        for name in settings.golden_field or sorted(row["expected"]):
            want, got = _field(row["expected"], name), _field(result, name)
            if not _same(got, want, settings.golden_tolerance):
                misses.append(f"line {row['line']}: {name} is {_show(got)}, expected {_show(want)}")
                break
    matched, total = len(golden) - len(misses), len(golden)
    score = matched / total
    compared = ", ".join(settings.golden_field) or "every expected field"
    metrics["golden"] = {
        "rows": total, "matched": matched, "score": round(score, 4),
        "threshold": settings.golden_threshold, "fields": settings.golden_field or None,
    }  # fmt: skip
    summary = f"{matched} of {total} rows match on {compared}"
    if score < settings.golden_threshold:
        shown = "; ".join(misses[:3])
        raise DeployError("golden set", f"{score:.2f} < {settings.golden_threshold:.2f} ({summary}): {shown}")
    say(f"golden set: {score:.2f} >= {settings.golden_threshold:.2f} ({summary})")


_MISSING = object()


def _field(record: dict[str, Any], name: str) -> Any:
    """``name`` in a result, ``a.b`` naming a field of a nested one."""
    if name in record:
        return record[name]
    value: Any = record
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _same(got: Any, want: Any, tolerance: float) -> bool:
    if _is_number(got) and _is_number(want):
        return math.isclose(got, want, rel_tol=0, abs_tol=tolerance)
    return got is not _MISSING and got == want


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    return "missing" if value is _MISSING else json.dumps(value)[:80]


# --- helpers -------------------------------------------------------------------------------------


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _commit(repo: Path, sha: str, ref: str) -> Commit:
    subject, author = _git(repo, "log", "-1", "--format=%s%x00%an <%ae>", sha).rstrip("\n").split("\0")
    return Commit(sha, ref, subject, author)


def _pusher(commit: Commit) -> str:
    """Who pushed, where the git server says (GitLab, Gitea, an authenticating web server),
    else the commit's author."""
    for name in ("GL_USERNAME", "GITEA_PUSHER_NAME", "REMOTE_USER"):
        if os.environ.get(name):
            return os.environ[name]
    return commit.author


def _branches(repo: Path) -> tuple[str, ...]:
    configured = _git_config(repo, "shoal.branch")
    return (configured,) if configured else DEFAULT_BRANCHES


def _git_config(repo: Path, key: str) -> str | None:
    try:
        return _git(repo, "config", "--get", key).strip() or None
    except ConfigError:  # not set
        return None


def _push_options() -> dict[str, str]:
    """``git push -o rollout=canary -o canary=25%``: [deploy] settings for this push only."""
    options = {}
    for index in range(int(os.environ.get("GIT_PUSH_OPTION_COUNT", "0") or 0)):
        key, _, value = os.environ.get(f"GIT_PUSH_OPTION_{index}", "").partition("=")
        if key:
            options[key.strip()] = value.strip() or "true"
    return options


@contextmanager
def _one_at_a_time(repo: Path, say: Say) -> Iterator[None]:
    with (repo / "shoal-deploy.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("waiting for the deploy of an earlier push to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _say(text: str) -> None:
    """One step, at once: git relays the hook's output to the pusher as it comes."""
    print(f"shoal: {text}", flush=True)


def _report(**message: Any) -> None:
    print(CHECK_MARK + json.dumps(message), flush=True)


def _check_here(project: str, work: Path, inputs: list[str], limit: int, workers: int) -> int:
    """`python -m shoal.git_deploy check`: run every stage's setup() (and teardown()) here, as a
    worker would, then the inputs in a throw-away run; report each step on stdout."""
    from shoal import runner
    from shoal.store import Ledger
    from shoal.worker.runtime import Runtime

    started = time.monotonic()
    try:
        Runtime.start(project).close()
    except Exception as exc:
        _report(why=_why(exc))
        return 1
    _report(setup_s=time.monotonic() - started)
    if not inputs:
        return 0
    db, started = f"sqlite:///{work / 'ledger.db'}", time.monotonic()
    try:
        done = runner.run(
            project, inputs, report=False, out=str(work / "run"), db_url=db, engine="local", new=True, retries=0,
            workers=workers, limit=limit, cache_url=str(work / "cache"),
        )  # fmt: skip
    except Exception as exc:
        _report(why=_why(exc))
        return 1
    ledger = Ledger(db)
    try:
        items = [dict(row) for row in ledger.iter_items(done.job_id, columns=ITEM_COLUMNS)]
    finally:
        ledger.close()
    (work / "items.json").write_text(json.dumps(items), encoding="utf-8")
    _report(items=str(work / "items.json"), run_s=time.monotonic() - started)
    return 0


def _why(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ShoalError) else f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shoal.git_deploy", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    receiving = commands.add_parser("receive", help="deploy the pushes git lists on stdin (the post-receive hook)")
    receiving.add_argument("--db", help="ledger URL [default: SHOAL_DB_URL, else the shoal home's]")
    receiving.add_argument("--repo", help="the bare repository [default: GIT_DIR, else this folder]")
    check = commands.add_parser("check", help="setup() and a throw-away run of a project (a step of receive)")
    check.add_argument("project")
    check.add_argument("--work", type=Path, required=True, help="a folder for the run")
    check.add_argument("--input", action="append", default=[])
    check.add_argument("--limit", type=int, default=20)
    check.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "check":
        return _check_here(args.project, args.work, args.input, args.limit, args.workers)
    from shoal.settings import default_db

    repo = Path(args.repo or os.environ.get("GIT_DIR") or ".").resolve()
    db = args.db or os.environ.get("SHOAL_DB_URL") or default_db()
    updates = [(f[0], f[1], f[2]) for f in (line.split() for line in sys.stdin) if len(f) >= 3]
    try:
        return receive(repo, updates, db=db, say=_say)
    except ShoalError as exc:
        _say(f"deploy failed: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
