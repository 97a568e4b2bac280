"""shoal: run a pipeline over every item of a dataset, on one machine or many, losing none.

Importing shoal is cheap on purpose: worker processes import it, and the heavier parts (the
ledger, reports, the CLI) load only where they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.errors import CorruptInputError, FetchError, ItemError, ShoalError
from shoal.item import Item
from shoal.pipeline import Pipeline, Stage

if TYPE_CHECKING:
    from shoal.runner import RunResult, run

__all__ = [
    "CorruptInputError",
    "FetchError",
    "Item",
    "ItemError",
    "Pipeline",
    "RunResult",
    "ShoalError",
    "Stage",
    "run",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("run", "RunResult"):
        from shoal import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'shoal' has no attribute {name!r}")
