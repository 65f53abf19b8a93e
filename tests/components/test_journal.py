"""The JOBDIR journal of gateway answers on its own: durable records, and a record torn by a kill."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.components.journal import PageJournal


def test_answers_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "job" / "gateway-journal.jsonl"
    journal = PageJournal(path)
    journal.put("k1", "item_search_img", '{"items": 1}')
    journal.put("k1", "item_search_img", '{"items": "again"}')  # a call's first answer is the one kept
    journal.close()
    again = PageJournal(path)
    assert len(again) == 1 and again.get("k1") == '{"items": 1}' and "k2" not in again
    again.close()


def test_a_record_torn_by_a_kill_is_dropped_and_later_records_stay_readable(tmp_path: Path) -> None:
    path = tmp_path / "gateway-journal.jsonl"
    whole = json.dumps({"key": "k1", "method": "m", "body": "b1"}) + "\n"
    path.write_bytes(whole.encode() + b'{"key": "k2", "method": "m", "bo')  # killed mid-write
    journal = PageJournal(path)
    assert len(journal) == 1 and journal.get("k1") == "b1"
    assert path.stat().st_size == len(whole), "the torn record is cut away before anything is appended"
    journal.put("k3", "m", "b3")
    journal.close()
    reopened = PageJournal(path)
    assert (reopened.get("k1"), reopened.get("k2"), reopened.get("k3")) == ("b1", None, "b3")
    reopened.discard()
    assert not path.exists()
