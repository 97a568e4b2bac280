"""A job's states, and the rule that names how a finished job ended.

A job where 196 of 200 items succeeded did its work: it ends ``completed_with_errors``, not
``failed``, which is kept for a job where no item succeeded (or that could not run at all).
"""

from __future__ import annotations

from collections.abc import Mapping

#: every state a job can be in, in the order a job passes through them
JOB_STATES = ("pending", "running", "succeeded", "completed_with_errors", "failed", "interrupted", "cancelled")
#: states a job stays in until someone retries it
FINISHED = ("succeeded", "completed_with_errors", "failed", "cancelled")
#: `shoal run`'s exit status for the state a run left its job in
EXIT_CODES = {"succeeded": 0, "completed_with_errors": 1, "failed": 1, "interrupted": 130, "cancelled": 130}


def finished_state(counts: Mapping[str, int]) -> str:
    """The state of a job whose items all ended, from its counts."""
    if not counts.get("failed"):
        return "succeeded"
    return "completed_with_errors" if counts.get("succeeded") else "failed"
