"""A project's requirements, installed once per distinct requirements file into a cached folder.

Never into the running environment: two projects may pin different versions (one needs numpy<2,
the next numpy 2), and a bad pin must not break shoal itself. ``uv pip install --target`` puts
the packages in a folder of their own, which the worker's processes put first on their path, so
the project's pins win over what shoal itself has. A local run installs a project's file only
when this environment does not already meet it. The folder appears whole or not at all (built
beside it, then renamed), under a file lock, so workers sharing a cache folder install each file
once.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import BinaryIO

from shoal.errors import BundleError, MissingDependencyError, ProjectError

log = logging.getLogger(__name__)
INSTALL_TIMEOUT_S = 1800.0
REQUIREMENTS = "requirements.txt"
COMPLETE = ".complete"  #: written last: a folder without it is an install that did not finish


def envs_root() -> Path:
    """Where installed requirements are kept: ``SHOAL_ENVS``, else this user's cache folder. A
    cache, not data: keyed by the requirements' hash, shared by every shoal home and project."""
    if found := os.environ.get("SHOAL_ENVS"):
        return Path(found).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("shoal")) / "envs"


def project_environment(folder: Path, cache: Path | None = None) -> Path | None:
    """The folder a local run's worker processes import first for the project in ``folder``: None
    when it has no requirements.txt or this environment already satisfies it, else its installed
    requirements (installed on first use, with this machine's pip settings, under ``cache``,
    by default `envs_root`)."""
    cache = cache or envs_root()
    requirements = folder / REQUIREMENTS
    if not requirements.is_file() or satisfied(requirements):
        return None
    try:
        target, held = requirements_env(requirements, cache, label=str(requirements), where="here")
    except BundleError as exc:
        raise ProjectError(str(exc)) from None
    held.close()  # a local run trims nothing: nothing to hold off
    return target


def satisfied(requirements: Path) -> bool:
    """Every line of ``requirements`` is a plain requirement this environment already meets (a
    path, URL or option line never is: only installing it tells)."""
    from packaging.requirements import InvalidRequirement, Requirement

    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        try:
            wanted = Requirement(line)
        except InvalidRequirement:
            return False
        if wanted.url:
            return False
        if wanted.marker is not None and not wanted.marker.evaluate():
            continue  # not for this platform
        try:
            have = metadata.version(wanted.name)
        except metadata.PackageNotFoundError:
            return False
        if not wanted.specifier.contains(have, prereleases=True):
            return False
    return True


def requirements_env(
    requirements: Path, cache: Path, *, label: str, wheels: str | None = None, where: str = "on this worker"
) -> tuple[Path, BinaryIO]:
    """The folder holding ``requirements``' packages for this worker's Python, installed if new;
    from the folder of ``wheels`` alone when given (hosts with no way to a package index). With it
    comes a hold on the folder (see `hold`): close it once no process imports from there."""
    python = "".join(platform.python_version_tuple()[:2])
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    target = cache / f"py{python}-{digest}"
    cache.mkdir(parents=True, exist_ok=True)
    with locked(cache / f"{target.name}.lock"):
        if not (target / COMPLETE).exists():
            _install(requirements, target, label, wheels, where)
        os.utime(target)  # the least recently used go first when the cache is trimmed
        return target, hold(target)


def _install(requirements: Path, target: Path, label: str, wheels: str | None, where: str) -> None:
    try:
        from uv import find_uv_bin
    except ImportError:
        raise MissingDependencyError("uv", "celery") from None
    part = target.with_name(target.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    command = [find_uv_bin(), "pip", "install", "--target", str(part), "--python", sys.executable]
    if wheels:
        command += ["--no-index", "--find-links", wheels]
    started = time.monotonic()
    try:
        done = subprocess.run(
            [*command, "-r", str(requirements.resolve())],  # resolved: uv runs in the project's folder
            cwd=requirements.parent,  # paths in the file (wheels shipped in the project) are the project's
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            env={**pip_settings_for_uv(), **os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(part, ignore_errors=True)
        raise BundleError(f"{label}: installing requirements.txt took over {INSTALL_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        shutil.rmtree(part, ignore_errors=True)
        message = (done.stderr or done.stdout).strip()[-3000:]
        raise BundleError(f"{label}: requirements.txt does not install {where}:\n{message}")
    (part / COMPLETE).write_text(requirements.read_text(encoding="utf-8"))
    part.rename(target)
    log.info("installed the requirements of %s into %s in %.1f s", label, target, time.monotonic() - started)


def pip_settings_for_uv() -> dict[str, str]:
    """This machine's pip settings (extra indexes, local wheel folders, constraints) as uv's
    variables: uv reads no pip.conf, and a machine that keeps, say, a CPU build of torch in a
    local folder for pip must hand it to uv too. Variables already set win."""
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found: dict[str, str] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        found[key.rsplit(".", 1)[-1]] = value.strip().strip("'\"")
    names = {
        "index-url": "UV_DEFAULT_INDEX",
        "extra-index-url": "UV_INDEX",
        "find-links": "UV_FIND_LINKS",
        "constraint": "UV_CONSTRAINT",
    }
    settings = {names[key]: " ".join(value.split()) for key, value in found.items() if key in names and value}
    if "UV_FIND_LINKS" in settings:
        settings["UV_FIND_LINKS"] = ",".join(settings["UV_FIND_LINKS"].split())
    if "UV_INDEX" in settings or "UV_FIND_LINKS" in settings:
        settings["UV_INDEX_STRATEGY"] = "unsafe-best-match"  # as pip: the best version of all places
    return settings


def hold(folder: Path) -> BinaryIO:
    """A shared lock on ``<folder>.use`` for as long as the returned file is open: a folder some
    worker's processes run from is never trimmed, whichever worker sharing the cache trims."""
    handle = open(folder.with_name(folder.name + ".use"), "a+b")  # noqa: SIM115 (held beyond this call)
    fcntl.flock(handle, fcntl.LOCK_SH)
    return handle


def unused(folder: Path) -> bool:
    """No worker holds ``folder`` (see `hold`); call it with the folder's `locked` lock held."""
    with open(folder.with_name(folder.name + ".use"), "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` held across processes (every worker on a host shares it)."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
