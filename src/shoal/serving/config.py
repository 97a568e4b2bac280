"""A pipeline's ``[serve]`` table in shoal.toml: replicas, batching, queue and deadline."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shoal.errors import ConfigError
from shoal.project import Project
from shoal.serving.batcher import BatchPolicy

MAX_REPLICAS = 16


@dataclass(frozen=True)
class ServeConfig:
    """A pipeline's ``[serve]`` table in shoal.toml."""

    replicas: int = 1
    max_batch_size: int = 32
    max_latency_ms: float = 10.0
    max_queue: int = 1024
    timeout_ms: float = 30_000.0  #: a request's deadline unless it asks for less
    latency_slo_ms: float | None = None  #: refuse (429) at once a request expected to be answered later
    cost_field: str | None = None  #: batch by the total length of this meta field, or "bytes" (file size)
    max_batch_cost: float | None = None
    swap: str = "beside"  #: "rolling": a new version replaces the old replica by replica (memory for one more)
    log_requests: bool = False  #: keep each answered input in the ledger (see serving.log)
    adaptive: bool = True  #: false: a fixed window (hold until max_batch_size or max_latency_ms), to compare

    @classmethod
    def of(cls, project: Project) -> ServeConfig:
        table = dict(project.config.get("serve", {}))
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"{project.root}/shoal.toml [serve]: unknown setting(s) {', '.join(unknown)}")
        if "max_batch_size" not in table:  # the pipeline's own batch size is what its model is built for
            table["max_batch_size"] = max(project.pipeline.group_size, 1)
        config = cls(**table)
        if config.swap not in ("beside", "rolling"):
            raise ConfigError(f"{project.root}/shoal.toml [serve] swap: beside or rolling, not {config.swap!r}")
        if config.replicas < 0 or config.max_batch_size < 1 or config.max_queue < 1 or config.timeout_ms <= 0:
            raise ConfigError(f"{project.root}/shoal.toml [serve]: replicas >= 0, max_batch_size, max_queue >= 1")
        if config.latency_slo_ms is not None and config.latency_slo_ms <= 0:
            raise ConfigError(f"{project.root}/shoal.toml [serve] latency_slo_ms: above 0, not {config.latency_slo_ms}")
        return config

    def policy(self) -> BatchPolicy:
        field = self.cost_field
        cost = None if field is None else _file_size if field == "bytes" else _text_length(field)
        return BatchPolicy(
            self.max_batch_size,
            self.max_latency_ms,
            self.max_queue,
            self.max_batch_cost,
            cost,
            self.adaptive,
            self.latency_slo_ms,
        )


def _file_size(wire: dict[str, Any]) -> float:
    """An input's cost as its file's size (an image's bytes stand in for its pixels)."""
    uri = wire.get("uri")
    return float(os.path.getsize(uri)) if uri and os.path.isfile(uri) else 1.0


def _text_length(field: str) -> Callable[[dict[str, Any]], float]:
    def length(wire: dict[str, Any]) -> float:
        return float(len(str((wire.get("meta") or {}).get(field, ""))))

    return length
