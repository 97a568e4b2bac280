"""A guardrail's verdict on a trial is recorded whole and once: the record never says a version
was promoted that production does not name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shoal import registry
from shoal.store import Ledger

PIPELINE = """
import shoal
VERSION = {version}
pipeline = shoal.Pipeline("scorer")

@pipeline.stage()
def score(item):
    return {{"version": VERSION}}
"""


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


def _versions(ledger: Ledger, tmp_path: Path) -> tuple[str, str]:
    """Two registered versions: the first production, the second its canary."""
    found = []
    for n in (1, 2):
        project = tmp_path / f"v{n}"
        project.mkdir()
        (project / "pipeline.py").write_text(PIPELINE.format(version=n))
        found.append(registry.register(ledger, project, root=tmp_path / "versions").version)
    registry.promote(ledger, "scorer", found[0], by="me")
    registry.set_alias(ledger, "scorer", registry.CANARY, found[1], by="me", weight=0.1)
    return found[0], found[1]


def _kinds(ledger: Ledger) -> list[str]:
    return [e["kind"] for e in reversed(registry.events(ledger, "scorer"))]


def test_two_judges_of_one_canary_promote_it_once(ledger: Ledger, tmp_path: Path) -> None:
    _, canary = _versions(ledger, tmp_path)
    assert registry.promote_trial(ledger, "scorer", registry.CANARY, canary, by="guardrails", detail="healthy")
    assert not registry.promote_trial(ledger, "scorer", registry.CANARY, canary, by="guardrails", detail="healthy")
    aliases = registry.aliases(ledger, "scorer")
    assert aliases["production"].version == canary
    assert "canary" not in aliases
    assert _kinds(ledger).count("promoted") == 2  # the first version's, then the canary's, once
    assert _kinds(ledger).count("trial_ended") == 1


def test_a_promotion_that_fails_midway_leaves_the_trial_and_the_record_as_they_were(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, canary = _versions(ledger, tmp_path)
    before = _kinds(ledger)
    real = registry._point

    def fails_on_production(conn: Any, pipeline: str, alias: str, *args: Any, **kwargs: Any) -> None:
        if alias == registry.PRODUCTION:
            raise OSError("the ledger went away")
        real(conn, pipeline, alias, *args, **kwargs)

    monkeypatch.setattr(registry, "_point", fails_on_production)
    with pytest.raises(OSError, match="went away"):
        registry.promote_trial(ledger, "scorer", registry.CANARY, canary, by="guardrails", detail="healthy")
    aliases = registry.aliases(ledger, "scorer")
    assert aliases["production"].version == first
    assert aliases["canary"].version == canary  # still on trial: a later judge may decide
    assert _kinds(ledger) == before  # no "trial_ended: promoted" without the promotion
