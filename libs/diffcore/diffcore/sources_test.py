from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from diffcore import sources, store


def _touch(path: Path, text: str = '{"id":1}\n') -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("a.json", True),
        ("a.jsonl", True),
        ("a.ndjson", True),
        ("a.jsonl.gz", True),
        ("a.json.gz", True),
        ("a.ndjson.gz", True),
        ("a.csv", False),
        ("a.gz", False),
        ("_SUCCESS", False),
        ("_a.jsonl", False),
        (".a.jsonl", False),
        (".part-00000.jsonl.tmp-1", False),
        ("a.jsonl.tmp", False),
        ("", False),
    ],
)
def test_is_input_name(name: str, expected: bool) -> None:
    assert sources.is_input_name(name) is expected


def test_resolve_directory(tmp_path: Path) -> None:
    for rel in [
        "b.jsonl",
        "a.json",
        "c.ndjson.gz",
        "d.csv",
        "_SUCCESS",
        ".hidden.jsonl",
        "sub/e.jsonl",
        "_tmp/f.jsonl",
        ".spark/g.jsonl",
        "sub/.h.jsonl",
    ]:
        _touch(tmp_path / rel)
    got = [Path(p).relative_to(tmp_path).as_posix() for p in sources.resolve(str(tmp_path))]
    assert got == ["a.json", "b.jsonl", "c.ndjson.gz", "sub/e.jsonl"]


def test_resolve_file_glob_missing(tmp_path: Path) -> None:
    _touch(tmp_path / "x.txt")
    _touch(tmp_path / "p" / "2026-01.jsonl")
    _touch(tmp_path / "p" / "2026-02.jsonl")
    _touch(tmp_path / "p" / "notes.txt")
    # A file named explicitly is read whatever its suffix.
    assert sources.resolve(str(tmp_path / "x.txt")) == [str(tmp_path / "x.txt")]
    assert sources.resolve(str(tmp_path / "p" / "*")) == [
        str(tmp_path / "p" / "2026-01.jsonl"),
        str(tmp_path / "p" / "2026-02.jsonl"),
    ]
    assert len(sources.resolve(str(tmp_path / "**" / "*.jsonl"))) == 2
    assert sources.resolve(str(tmp_path / "nope")) == []
    assert sources.resolve(str(tmp_path / "nope" / "*.json")) == []


def test_resolve_s3(s3_bucket: str) -> None:
    base = f"s3://{s3_bucket}"
    for key in [
        "snap/a.jsonl",
        "snap/b.json.gz",
        "snap/_SUCCESS",
        "snap/.tmp.jsonl",
        "snap/_staging/x.jsonl",
        "snap/sub/c.ndjson",
        "snap2/z.jsonl",
    ]:
        store.write_bytes(f"{base}/{key}", b'{"id":1}\n')
    assert sources.resolve(f"{base}/snap/") == [
        f"{base}/snap/a.jsonl",
        f"{base}/snap/b.json.gz",
        f"{base}/snap/sub/c.ndjson",
    ]
    assert sources.resolve(f"{base}/snap") == sources.resolve(f"{base}/snap/")
    assert sources.resolve(f"{base}/snap/a.jsonl") == [f"{base}/snap/a.jsonl"]
    assert sources.resolve(f"{base}/snap/*.jsonl") == [f"{base}/snap/a.jsonl"]
    assert sources.resolve(f"{base}/snap/**/*.ndjson") == [f"{base}/snap/sub/c.ndjson"]
    assert sources.resolve(f"{base}/missing/") == []


def test_glob_regex() -> None:
    import re

    rx = re.compile(sources._glob_regex("s3://b/p/*/x-?.json"))
    assert rx.match("s3://b/p/2026/x-1.json")
    assert not rx.match("s3://b/p/2026/deeper/x-1.json")
    assert re.match(sources._glob_regex("s3://b/**/x.json"), "s3://b/a/b/x.json")
    assert re.match(sources._glob_regex("s3://b/[ab].json"), "s3://b/a.json")


def test_sniff_format() -> None:
    assert sources.sniff_format(b'  \n [ {"id":1} ]') == "array"
    assert sources.sniff_format(b'\xef\xbb\xbf[{"id":1}]') == "array"
    assert sources.sniff_format(b'{"id":1}\n') == "ndjson"
    assert sources.sniff_format(b"") == "ndjson"


