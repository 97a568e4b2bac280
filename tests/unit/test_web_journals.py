"""Journals of streaming jobs: a close is final, and an idle journal can be closed by the server."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from shoal.sources.feeds import JournalFeed
from shoal.web.journals import Journals, is_closed


def test_a_closed_journal_takes_no_more_items(tmp_path: Path) -> None:
    journals = Journals(tmp_path)
    path = journals.create()
    assert journals.append(path, [{"uri": "a"}])
    assert journals.append(path, [{"uri": "b"}], close=True)
    assert not journals.append(path, [{"uri": "c"}])
    assert not Journals(tmp_path).append(path, [{"uri": "c"}])  # read from the file, not only remembered
    feed = JournalFeed(path)
    try:
        assert [e.uri for e in feed.read(10, 0) or []] == ["a", "b"]
        assert feed.read(10, 0) is None  # ended
    finally:
        feed.close()


def test_an_idle_journal_is_closed_with_the_reason(tmp_path: Path) -> None:
    journals = Journals(tmp_path)
    path = journals.create()
    journals.append(path, [{"uri": "a"}])
    now = time.time()
    assert not journals.close_if_idle(path, 60, now, "idle")  # appended just now
    os.utime(path, (now - 120, now - 120))
    assert not journals.close_if_idle(path, 60, now, "idle")  # but the job only started now
    assert journals.close_if_idle(path, 60, now - 120, "idle")
    assert not journals.close_if_idle(path, 60, now - 120, "idle")  # once
    assert json.loads(path.read_text().splitlines()[-1])["reason"] == "idle"
    assert not journals.append(path, [{"uri": "b"}])


def test_only_a_close_line_at_the_end_closes(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text(json.dumps({"uri": "x", "meta": {"close": True, "pad": "p" * 10_000}}) + "\n")
    assert not is_closed(path)  # a long item line, whose end looks like JSON
    path.write_text('{"close": true}\n{"uri": "x"}\n')
    assert not is_closed(path)
    path.write_text('{"uri": "x"}\n{"close": true, "enqueued_at": 1}\n')
    assert is_closed(path)
    assert not is_closed(tmp_path / "missing.jsonl")
