"""Pipeline and Stage: what a user declares in a project's pipeline.py.

A stage is a function or a class. A class may define ``setup()`` (run once per worker process:
load models there) and ``teardown()``; its ``process()`` does the work. With ``batch_size=None``
a stage takes one Item and returns one result; with ``batch_size=N`` it takes a list of up to N
items and returns a list of the same length, where an entry may be an exception instance to fail
just that item. ``sort_by`` (a function of an item giving its cost: text length, pixels) makes
batches of items of similar cost out of a read-ahead ``window`` of items (4 batches by default),
so a model that pads a batch to its largest member wastes little. ``cache=True`` reuses the
stage's result for an input whose bytes the same stage version has seen before (see
shoal.worker.cache).
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
    sort_by: Callable[[Any], float] | None = None  #: an item's cost; batches are cut from items sorted by it
    window: int | None = None  #: items read ahead to sort (sort_by); None: 4 batches
    cache: bool | str = False  #: reuse results by input content; a string is the version, else the code's

    @property
    def read_ahead(self) -> int:
        """Items a worker takes together for this stage: a sort window, else one batch."""
        if self.sort_by is not None:
            return self.window or 4 * (self.batch_size or 1)
        return self.batch_size or 1

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

    def stage(
        self,
        *,
        batch_size: int | None = None,
        name: str | None = None,
        sort_by: Callable[[Any], float] | None = None,
        window: int | None = None,
        cache: bool | str = False,
    ) -> Callable[[T], T]:
        """Declare a stage; returns the function or class unchanged."""
        for option, value in (("batch_size", batch_size), ("window", window)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise PipelineDefinitionError(f"{option} must be a positive integer, not {value!r}")
        if sort_by is not None and not callable(sort_by):
            raise PipelineDefinitionError(f"sort_by must be a function of an item giving its cost, not {sort_by!r}")
        if sort_by is not None and batch_size is None:
            raise PipelineDefinitionError("sort_by orders the items of batches: give the stage a batch_size too")
        if window is not None and batch_size is not None and window < batch_size:
            raise PipelineDefinitionError(f"window ({window}) must hold at least one batch ({batch_size})")
        if not isinstance(cache, bool | str) or cache == "":
            raise PipelineDefinitionError(f"cache must be True, False or a version name, not {cache!r}")

        def register(target: T) -> T:
            stage_name = name or str(getattr(target, "__name__", ""))
            self._add(Stage(stage_name, target, batch_size, sort_by, window, cache))
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

    finishers: tuple[Callable[..., None], ...] = ()  #: @finish functions, in the order declared

    def finish(self, target: T) -> T:
        """Declare a function called once a job's items have all run, to make the job's own outputs
        (segments joined, a summary): ``target(out, items)`` gets the run folder and the job's
        items in input order, as dicts read a page at a time (see shoal.finish). It runs where
        the job is run, without the project's requirements.txt. Returns ``target`` unchanged."""
        if not callable(target):
            raise PipelineDefinitionError(f"a finish function must be callable, not {target!r}")
        self.finishers = (*self.finishers, target)
        return target

    @property
    def group_size(self) -> int:
        """Items a worker moves through all stages together: the largest batch or sort window."""
        return max((s.read_ahead for s in self.stages), default=1)