def test_iter_ndjson(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id":1}\r\n\r\n   \n{"id":2}\n{"id":"\xff"}\n{"id":3}')
    records = list(sources.iter_records(str(path)))
    assert [(r.line, r.text, r.error is None) for r in records] == [
        (1, '{"id":1}', True),
        (4, '{"id":2}', True),
        (5, '{"id":"\ufffd"}', False),
        (6, '{"id":3}', True),
    ]
    assert "UTF-8" in (records[2].error or "")


def test_iter_gzip(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"id":1}\n\n{"id":2}\n'))
    assert [(r.line, r.text) for r in sources.iter_records(str(path))] == [
        (1, '{"id":1}'),
        (3, '{"id":2}'),
    ]


def test_iter_json_array(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('[\n  {"id": 1,\n   "v": [1, 2]},\n  {"id": "x\\ny"}, 5,\n\n  {"id": 3}\n]\n')
    records = list(sources.iter_records(str(path)))
    assert [(r.line, r.text) for r in records] == [
        (2, '{"id": 1,    "v": [1, 2]}'),
        (4, '{"id": "x\\ny"}'),
        (4, "5"),
        (6, '{"id": 3}'),
    ]
    assert all(r.error is None for r in records)


def test_iter_json_array_empty_and_malformed(tmp_path: Path) -> None:
    empty = tmp_path / "e.json"
    empty.write_text(" [ ] ")
    assert list(sources.iter_records(str(empty))) == []
    bad = tmp_path / "b.json"
    bad.write_text('[\n{"id":1},\n{"id":2,,},\n{"id":3}\n]')
    records = list(sources.iter_records(str(bad)))
    assert [(r.line, r.error is None) for r in records] == [(2, True), (3, False)]
    assert records[1].text.startswith('{"id":2,,}')


def test_array_then_more_is_ndjson(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('[1,2]\n{"id":1}\n')
    assert [(r.line, r.text) for r in sources.iter_records(str(path))] == [
        (1, "[1,2]"),
        (2, '{"id":1}'),
    ]


def test_iter_s3_gzip(s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/x/a.ndjson.gz"
    store.write_bytes(uri, gzip.compress(b'{"id":1}\n{"id":2}\n'))
    assert [r.text for r in sources.iter_records(uri)] == ['{"id":1}', '{"id":2}']
    assert sources.detect_format(uri) == "ndjson"


# ---------------------------------------------------------------------------- links and odd files


def test_symlinked_folders_are_followed(tmp_path: Path) -> None:
    """A snapshot whose partitions are symlinks: their files are part of it (skipping them
    would turn every record in them into a false delete)."""
    elsewhere = tmp_path / "elsewhere" / "p2"
    _touch(elsewhere / "b.jsonl")
    snap = tmp_path / "snap"
    _touch(snap / "p1" / "a.jsonl")
    (snap / "p2").symlink_to(elsewhere, target_is_directory=True)
    (snap / "c.jsonl").symlink_to(elsewhere / "b.jsonl")  # a symlinked file is read too
    assert sources.resolve(str(snap)) == [
        str(snap / "c.jsonl"),
        str(snap / "p1" / "a.jsonl"),
        str(snap / "p2" / "b.jsonl"),
    ]


def test_symlink_loop_and_double_link_are_refused_by_name(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    _touch(snap / "p1" / "a.jsonl")
    (snap / "p1" / "back").symlink_to(snap, target_is_directory=True)
    with pytest.raises(store.StoreError, match="back leads to .*symlink loop"):
        sources.resolve(str(snap))
    (snap / "p1" / "back").unlink()
    (snap / "again").symlink_to(snap / "p1", target_is_directory=True)
    with pytest.raises(store.StoreError, match="read twice"):
        sources.resolve(str(snap))


@pytest.mark.parametrize("how", ["directory", "glob", "explicit"])
def test_fifo_and_broken_link_are_refused_by_name(tmp_path: Path, how: str) -> None:
    import os

    from diffcore.errors import DiffError, ErrorClass

    snap = tmp_path / "snap"
    _touch(snap / "a.jsonl")
    os.mkfifo(snap / "pipe.jsonl")  # reading it would hang the run
    location = {
        "directory": str(snap),
        "glob": str(snap / "*.jsonl"),
        "explicit": str(snap / "pipe.jsonl"),
    }[how]
    with pytest.raises(DiffError) as info:
        sources.resolve(location)
    assert info.value.error_class is ErrorClass.IO_ERROR
    assert info.value.file == str(snap / "pipe.jsonl") and "FIFO" in info.value.message
    (snap / "pipe.jsonl").unlink()
    (snap / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    location = location.replace("pipe.jsonl", "gone.jsonl")
    with pytest.raises(DiffError, match="broken symlink"):
        sources.resolve(location)


def test_missing_bucket_is_a_store_error_naming_it(s3_bucket: str) -> None:
    with pytest.raises(store.StoreError, match="bucket 'no-such-bucket-4711' does not exist"):
        sources.resolve("s3://no-such-bucket-4711/exports/")
    with pytest.raises(store.StoreError, match="no-such-bucket-4711"):
        store.write_bytes("s3://no-such-bucket-4711/x.json", b"{}")
