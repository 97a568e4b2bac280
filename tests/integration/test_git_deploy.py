"""Deploy by git push: real `git push` over the filesystem to a repository made by `shoal deploy
init`, whose hook checks each pushed version and rolls it out; the pusher reads every step, and a
version failing one leaves production as it was."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from shoal import registry
from shoal.errors import ConfigError
from shoal.git_deploy import init_repository
from shoal.store import Ledger
from tests.helpers import shoal_cli

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ana Pusher",
    "GIT_AUTHOR_EMAIL": "ana@example.com",
    "GIT_COMMITTER_NAME": "Ana Pusher",
    "GIT_COMMITTER_EMAIL": "ana@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",  # whatever the person running the tests has configured
    "GIT_CONFIG_NOSYSTEM": "1",
}

PIPELINE = """
import shoal
{head}
pipeline = shoal.Pipeline("sentiment")

@pipeline.stage()
class Label:
    def setup(self):
        {setup}

    def process(self, item):
        text = (item.meta or {{}}).get("text") or item.read_text()
        if "explode" in text:
            raise ValueError("cannot read " + text.strip())
        return {{"label": "pos" if any(w in text for w in {positive!r}) else "neg"}}
"""
TOML = """
[deploy]
sample = "samples/"
golden = "golden.jsonl"
golden_field = "label"
golden_threshold = 0.75
"""
GOLDEN = [
    {"input": {"text": "a good day"}, "expected": {"label": "pos"}},
    {"input": {"text": "a great film"}, "expected": {"label": "pos"}},
    {"input": "golden/rain.txt", "expected": {"label": "neg"}},  # a file, beside the golden set
    {"input": {"text": "dull"}, "expected": {"label": "neg"}},
]


def pipeline(positive: tuple[str, ...] = ("good",), head: str = "", setup: str = "self.ready = True") -> str:
    return PIPELINE.format(positive=positive, head=head, setup=setup)


Push = Callable[..., str]


@pytest.fixture
def push(home: Path) -> Push:
    """A clone of the deploy repository: ``push(files, message, *git_push_options)`` writes the
    files, commits them and pushes to main (or ``refs``), returning what `git push` printed."""
    made = shoal_cli("deploy", "init", str(home / "deploy.git"), cwd=home)
    assert made.returncode == 0, made.stderr
    assert f"git remote add shoal {home / 'deploy.git'}" in made.stdout
    env = {**os.environ, **GIT_ENV}
    clone = home / "clone"

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=clone, env=env, capture_output=True, text=True, timeout=120)

    cloned = subprocess.run(["git", "clone", "-q", str(home / "deploy.git"), str(clone)], env=env, capture_output=True)
    assert cloned.returncode == 0, cloned.stderr
    git("checkout", "-q", "-b", "main")

    def commit_and_push(files: dict[str, str], message: str, *args: str, refs: tuple[str, ...] = ("HEAD:main",)) -> str:
        for name, text in files.items():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            (clone / name).write_text(text)
        assert git("add", "-A").returncode == 0
        assert git("commit", "-q", "-m", message).returncode == 0
        pushed = git("push", *args, "origin", *refs)
        assert pushed.returncode == 0, pushed.stderr  # a post-receive hook never refuses the push
        return pushed.stderr  # where git relays the hook's output, each line as "remote: ..."

    return commit_and_push


def said(output: str) -> list[str]:
    """The hook's lines, as the pusher reads them."""
    return [line.removeprefix("remote: ").strip() for line in output.splitlines() if line.startswith("remote: ")]


def aliases(home: Path) -> dict[str, registry.Alias]:
    """What the ledger of the hook (the shoal home's) says serves now."""
    ledger = Ledger(f"sqlite:///{home / 'shoal-runs' / 'ledger.db'}")
    try:
        return registry.aliases(ledger, "sentiment")
    finally:
        ledger.close()


def production(home: Path) -> tuple[str, str | None]:
    alias = aliases(home)["production"]
    return alias.version, alias.previous


