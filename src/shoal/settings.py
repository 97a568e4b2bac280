"""Run settings, validated once at the entry point and passed down.

Precedence, highest first: command-line flags, ``SHOAL_*`` environment variables, the
``[run]`` table of the project's shoal.toml, defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shoal.errors import ConfigError

if TYPE_CHECKING:
    from shoal.access import ReadPolicy


def default_home() -> Path:
    """Where runs and the ledger live unless told otherwise: $SHOAL_HOME, else the user's data
    folder (``~/.local/share/shoal`` on Linux), the same from whichever folder a command runs, so
    the same command finds the same job."""
    if home := os.environ.get("SHOAL_HOME"):
        return Path(home).expanduser().resolve()
    from platformdirs import user_data_path

    return user_data_path("shoal", appauthor=False)


def default_db() -> str:
    return f"sqlite:///{default_home() / 'ledger.db'}"


class RunSettings(BaseSettings):
    """Everything that shapes one `shoal run`."""

    model_config = SettingsConfigDict(env_prefix="SHOAL_", extra="forbid")

    inputs: list[str] = Field(default_factory=list, description="files, folders, lists or URLs")
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=1024)
    retries: int = Field(2, ge=0, le=100, description="attempts after the first")
    retry_backoff: float = Field(1.0, ge=0, description="seconds before the first retry; doubles")
    timeout: float | None = Field(None, gt=0, description="seconds one item may take")
    fetch_timeout: float = Field(30.0, gt=0, description="seconds to download one remote input")
    settle: float = Field(5.0, ge=0, description="seconds in-flight items get to finish on Ctrl-C")
    limit: int | None = Field(None, ge=1, description="process only the first N inputs")
    out: str | None = Field(None, description="the run folder: a path, or a URL such as s3://bucket/prefix")
    db_url: str | None = Field(None, description="ledger database URL (SHOAL_DB_URL)")
    engine: str | None = Field(None, description="local or celery [default: celery when a broker is set]")
    broker_url: str | None = Field(None, description="redis:// or amqp:// broker for the celery engine")
    queue: str = Field("shoal", description="queue (prefix) shared by `shoal run` and `shoal worker`")
    bundles_url: str | None = Field(
        None, description="where code bundles go for workers without a project [default: a Redis broker]"
    )
    cache_url: str | None = Field(
        None,
        description="where stages with cache=True keep results: a folder, fsspec URL or redis:// "
        "[default: a Redis broker, else the shoal home's cache folder]",
    )

    @property
    def result_cache(self) -> str:
        """The cache_url, or what a run's workers can all reach: a Redis broker, else a folder here."""
        if self.cache_url:
            return self.cache_url
        if self.engine_name == "celery" and self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return str(default_home() / "cache")

    new: bool = Field(False, description="start a new job even if an identical one exists")
    wait: bool = Field(False, description="when another process runs the job, wait for it instead of exiting")
    read_roots: list[str] | None = Field(
        None, description="the only local folders the job may read (a server's read policy; see shoal.access)"
    )

    @property
    def policy(self) -> ReadPolicy | None:
        """The read policy of the job: None, unless a server gives one."""
        from shoal.access import ReadPolicy

        return ReadPolicy.of(self.read_roots)

    metrics_port: int | None = Field(None, ge=0, le=65535, description="serve Prometheus metrics on this port")
    metrics_host: str = Field("127.0.0.1", description="address the metrics endpoint binds (0.0.0.0: all)")
    metrics_linger: float = Field(0.0, ge=0, description="seconds the endpoint stays up after the job ends")

    @classmethod
    def build(cls, toml: dict[str, Any] | None = None, **flags: Any) -> RunSettings:
        """Merge flags over environment over shoal.toml over defaults, with clear errors."""
        from_file = {key: value for key, value in (toml or {}).items() if f"SHOAL_{key.upper()}" not in os.environ}
        given = {key: value for key, value in flags.items() if value is not None}
        try:
            return cls(**{**from_file, **given})
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

    @property
    def engine_name(self) -> str:
        return self.engine or ("celery" if self.broker_url else "local")

    @property
    def ledger_url(self) -> str:
        return self.db_url or default_db()

    def job_options(self) -> dict[str, Any]:
        """The settings a job keeps, so it can be resumed as it was started (the API resumes jobs)."""
        return self.model_dump(include={"limit", "retries", "retry_backoff", "timeout", "fetch_timeout"})


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = ".".join(str(p) for p in error["loc"]) or "settings"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown setting {name!r} (check shoal.toml [run])")
        else:
            problems.append(f"{name}={error.get('input')!r}: {error['msg']}")
    return "invalid settings: " + "; ".join(problems)
