"""The server's settings: flags over ``SHOAL_*`` environment variables over defaults."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shoal.errors import ConfigError
from shoal.settings import default_db, default_home
from shoal.web.hosts import allowed_host_entry


class ServerSettings(BaseSettings):
    """Everything that shapes one `shoal serve`."""

    model_config = SettingsConfigDict(env_prefix="SHOAL_", extra="ignore")

    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=0, le=65535)
    db_url: str | None = Field(None, description="ledger database URL")
    engine: str | None = Field(None, description="local or celery [default: celery when a broker is set]")
    broker_url: str | None = Field(None, description="broker for the celery engine")
    projects: list[Path] = Field(default_factory=list, description="project folders whose pipelines are served")
    workers: int | None = Field(None, ge=1, le=1024, description="workers per job [default: CPU count]")
    auth: bool = Field(False, description="require a token even on a loopback address")
    max_upload_mb: float = Field(1024.0, gt=0, description="largest upload accepted, in MiB")
    max_jobs: int = Field(2, ge=1, le=64, description="jobs run at the same time (streaming jobs aside)")
    max_streams: int = Field(8, ge=1, le=256, description="streaming jobs open at the same time")
    stream_idle_timeout: float | None = Field(
        None, gt=0, le=365 * 86400, allow_inf_nan=False, description="seconds a stream may go without items"
    )
    allow_paths: list[Path] = Field(default_factory=list, description="local folders inputs may name")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="names (or *.domain) requests may be addressed to, beyond loopback"
    )
    idle_engine_s: float = Field(600.0, ge=0, description="seconds warm workers wait for a job before exiting")

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        """SHOAL_ALLOWED_HOSTS is a comma-separated list; each entry is normalised or refused."""
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        return [allowed_host_entry(v) for v in value] if isinstance(value, list | tuple) else value

    @classmethod
    def build(cls, **flags: Any) -> ServerSettings:
        """Flags over environment over defaults, with one clear error for bad values."""
        given = {key: value for key, value in flags.items() if value not in (None, [], ())}
        try:
            return cls(**given)
        except ValidationError as exc:
            problems = [f"{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}" for e in exc.errors()]
            raise ConfigError("invalid server settings: " + "; ".join(problems)) from None

    @property
    def engine_name(self) -> str:
        return self.engine or ("celery" if self.broker_url else "local")

    @property
    def ledger_url(self) -> str:
        return self.db_url or default_db()

    @property
    def data_root(self) -> Path:
        """Uploads, run folders and exports: SHOAL_HOME, like `shoal run`'s run folders."""
        return default_home()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def auth_required(self) -> bool:
        """Tokens are needed on any address other people can reach, and wherever --auth says."""
        return self.auth or not self.loopback

    def input_roots(self) -> list[Path] | None:
        """Local folders a submitted input may name, or None for any.

        On a loopback address with no --allow-path, the server's user is the only user: any local
        path goes. Otherwise only the data folder, the project folders and each --allow-path.
        """
        if self.loopback and not self.allow_paths:
            return None
        return [self.data_root, *(p.expanduser().resolve() for p in (*self.projects, *self.allow_paths))]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
