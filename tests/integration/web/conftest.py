"""Fixtures for the API tests: small projects and a real server on a real engine."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

#: a pipeline that counts bytes, fails files whose name holds "bad", and writes an artifact
TOOLS = """
import time
import shoal

pipeline = shoal.Pipeline("{name}")

@pipeline.stage()
def measure(item):
    data = item.read_bytes()
    if "bad" in item.input.rsplit("/", 1)[-1]:
        raise shoal.ItemError(f"{{item.input}}: this file is bad on purpose", retry=False)
    time.sleep({sleep})
    item.write_artifact("copy.txt", data)
    return {{"bytes": len(data), "name": item.input.rsplit("/", 1)[-1]}}
"""


@pytest.fixture
def tool_project(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "tool", sleep: float = 0.0) -> Path:
        folder = tmp_path / f"project-{name}"
        folder.mkdir()
        (folder / "pipeline.py").write_text(TOOLS.format(name=name, sleep=sleep))
        return folder

    return make


@pytest.fixture
def files(tmp_path: Path) -> Callable[..., Path]:
    """A folder of ``n`` small text files, ``bad`` of them failing in the tool pipeline."""

    def make(n: int, bad: int = 0, name: str = "files") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for i in range(n):
            (folder / f"{'bad' if i < bad else 'file'}-{i:03d}.txt").write_text("x" * (i + 1))
        return folder

    return make


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away database on the PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth)."""
    import psycopg

    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    name = f"shoal_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
