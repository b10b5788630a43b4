from __future__ import annotations

from datetime import date

import pytest

from diffcore import layout


def test_names() -> None:
    assert layout.data_file_name(0) == "part-00000.jsonl"
    assert layout.data_file_name(123456, gzip=True) == "part-123456.jsonl.gz"
    assert layout.is_data_file("part-00001.jsonl") and layout.is_data_file("part-00001.jsonl.gz")
    for name in (
        "_manifest.json",
        "_bad_records.ndjson",
        ".part-00000.jsonl.tmp-1",
        "part-1.jsonl",
        "part-00000.json",
    ):
        assert not layout.is_data_file(name)


def test_notification_filter_matches_data_files_only() -> None:
    assert layout.is_notified("2026-11-25/part-00000.jsonl")
    assert layout.is_notified("2026-11-25/part-00000.jsonl.gz")
    for key in (
        layout.MANIFEST_NAME,
        layout.BAD_RECORDS_NAME,
        "_published/2026-11-25/part-00000.jsonl.json",
        layout.temp_name("part-00000.jsonl", "1"),
        layout.checkpoint_key("2026-11-25", "part-00000.jsonl"),
    ):
        assert not layout.is_notified(f"2026-11-25/{key}"), key


def test_folders() -> None:
    assert layout.date_folder(date(2026, 11, 25)) == "2026-11-25"
    assert layout.run_folder("s3://diffs/", "2026-11-25") == "s3://diffs/2026-11-25"
    assert layout.join("/tmp/x/", "/a/", "b") == "/tmp/x/a/b"
    assert (
        layout.checkpoint_key("2026-11-25", "part-00000.jsonl")
        == "_published/2026-11-25/part-00000.jsonl.json"
    )
    assert layout.temp_name("x.jsonl", "7").startswith(".")
    for bad in ("2026-02-30", "2026-1-1", "x"):
        with pytest.raises(ValueError):
            layout.date_folder(bad)
