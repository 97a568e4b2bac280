"""Property tests of the request models: whatever a client sends, a value is either refused with
an error naming its field, or one the core can use without failing (the file system, the
ledger's JSON, a counter), never something in between."""

from __future__ import annotations

import errno
import itertools
import json
import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from shoal.web.fields import COUNT_MAX, NAME_MAX, PATH_MAX, ItemName, Name
from shoal.web.schemas import ItemsAppend, JobCreate, JobOptions
from tests.strategies import JSON, NAMES, NUMBERS, PATHS, deep

T = TypeVar("T")
EXAMPLES = settings(max_examples=80, derandomize=True, database=None, deadline=None)
BOUNDS = {
    "retries": (0, 100),
    "retry_backoff": (0, 3600),
    "timeout": (0, 86400),
    "fetch_timeout": (0, 3600),
    "limit": (1, COUNT_MAX),
}


def _outcome(validate: Callable[[], T]) -> tuple[T | None, set[tuple[Any, ...]]]:
    """The value, or None and the locations of the fields at fault."""
    try:
        return validate(), set()
    except ValidationError as exc:
        return None, {tuple(e["loc"]) for e in exc.errors()}


def _usable_path(value: str) -> None:
    """What the server does with a local path must not fail for the value itself."""
    local = value.removeprefix("file://")
    if "://" in local:
        return
    assert len(local.encode()) <= PATH_MAX
    try:
        os.lstat(local)
        refused = None
    except OSError as exc:
        refused = exc.errno
    assert refused != errno.ENAMETOOLONG, value
    os.path.realpath(local)


@EXAMPLES
@given(PATHS)
def test_an_input_path_is_refused_naming_it_or_usable(value: str) -> None:
    job, fields = _outcome(lambda: JobCreate.model_validate({"pipeline": "tool", "inputs": ["/ok", value]}))
    if job is None:
        assert fields == {("inputs", 1)}
        return
    [_, kept] = job.inputs
    kept.encode("utf-8")  # the ledger and every JSON encoder take it
    assert "\x00" not in kept
    _usable_path(kept)


@EXAMPLES
@given(st.fixed_dictionaries({}, optional=dict.fromkeys(BOUNDS, NUMBERS)))
def test_options_are_refused_naming_them_or_finite_and_bounded(options: dict[str, Any]) -> None:
    parsed, fields = _outcome(lambda: JobOptions.model_validate(options))
    if parsed is None:
        assert {loc[0] for loc in fields} <= set(options)
        return
    for name, value in parsed.flags().items():
        if name in BOUNDS:
            low, high = BOUNDS[name]
            assert math.isfinite(value)
            assert low <= value <= high
    json.dumps(parsed.flags(), allow_nan=False)  # what the job records and the API answers
    list(itertools.islice([], 0, parsed.limit))  # the feed's counter takes the limit


@EXAMPLES
@given(NAMES)
def test_ids_are_refused_or_plain_names_a_folder_can_have(value: str) -> None:
    name, _ = _outcome(lambda: TypeAdapter(ItemName).validate_python(value))
    if name is None:
        return
    assert len(name.encode("utf-8")) <= NAME_MAX
    assert not any(ord(c) < 32 or ord(c) == 127 for c in name)
    TypeAdapter(Name).validate_python(name)


@EXAMPLES
@given(PATHS, st.one_of(st.none(), NAMES), JSON)
def test_a_stream_item_is_refused_naming_its_field_or_recordable(uri: str, item_id: str | None, meta: Any) -> None:
    item: dict[str, Any] = {"uri": uri, "meta": {"m": meta}}
    if item_id is not None:
        item["id"] = item_id
    body, fields = _outcome(lambda: ItemsAppend.model_validate({"items": [item]}))
    if body is None:
        assert {loc[:3] for loc in fields} <= {("items", 0, "uri"), ("items", 0, "id"), ("items", 0, "meta")}
        return
    [kept] = body.items
    orjson.dumps(kept.model_dump())  # the coordinator records it with orjson: it must not raise
    json.dumps(kept.model_dump(), allow_nan=False)


@pytest.mark.parametrize("levels", [32, 33, 300])
def test_meta_may_be_nested_only_so_deep(levels: int) -> None:
    item = {"uri": "x", "meta": deep(levels)}  # levels of dicts, the meta itself the first
    if levels <= 32:
        ItemsAppend.model_validate({"items": [item]})
        return
    with pytest.raises(ValidationError, match="nested at most"):
        ItemsAppend.model_validate({"items": [item]})
