"""The pipelines a server offers: the projects given with --project, loaded once, by name."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from shoal.errors import ConfigError, UnknownPipelineError
from shoal.project import Project, load_project


class Catalog:
    """Projects by pipeline name. A pipeline's code is read when the server starts: restart the
    server after changing it (jobs then record the new fingerprint)."""

    def __init__(self, projects: Sequence[Project] = ()) -> None:
        self._by_name: dict[str, Project] = {}
        for project in projects:
            name = project.pipeline.name
            if name in self._by_name:
                raise ConfigError(
                    f"two projects define pipeline {name!r}: {self._by_name[name].root} and {project.root}"
                )
            self._by_name[name] = project

    @classmethod
    def load(cls, folders: Sequence[Path]) -> Catalog:
        return cls([load_project(folder) for folder in folders])

    def __iter__(self) -> Iterator[Project]:
        return iter(sorted(self._by_name.values(), key=lambda p: p.pipeline.name))

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> Project:
        """The project of a pipeline; an unknown name raises an error listing the known ones."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownPipelineError(name, self.names) from None

    def for_job(self, pipeline: str, root: str) -> Project | None:
        """The project a recorded job ran, if this server still serves it from the same folder."""
        project = self._by_name.get(pipeline)
        return project if project is not None and str(project.root) == root else None
