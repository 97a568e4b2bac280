"""The JSON messages between a coordinator and its workers, whatever carries them.

A worker loads one project (a folder, at one fingerprint) and then takes chunks of any job of that
code: each chunk carries its JobSpec and item dicts ``{"id", "uri", "input"?, "meta"?, "attempt"?}``.
Workers answer with a Report: ``{"ok": [OkRow...], "failed": [Failure...], "took": s, "lost": [id...]}``.
Only JSON crosses: never pickle.

An OkRow is the list ``[id, result_json, start, end, seconds_json]`` (a list, not an object: it
is the hot path, and the coordinator stores the JSON texts as they came). A Failure is ``{"id",
"start", "end", "seconds": seconds_json, "error": {"stage", "type", "message", "traceback",
"batch", "retry"}}``; ``batch`` is the size of the batch that failed together, so the coordinator
can retry its members one by one before blaming any of them; ``retry`` is false when trying again
cannot help (a corrupt input). ``took`` is the stage time of all the items. ``lost`` names items a
worker gave back unfinished through no fault of theirs (their worker process died running
another item): the coordinator queues them again without counting an attempt. ``logs``, absent
when empty, maps a worker process (``host:pid``) to what it wrote to its log while it ran these
items (the end of it, see engines._logs), so a cluster's logs reach the run folder.
Times are UTC epoch seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CACHED = "cached:"  #: seconds_json key "cached:<stage>" (value 1): the stage's result came from its cache
WireItem = dict[str, Any]
OkRow = list[Any]  #: [id, result_json, start, end, seconds_json]
Failure = dict[str, Any]


@dataclass
class Report:
    """What a worker says about some items it finished."""

    ok: list[OkRow] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    took: float = 0.0  #: seconds of stage time, all items together
    lost: list[str] = field(default_factory=list)  #: items given back unfinished, not to blame
    logs: dict[str, str] = field(default_factory=dict)  #: worker process ("host:pid") -> its output meanwhile

    def __len__(self) -> int:
        """Items that finished (succeeded or failed)."""
        return len(self.ok) + len(self.failed)

    def extend(self, other: Report) -> None:
        self.ok += other.ok
        self.failed += other.failed
        self.took += other.took
        self.lost += other.lost
        for worker, text in other.logs.items():
            self.logs[worker] = self.logs.get(worker, "") + text

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": self.ok, "failed": self.failed, "took": self.took}
        if self.lost:
            data["lost"] = self.lost
        if self.logs:
            data["logs"] = self.logs
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(data["ok"], data["failed"], data["took"], data.get("lost", []), data.get("logs", {}))


@dataclass(frozen=True)
class JobSpec:
    """What a worker must know about a job to run its items; sent with every chunk."""

    job_id: str
    fingerprint: str  #: workers refuse to run other code than this
    out: str  #: the run folder; artifacts go under out/artifacts
    fetch_timeout: float = 30.0  #: seconds to download one remote input
    item_timeout: float | None = None  #: seconds one item may take before its worker is replaced
    read_roots: list[str] | None = None  #: the only local folders items may be read from (None: any); see access
    cache: str | None = None  #: where stages with cache=True keep results (see worker.cache)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        return cls(**data)
