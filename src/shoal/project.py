"""A project folder: pipeline.py, optional shoal.toml and requirements.txt, and its fingerprint.

The fingerprint is a hash of the project's code and configuration: every ``*.py``,
``shoal.toml`` and ``requirements*.txt`` file, and any glob listed under ``[project] include`` in
shoal.toml, anywhere in the project folder except where code of the project cannot be: hidden
folders, ``__pycache__``, virtual environments (a folder holding ``pyvenv.cfg``), ``node_modules``
and ``site-packages``, what shoal itself writes (``shoal-runs``, a folder holding a ``ledger.db``
or a run's ``job.json``), the inputs named in ``[run] inputs``, and globs under
``[project] exclude``. Data files do not count, so adding inputs next to the code does not make a
new job; a subpackage that happens to be called ``data`` does.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from shoal.errors import ProjectError
from shoal.pipeline import Pipeline

PIPELINE_FILE = "pipeline.py"
CONFIG_FILE = "shoal.toml"
_SCRIPT = re.compile(r"^(?P<file>.+\.py):(?P<function>[A-Za-z_]\w*)$")  #: script.py:main
_SKIP_DIRS = {"__pycache__", "shoal-runs", "node_modules", "site-packages"}
_NOT_CODE_MARKS = ("pyvenv.cfg", "ledger.db", "job.json")  #: a folder holding one is no code of the project
_CODE_GLOBS = ("*.py", CONFIG_FILE, "requirements*.txt")


@dataclass(frozen=True)
class Project:
    """A loaded project: its pipeline object, fingerprint and shoal.toml contents."""

    root: Path
    pipeline: Pipeline
    fingerprint: str
    config: dict[str, Any] = field(default_factory=dict)
    entry: str | None = None  #: "script.py:main": a script's function run on each input, no pipeline.py

    @property
    def spec(self) -> str:
        """What load_project takes to load this project again, here or on a worker."""
        return str(self.root / self.entry) if self.entry else str(self.root)


def load_project(root: str | Path) -> Project:
    """Import a project's pipeline.py and find its Pipeline, or (given ``script.py:function``) make
    a one-stage pipeline of a per-file script's function; errors name the file and the fix."""
    script = _SCRIPT.match(str(root))
    if script is not None:
        return _load_script(Path(script["file"]), script["function"])
    folder = locate(root)
    for _ in range(3):
        config = read_config(folder)
        before = code_stamp(folder, config)
        digest = fingerprint(folder, config)
        name = f"_shoal_project_{digest}"
        module = _import(folder / PIPELINE_FILE, name)
        if code_stamp(folder, read_config(folder)) == before:
            return Project(folder, _find_pipeline(module, folder), digest, config)
        del sys.modules[name]  # the code changed while it was hashed or imported: it may not be `digest`
    raise ProjectError(f"{folder} keeps changing while it is loaded: try again once the edit is saved")


def _load_script(path: Path, function: str) -> Project:
    """An existing script with one function per input file (``def main(path) -> dict``), unchanged:
    its folder is the project (fingerprint, requirements.txt, shoal.toml), the function its stage.
    Only the workers import it: its imports may need requirements this process does not have."""
    file = path.expanduser().resolve()
    if not file.is_file():
        raise ProjectError(f"no script at {path}: expected FILE.py:FUNCTION, e.g. analyse.py:main")
    folder = file.parent
    for _ in range(3):
        config = read_config(folder)
        before = code_stamp(folder, config)
        digest = fingerprint(folder, config)
        _check_defines(file, function)
        if code_stamp(folder, read_config(folder)) == before:
            pipeline = _script_pipeline(file, f"_shoal_script_{digest}_{file.stem}", function)
            return Project(folder, pipeline, digest, config, f"{file.name}:{function}")
    raise ProjectError(f"{file} keeps changing while it is loaded: try again once the edit is saved")


def _check_defines(file: Path, function: str) -> None:
    """The script parses and defines ``function`` at its top level (read, not run)."""
    try:
        tree = ast.parse(file.read_bytes(), str(file))
    except SyntaxError as exc:
        raise ProjectError(f"{file}, line {exc.lineno}: syntax error: {exc.msg}") from None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    if function not in names:
        raise ProjectError(f"{file} defines no function {function!r} to run on each input file")


def _script_pipeline(file: Path, module_name: str, function: str) -> Pipeline:
    """A per-file function as a one-stage pipeline: it gets each input's local path, its return
    value is the item's result (a bare value is kept under the function's name). The script is
    imported once per worker process, in setup(), so an import that fails stops the workers with
    its reason instead of failing every item."""
    from shoal.item import Item

    class Script:
        target: Callable[[str], Any]

        def setup(self) -> None:
            target = getattr(_import(file, module_name), function, None)
            if not callable(target):
                raise ProjectError(f"{file} defines no function {function!r} to run on each input file")
            self.target = target

        def process(self, item: Item) -> Any:
            return self.target(str(item.path))

    pipeline = Pipeline(re.sub(r"[^A-Za-z0-9_.-]", "-", file.stem))
    pipeline.stage(name=function)(Script)
    return pipeline


def is_script(spec: str | Path) -> bool:
    """Whether ``spec`` names a script's function (``script.py:main``) rather than a project folder."""
    return _SCRIPT.match(str(spec)) is not None


