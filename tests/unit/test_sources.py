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


def test_each_row_is_its_own_item_even_two_rows_alike(tmp_path: Path) -> None:
    """Ids of rows without an id column come from where they are, so no two can collide."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"a": 1, "b": 2}\n{"b": 2, "a": 1}\n{"a": 2}\n')
    ids = [e.id for e in open_inputs([str(rows)])]
    assert len(set(ids)) == 3
    assert ids[0].startswith("rows-1-")
    again = tmp_path / "again" / "rows.jsonl"  # the same name elsewhere: other ids
    again.parent.mkdir()
    again.write_text(rows.read_text())
    assert not set(ids) & {e.id for e in open_inputs([str(again)])}


def test_an_unterminated_quote_is_an_error_and_the_rows_after_it_are_read(tmp_path: Path) -> None:
    table = tmp_path / "table.csv"
    opens = '"open'
    table.write_text("n,label\n" + "".join(f"{i},{opens if i == 10 else 'ok'}\n" for i in range(60)))
    entries = list(open_inputs([str(table)]))
    bad = [e for e in entries if e.error]
    assert [e.input for e in bad] == ["table.csv:12"]
    assert "a quoted field opens here and is never closed" in str(bad[0].error)
    assert [e.meta["n"] for e in entries if e.meta] == [str(i) for i in range(60) if i != 10]


def test_a_quote_that_closes_later_spans_lines_as_csv_allows(tmp_path: Path) -> None:
    table = tmp_path / "table.csv"
    table.write_text('n,text\n1,"two\nlines"\n2,plain\n3,"x,""y"""\n')
    entries = list(open_inputs([str(table)]))
    assert [(e.input, e.meta) for e in entries] == [
        ("table.csv:2", {"n": "1", "text": "two\nlines"}),
        ("table.csv:4", {"n": "2", "text": "plain"}),
        ("table.csv:5", {"n": "3", "text": 'x,"y"'}),
    ]


def test_bytes_that_are_not_utf8_fail_their_own_row_line_or_file(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_bytes(b"n\n1\n\xe9\n3\n")
    (tmp_path / "rows.jsonl").write_bytes(b'{"n": 1}\n{"n": "\xff"}\n')
    (tmp_path / "list.txt").write_bytes(b"/a\n/b\xe9\n/c\n")
    (tmp_path / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "ok.txt").write_text("ok")
    (Path(os.fsdecode(bytes(folder) + b"/caf\xe9.txt"))).write_text("x")
    found = {name: list(open_inputs([str(tmp_path / name)])) for name in ("rows.csv", "rows.jsonl", "list.txt")}
    found["binary.csv"] = list(open_inputs([str(tmp_path / "binary.csv")]))
    found["folder"] = list(open_inputs([str(folder)]))
    errors = {name: [e.error for e in entries if e.error] for name, entries in found.items()}
    assert errors == {
        "rows.csv": ["rows.csv:3: not UTF-8 text (say, a Latin-1 byte)"],
        "rows.jsonl": ["rows.jsonl:2: not UTF-8 text"],
        "list.txt": ["list.txt:2: not UTF-8 text"],
        "binary.csv": ["binary.csv:1: not a CSV file: its first line is binary data, not UTF-8 text"],
        "folder": [f"{folder}/caf\\xe9.txt: the file name is not UTF-8 text"],
    }
    assert [e.input for e in found["folder"]] == [f"{folder}/caf\\xe9.txt", str(folder / "ok.txt")]
    assert all(e.input.encode() for entries in found.values() for e in entries)  # all storable


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


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("list.txt", "# a list\n/a\n\n/b\n/c\n# note\n/d\n/e\n/f\n"),
        ("rows.csv", 'n,text\n1,a\n2,"two\nlines"\n3,"open\n4,d\n5,"x,""y"""\n6,f\n7,g\n'),
        ("rows.jsonl", '{"n": 1}\n\n{"n": 2}\nnot json\n{"n": 4}\n{"n": 5}\n'),
    ],
)
def test_a_source_resumes_from_its_position_with_exactly_the_entries_left(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    everything = list(open_inputs([str(path)]))
    for done in range(len(everything)):
        reading = open_inputs([str(path)])
        for _ in range(done):
            next(reading)
        position = reading.position()
        assert list(open_inputs([str(path)], start=position)) == everything[done:], position


def test_a_folder_of_more_names_than_a_sort_holds_comes_out_sorted(tmp_path: Path) -> None:
    from shoal.sources import _sorted

    names = [f"n{(i * 7919) % 1000:04d}\nodd" for i in range(1000)]
    assert list(_sorted.sorted_bounded(names, run=64)) == sorted(names)
    for i in range(300):
        (tmp_path / f"{(i * 31) % 300:03d}.txt").write_text("x")
    listed = [Path(e.input).name for e in open_inputs([str(tmp_path)])]
    assert listed == sorted(listed)
    assert len(listed) == 300
