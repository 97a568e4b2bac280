"""Every exception shoal raises, under one root.

Messages are written for the person at the terminal: they name the thing at fault (a file, an
item, a stage), the cause, and where possible the fix.
"""

from __future__ import annotations


class ShoalError(Exception):
    """Raised for any failure shoal itself detects; the root of this module."""


class ConfigError(ShoalError):
    """Raised when the command, settings or project cannot work as given (exit code 2)."""


class ProjectError(ConfigError):
    """Raised when a project folder is missing, its pipeline.py fails to import, or holds no pipeline."""


class PipelineDefinitionError(ConfigError):
    """Raised when a stage is declared in a way shoal cannot run."""


class InputError(ConfigError):
    """Raised when an --input cannot be opened at all (as opposed to one bad item inside it)."""


class ReadRefusedError(InputError):
    """Raised when an input (or an entry read out of one) names a file or URL the job's read
    policy does not allow; names the rule. As an item's error it fails that item alone."""

    retry = False


class MissingDependencyError(ConfigError):
    """Raised when an optional dependency is needed; names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"{module} is not installed: pip install 'shoal[{extra}]'")


class JobBusyError(ConfigError):
    """Raised when another live process is already running the job."""


class LedgerWriteError(ShoalError):
    """Raised when the ledger refuses writes (a full disk, a lost database) for longer than the
    coordinator retries them; nothing recorded is lost, and the same command resumes (exit code 2)."""


class RunFolderError(ShoalError):
    """Raised when a job's run folder cannot be written (read-only, full); exit code 2."""


class PrometheusError(ShoalError):
    """Raised when Prometheus cannot be reached, or refuses a request, after the allowed retries."""


class WorkerStartError(ShoalError):
    """Raised when workers cannot import the project or run its setup(), so no item can run."""


class BundleError(WorkerStartError):
    """Raised when a worker cannot run a job's code bundle: missing, not signed with the cluster
    key, made for another Python, or its requirements do not install."""


class FingerprintMismatchError(WorkerStartError):
    """Raised when a worker's copy of the project differs from the job's recorded fingerprint."""


class ItemError(ShoalError):
    """Raised inside a stage when one item cannot be processed; fails that item only.

    ``retry=False`` says trying again cannot help (the input itself is bad), so the item fails
    at once instead of using up its retries.
    """

    retry_default = True

    def __init__(self, message: str, *, retry: bool | None = None) -> None:
        super().__init__(message)
        self.retry = self.retry_default if retry is None else retry


class FetchError(ItemError):
    """Raised when an item's input cannot be read or downloaded."""


class CorruptInputError(ItemError):
    """Raised when an item's bytes cannot be decoded (an image that is not an image)."""

    retry_default = False


class StageResultError(ItemError):
    """Raised when a stage returns something shoal cannot record (wrong count, not JSON)."""

    retry_default = False


class NotFoundError(ShoalError):
    """Raised when a job, item, pipeline or file that was asked for does not exist."""


class RangeNotSatisfiableError(ShoalError):
    """Raised when a request asks for bytes beyond the end of a file."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the range asked for is outside the file ({size} bytes)")
        self.size = size


class StorageError(ShoalError):
    """Raised when a run folder at a URL cannot be read: a missing extra, credentials, the network."""


class UnknownPipelineError(NotFoundError):
    """Raised when a submission names a pipeline the service does not serve; lists the known ones."""

    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(known) if known else "none: start the server with --project DIR"
        super().__init__(f"unknown pipeline {name!r}; known pipelines: {listed}")
        self.known = known


class JobStateError(ShoalError):
    """Raised when a job cannot do what was asked in its current state (cancel a finished job)."""


class UploadTooLargeError(ShoalError):
    """Raised when an upload is larger than the service's limit; names the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"upload too large: the limit is {limit} bytes ({limit / 2**20:g} MiB); set --max-upload-mb")
        self.limit = limit


class OverloadedError(ShoalError):
    """Raised when online inputs would overflow a pipeline's queue: try again after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineError(ShoalError):
    """Raised when an online request is not answered before its deadline."""


class ServingUnavailableError(ShoalError):
    """Raised when a pipeline version cannot serve: its replicas failed to start."""


class AuthenticationError(ShoalError):
    """Raised when a request that needs a token carries none (HTTP 401)."""


class PermissionDeniedError(ShoalError):
    """Raised when a request carries a token the service does not know (HTTP 403)."""


class ServerError(ShoalError):
    """Raised by the client when a shoal server cannot be reached or answers with an error."""
