"""The README's `[run]` block of shoal.toml shows the real defaults, so the two cannot drift apart."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from shoal.settings import RunSettings

README = Path(__file__).parents[2] / "README.md"
COMMENTED = re.compile(r"^# (\w+ = .*?)\s+#", re.MULTILINE)  # `# timeout = 60   # why`: an example, no default


def _run_block() -> str:
    blocks = re.findall(r"^```toml\n(\[run\].*?)^```", README.read_text(encoding="utf-8"), re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1, "the README should show one [run] block of shoal.toml"
    return str(blocks[0])


def _default(name: str) -> Any:
    return RunSettings.model_fields[name].get_default(call_default_factory=True)


def test_the_values_shown_are_the_defaults() -> None:
    shown = tomllib.loads(_run_block())["run"]
    assert shown
    for name, value in shown.items():
        assert name in RunSettings.model_fields, f"README shows [run] {name}, which is no setting"
        assert value == _default(name), name
        assert type(value) is type(_default(name)), f"{name}: write {_default(name)!r}"


def test_keys_commented_out_have_no_fixed_default_and_valid_examples() -> None:
    examples = tomllib.loads("\n".join(COMMENTED.findall(_run_block())))
    assert set(examples) == {"inputs", "workers", "timeout"}
    for name, value in examples.items():
        field = RunSettings.model_fields[name]
        assert field.default_factory is not None or field.default is None, f"{name} has a default: show it"
        RunSettings(**{name: value})  # the example is a value shoal accepts
