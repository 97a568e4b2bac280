"""A project's requirements.txt installs into an environment of its own, wherever it is named from."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.environments import project_environment

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_a_project_named_by_a_relative_path_gets_its_requirements(home: Path) -> None:
    project = home / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("termcolor  # not in shoal's own environment\n")
    env = project_environment(Path("project"), cache=home / "envs")  # relative to the current folder
    assert env is not None
    assert env.parent == home / "envs"
    assert (env / "termcolor" / "__init__.py").is_file()
    assert project_environment(project, cache=home / "envs") == env  # the same file: the same environment