def test_each_push_is_checked_registered_and_rolled_out_and_a_failing_one_leaves_production(
    home: Path, push: Push
) -> None:
    data = {"samples/a.txt": "a good thing\n", "samples/b.txt": "nothing much\n", "golden/rain.txt": "rain\n"}
    first = said(push({"pipeline.py": pipeline(), "shoal.toml": "[deploy]\nsample = 'samples/'\n", **data}, "v1"))
    v1, before = production(home)
    assert before is None
    assert len(first) == 7, first
    assert first[0].startswith("shoal: deploying ")
    assert first[0].endswith("'v1' (main)")
    assert first[1].startswith("shoal: checking out ")
    assert first[2] == f"shoal: importing pipeline ... ok: 'sentiment', version {v1}"
    assert first[3].startswith("shoal: setup() ... ok (")
    assert first[4].startswith("shoal: smoke run: 2 of 2 inputs ok (")
    assert first[5:] == [f"shoal: registered version {v1} of sentiment", f"shoal: production is {v1} (was none)"]

    golden = "".join(json.dumps(row) + "\n" for row in GOLDEN)
    second = said(push({"pipeline.py": pipeline(("good", "great")), "shoal.toml": TOML, "golden.jsonl": golden}, "v2"))
    v2, previous = production(home)
    assert (previous, v2 != v1) == (v1, True), second
    assert "shoal: golden set: 1.00 >= 0.75 (4 of 4 rows match on label)" in second
    assert second[-1] == f"shoal: production is {v2} (was {v1})"
    ledger = Ledger(f"sqlite:///{home / 'shoal-runs' / 'ledger.db'}")
    record = registry.get_version(ledger, "sentiment", v2)
    ledger.close()
    assert record.source == f"{_head(home)[:12]} v2"
    assert record.created_by == "Ana Pusher <ana@example.com>"
    assert (record.metrics["smoke"]["inputs"], record.metrics["smoke"]["failed"]) == (2, 0)
    assert record.metrics["golden"] == {
        "rows": 4, "matched": 4, "score": 1.0, "threshold": 0.75, "fields": ["label"],
    }  # fmt: skip
    assert (Path(record.folder) / "pipeline.py").read_text() == pipeline(("good", "great"))

    code = pipeline(head="import sentiment_model_that_is_not_installed")
    broken = said(push({"pipeline.py": code}, "broken", refs=("HEAD:main", "HEAD:refs/heads/try-this")))
    assert broken[-1] == "shoal: refs/heads/try-this: not deployed (pushes to main or master are)"
    assert broken[-3].startswith("shoal: deploy failed at importing pipeline: ")
    assert "imports 'sentiment_model_that_is_not_installed', which is not installed" in broken[-3]
    assert broken[-2] == "shoal: nothing was registered or rolled out: production is as it was"
    assert production(home) == (v2, v1)

    no_setup = said(push({"pipeline.py": pipeline(setup="raise RuntimeError('model.onnx is missing')")}, "setup"))
    assert no_setup[-2].startswith("shoal: deploy failed at setup(): setup() of stage 'Label' failed")
    assert no_setup[-2].endswith("RuntimeError: model.onnx is missing")
    assert no_setup[-1] == f"shoal: nothing was registered or rolled out; production is still {v2}"
    assert production(home) == (v2, v1)

    exploding = said(push({"pipeline.py": pipeline(), "samples/c.txt": "explode here\n"}, "smoke"))
    assert exploding[-2].startswith("shoal: deploy failed at smoke run: 1 of 3 inputs failed: ")
    assert exploding[-2].endswith("/samples/c.txt: ValueError: cannot read explode here (stage Label)")
    assert production(home) == (v2, v1)

    worse = said(push({"pipeline.py": pipeline(()), "samples/c.txt": "fine\n"}, "worse"))
    assert worse[-2].startswith("shoal: deploy failed at golden set: 0.50 < 0.75 (2 of 4 rows match on label): ")
    assert 'line 1: label is "neg", expected "pos"' in worse[-2]
    assert worse[-1] == f"shoal: nothing was registered or rolled out; production is still {v2}"
    assert production(home) == (v2, v1)

    canary_toml = TOML + 'rollout = "canary"\ncanary = "10%"\n'
    better = pipeline(("good", "great", "fine"))
    trial = said(push({"pipeline.py": better, "shoal.toml": canary_toml}, "canary", "-o", "canary=25%"))
    now = aliases(home)
    canary = now["canary"]
    assert trial[-1] == f"shoal: canary is {canary.version} with 25% of traffic (production stays {v2})"
    assert (canary.weight, canary.options["max_error_rate"], now["production"].version) == (0.25, 0.02, v2)


def _head(home: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=home / "clone", capture_output=True, text=True).stdout


def test_init_refuses_a_folder_holding_something_else(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(ConfigError, match="is not empty and not a bare git repository"):
        init_repository(tmp_path, db=f"sqlite:///{tmp_path / 'ledger.db'}", say=lambda line: None)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
