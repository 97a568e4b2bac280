"""Pipeline and Stage: what a user declares in a project's pipeline.py.

A stage is a function or a class. A class may define ``setup()`` (run once per worker process:
load models there) and ``teardown()``; its ``process()`` does the work. With ``batch_size=None``
a stage takes one Item and returns one result; with ``batch_size=N`` it takes a list of up to N
items and returns a list of the same length, where an entry may be an exception instance to fail
just that item.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from shoal.errors import PipelineDefinitionError

T = TypeVar("T")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Stage:
    """One declared step of a pipeline."""

    name: str
    target: Any  #: the decorated function or class
    batch_size: int | None

    @property
    def is_class(self) -> bool:
        return isinstance(self.target, type)

    def bind(self) -> BoundStage:
        """Make the per-process callable; classes are instantiated (not yet set up)."""
        if self.is_class:
            instance = self.target()
            return BoundStage(self, instance.process, instance)
        return BoundStage(self, self.target, None)


@dataclass
class BoundStage:
    """A stage ready to run inside one worker process."""

    stage: Stage
    call: Callable[[Any], Any]
    instance: Any

    def setup(self) -> None:
        hook = getattr(self.instance, "setup", None)
        if hook is not None:
            hook()

    def teardown(self) -> None:
        hook = getattr(self.instance, "teardown", None)
        if hook is not None:
            hook()


class Pipeline:
    """A named, ordered list of stages; one per project."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise PipelineDefinitionError(f"pipeline name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        self.name = name
        self.stages: list[Stage] = []

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, stages={[s.name for s in self.stages]})"

    def stage(self, *, batch_size: int | None = None, name: str | None = None) -> Callable[[T], T]:
        """Declare a stage; returns the function or class unchanged."""
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise PipelineDefinitionError(f"batch_size must be a positive integer, not {batch_size!r}")

        def register(target: T) -> T:
            self._add(Stage(name or str(getattr(target, "__name__", "")), target, batch_size))
            return target

        return register

    def _add(self, stage: Stage) -> None:
        if not _NAME.match(stage.name):
            raise PipelineDefinitionError(
                f"stage name {stage.name!r} is not a valid name: use letters, digits, '.', '_', '-', or pass name="
            )
        if any(s.name == stage.name for s in self.stages):
            raise PipelineDefinitionError(f"pipeline {self.name!r} already has a stage named {stage.name!r}")
        if stage.is_class and not callable(getattr(stage.target, "process", None)):
            raise PipelineDefinitionError(f"stage class {stage.name!r} needs a process() method")
        if not stage.is_class and not callable(stage.target):
            raise PipelineDefinitionError(f"stage {stage.name!r} is neither a function nor a class")
        self.stages.append(stage)

    @property
    def group_size(self) -> int:
        """Items a worker moves through all stages together: the largest batch size."""
        return max((s.batch_size or 1 for s in self.stages), default=1)