def folder_of(spec: str | Path) -> Path:
    """The project folder ``spec`` names: a script's folder, or what `locate` finds."""
    script = _SCRIPT.match(str(spec))
    return Path(script["file"]).expanduser().resolve().parent if script else locate(spec)


def locate(root: str | Path) -> Path:
    """A project's folder: the folder given, or the one holding the pipeline.py given."""
    folder = Path(root).expanduser().resolve()
    if folder.is_file() and folder.name == PIPELINE_FILE:
        return folder.parent
    if folder.is_file():
        raise ProjectError(
            f"{root} is a file: pass the project's folder, the one holding {PIPELINE_FILE}, or a script's "
            f"function to run on each input file as {root}:FUNCTION"
        )
    if not folder.is_dir():
        raise ProjectError(f"no project at {root}: expected a folder holding {PIPELINE_FILE}")
    if not (folder / PIPELINE_FILE).is_file():
        raise ProjectError(f"{root} has no {PIPELINE_FILE}: a project is a folder with one")
    return folder


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(f"{path}: not valid TOML: {exc}") from None


def fingerprint(folder: Path, config: dict[str, Any] | None = None) -> str:
    """Hash of the project's code files: changes to code or settings make a new job."""
    return digest_files(code_contents(folder, config))


def code_contents(folder: Path, config: dict[str, Any] | None = None) -> Iterator[tuple[str, bytes]]:
    """(path relative to the folder, contents) of each file the fingerprint covers, in order."""
    for path in code_files(folder, config):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # deleted since the folder was listed: the folder without it
            continue
        yield path.relative_to(folder).as_posix(), data


def digest_files(files: Iterable[tuple[str, bytes]]) -> str:
    """The fingerprint of (relative path, contents) pairs given in code_files' order."""
    digest = hashlib.sha256()
    for name, data in files:
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


def code_files(folder: Path, config: dict[str, Any] | None = None) -> list[Path]:
    """The files the fingerprint covers, in a stable order."""
    config = config or {}
    table = config.get("project", {})
    patterns = (*_CODE_GLOBS, *table.get("include", []), *table.get("models", []))  # model files: the version too
    inputs = [str(v) for v in config.get("run", {}).get("inputs", []) if "://" not in str(v)]
    skip = tuple(os.path.normpath(v).rstrip("/") for v in inputs if not os.path.isabs(v))
    return _code_files(folder, patterns, skip + tuple(config.get("project", {}).get("exclude", [])))


Stamp = tuple[tuple[str, int, int], ...]


def code_stamp(folder: Path, config: dict[str, Any] | None = None) -> Stamp:
    """Names, sizes and modification times of the code files: a cheap test for a change."""
    stamp = []
    for path in code_files(folder, config):
        try:
            found = path.stat()
        except FileNotFoundError:  # deleted since the folder was listed
            continue
        stamp.append((str(path), found.st_size, found.st_mtime_ns))
    return tuple(stamp)


def _code_files(folder: Path, patterns: tuple[str, ...], skip: tuple[str, ...]) -> list[Path]:
    found = []
    for parent, dirs, files in os.walk(folder):
        rel = Path(parent).relative_to(folder)
        if rel.parts and any(mark in files for mark in _NOT_CODE_MARKS):
            dirs[:] = []
            continue
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".") and d not in _SKIP_DIRS and not any(fnmatch((rel / d).as_posix(), p) for p in skip)
        ]
        found += [
            Path(parent, f)
            for f in files
            if any(fnmatch(str(rel / f), p) or fnmatch(f, p) for p in patterns)
            and not any(fnmatch((rel / f).as_posix(), p) for p in skip)
            and os.path.isfile(os.path.join(parent, f))  # not an editor's dangling lock link (.#pipeline.py)
        ]
    return sorted(found)


def _import(path: Path, module_name: str) -> Any:
    if module_name in sys.modules:
        return sys.modules[module_name]
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so pipeline.py can import its sibling modules
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[module_name]
        raise ProjectError(f"{path}, line {exc.lineno}: syntax error: {exc.msg}") from exc
    except ModuleNotFoundError as exc:
        del sys.modules[module_name]
        hint = (
            f" (pip install -r {path.parent / 'requirements.txt'})"
            if (path.parent / "requirements.txt").exists()
            else ""
        )
        raise ProjectError(f"{path} imports {exc.name!r}, which is not installed{hint}") from exc
    except Exception as exc:
        del sys.modules[module_name]
        raise ProjectError(f"{path} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def _find_pipeline(module: Any, folder: Path) -> Pipeline:
    found = {name: value for name, value in vars(module).items() if isinstance(value, Pipeline)}
    if not found:
        raise ProjectError(f'{folder / PIPELINE_FILE} defines no pipeline: add `pipeline = shoal.Pipeline("name")`')
    if len(found) > 1 and "pipeline" not in found:
        raise ProjectError(
            f"{folder / PIPELINE_FILE} defines several pipelines ({', '.join(sorted(found))}); "
            "name the one to run `pipeline`"
        )
    pipeline = found.get("pipeline") or next(iter(found.values()))
    if not pipeline.stages:
        raise ProjectError(f"pipeline {pipeline.name!r} in {folder / PIPELINE_FILE} has no stages")
    return pipeline
