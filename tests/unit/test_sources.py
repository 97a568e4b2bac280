"""Inputs become entries with stable ids, in a deterministic order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal.errors import InputError
from shoal.sources import Entry, open_inputs
from shoal.sources._ids import item_id, slug


def _names(entries: list[Entry]) -> list[str]:
    return [Path(e.input).name for e in entries]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for name in ("b.jpg", "a.jpg", "sub/c.jpg", "sub/deeper/d.jpg", ".hidden", ".git/config", "café photo.jpg"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return root


def test_folder_is_read_recursively_in_sorted_order_skipping_hidden_files(tree: Path) -> None:
    entries = list(open_inputs([str(tree)]))
    assert _names(entries) == ["a.jpg", "b.jpg", "café photo.jpg", "c.jpg", "d.jpg"]
    assert all(e.uri == e.input and Path(e.uri).is_absolute() for e in entries)


def test_ids_are_stable_readable_and_independent_of_the_working_folder(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = [e.id for e in open_inputs([str(tree)])]
    monkeypatch.chdir(tree / "sub")
    again = [e.id for e in open_inputs([str(tree)])]
    assert first == again
    assert first[2].startswith("cafe_photo.jpg-")
    assert first[3].startswith("sub_c.jpg-")
    assert len(set(first)) == len(first)


def test_glob_matches_files_recursively(tree: Path) -> None:
    assert _names(list(open_inputs([f"{tree}/**/*.jpg"]))) == ["a.jpg", "b.jpg", "café photo.jpg", "c.jpg", "d.jpg"]
    with pytest.raises(InputError, match="no files match"):
        open_inputs([f"{tree}/*.png"])


def test_uri_list_skips_comments_and_blank_lines_and_resolves_relative_paths(tree: Path) -> None:
    listing = tree.parent / "inputs.txt"
    listing.write_text(
        f"# photos\n\ndata/a.jpg\n   \nfile://{tree}/b.jpg\nhttps://example.org/x/y.png?size=2\n{tree}/./sub/../a.jpg\n"
    )
    entries = list(open_inputs([str(listing)]))
    assert [e.uri for e in entries] == [
        str(tree / "a.jpg"), str(tree / "b.jpg"), "https://example.org/x/y.png?size=2", str(tree / "a.jpg"),
    ]  # fmt: skip
    assert entries[0].id == entries[3].id  # the same file, however it is written
    assert entries[2].id.startswith("y.png-")
    assert entries[1].input == f"file://{tree}/b.jpg"


def test_csv_rows_with_id_and_file_columns(tmp_path: Path) -> None:
    (tmp_path / "pic.jpg").write_text("x")
    table = tmp_path / "rows.csv"
    table.write_text("id,path,label\nfirst,pic.jpg,cat\n,pic.jpg,dog\nweird id!,,x\n4,only-two\n")
    entries = list(open_inputs([str(table)]))
    assert entries[0] == Entry(
        "first",
        str(tmp_path / "pic.jpg"),
        str(tmp_path / "pic.jpg"),
        {"id": "first", "path": "pic.jpg", "label": "cat"},
    )
    assert entries[1].id.startswith("pic.jpg-")  # no id: derived from the row's content
    assert entries[2].id.startswith("weird_id-")  # an unsafe id made safe
    assert entries[2].uri is None
    assert entries[2].input == "rows.csv:4"
    assert entries[3].error == "rows.csv:5: row has 2 fields, the header has 3"


def test_identical_rows_are_the_same_item(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"a": 1, "b": 2}\n{"b": 2, "a": 1}\n{"a": 2}\n')
    ids = [e.id for e in open_inputs([str(rows)])]
    assert ids[0] == ids[1] != ids[2]


def test_inputs_that_cannot_be_opened_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="input not found"):
        open_inputs([str(tmp_path / "nothing-here")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="folder with no files"):
        open_inputs([str(tmp_path / "empty")])
    with pytest.raises(InputError, match="no inputs"):
        open_inputs([])


def test_a_ten_thousand_line_list_is_read_lazily(tmp_path: Path) -> None:
    listing = tmp_path / "big.txt"
    listing.write_text("".join(f"item-{i}\n" for i in range(10_000)))
    entries = open_inputs([str(listing)])
    first = next(entries)
    assert first.uri == os.path.join(tmp_path, "item-0")
    assert sum(1 for _ in entries) == 9_999


def test_item_ids_are_safe_folder_names() -> None:
    assert slug("../../etc/passwd") == "etc_passwd"
    assert slug("...") == "item"
    assert item_id("a/b c.jpg", "key").startswith("a_b_c.jpg-")
    assert item_id("x", "key1") != item_id("x", "key2")
