from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcore import layout, store
from diffcore.manifest import Counts, DataFile, Engine, InputSide, Manifest, SchemaDrift
from diffcore.output import BadRecord, RunWriter, describe_file, read_manifest
from diffcore.spec import OutputOptions


def _manifest(files: tuple[DataFile, ...], bad: str | None = None) -> Manifest:
    side = InputSide("x", (), 0)
    return Manifest(
        run_date="2026-11-25",
        engine=Engine("test", "0"),
        key=("id",),
        ignored=(),
        before=side,
        after=side,
        counts=Counts(),
        files=files,
        schema_drift=SchemaDrift(),
        started_at="t0",
        finished_at="t1",
        bad_records_file=bad,
    )


def _check_files(folder: str, files: tuple[DataFile, ...]) -> list[str]:
    lines = []
    for f in files:
        data = store.read_bytes(store.join(folder, f.name))
        assert len(data) == f.bytes
        assert hashlib.sha256(data).hexdigest() == f.sha256
        if f.name.endswith(".gz"):
            data = gzip.decompress(data)
        text = data.decode()
        assert text.endswith("\n") and text.count("\n") == f.records
        lines += text.splitlines()
    return lines


def test_parts_bounded_by_records(tmp_path: Path) -> None:
    folder = str(tmp_path / "2026-11-25")
    w = RunWriter(folder, OutputOptions(max_records_per_file=3))
    w.begin()
    lines = [f'{{"n":{i}}}' for i in range(7)]
    w.write_many(lines)
    files, bad = w.finish()
    assert [f.name for f in files] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert [f.records for f in files] == [3, 3, 1]
    assert bad is None
    assert _check_files(folder, files) == lines


def test_parts_bounded_by_bytes_and_write_sized_agrees(tmp_path: Path) -> None:
    lines = [("é" * (i % 7)) + f"line-{i}" for i in range(50)]
    opts = OutputOptions(max_bytes_per_file=40, max_records_per_file=1000)
    a = RunWriter(str(tmp_path / "a"), opts)
    a.begin()
    a.write_many(lines)
    files_a, _ = a.finish()
    b = RunWriter(str(tmp_path / "b"), opts)
    b.begin()
    b.write_lines(lines[:20])
    b.write_lines(lines[20:])
    files_b, _ = b.finish()
    assert files_a == files_b
    for f in files_a:
        assert f.bytes <= 40
    # A line longer than the bound goes alone into its own part.
    c = RunWriter(str(tmp_path / "c"), opts)
    c.begin()
    c.write_lines(["x" * 100, "y"])
    files_c, _ = c.finish()
    assert [f.records for f in files_c] == [1, 1]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 12), max_size=40),
    st.integers(1, 40),
    st.integers(1, 7),
    st.lists(st.integers(1, 40), max_size=4),
)
def test_write_sized_cuts_parts_as_write_does(
    lengths: list[int], max_bytes: int, max_records: int, cuts: list[int]
) -> None:
    import tempfile

    lines = [("é" if n % 3 == 0 else "x") * n for n in lengths]
    opts = OutputOptions(max_bytes_per_file=max_bytes, max_records_per_file=max_records)
    with tempfile.TemporaryDirectory() as tmp:
        one = RunWriter(f"{tmp}/one", opts)
        one.begin()
        one.write_many(lines)
        blocks = RunWriter(f"{tmp}/blocks", opts)
        blocks.begin()
        start = 0
        for cut in cuts + [len(lines)]:  # blocks of any size, one after the other
            blocks.write_lines(lines[start : start + cut])
            start += cut
        assert one.finish() == blocks.finish()


def test_gzip_parts_are_deterministic(tmp_path: Path) -> None:
    lines = [json.dumps({"n": i}) for i in range(100)]
    out = []
    for name in ("a", "b"):
        w = RunWriter(str(tmp_path / name), OutputOptions(gzip=True, max_records_per_file=60))
        w.begin()
        w.write_many(lines)
        files, _ = w.finish()
        out.append(files)
        assert [f.name for f in files] == ["part-00000.jsonl.gz", "part-00001.jsonl.gz"]
        assert _check_files(str(tmp_path / name), files) == lines
    assert out[0] == out[1]


def test_rerun_replaces_and_removes_stale(tmp_path: Path) -> None:
    folder = str(tmp_path / "2026-11-25")
    w = RunWriter(folder, OutputOptions(max_records_per_file=1))
    w.begin()
    w.write_many(["a", "b", "c"])
    w.add_bad_record(BadRecord("malformed_json", "bad", "before", "f.jsonl", 3, "{"))
    files, bad = w.finish()
    w.write_manifest(_manifest(files, bad))
    assert sorted(p.name for p in Path(folder).iterdir()) == [
        "_bad_records.ndjson",
        "_manifest.json",
        "part-00000.jsonl",
        "part-00001.jsonl",
        "part-00002.jsonl",
    ]
    # A rerun: the manifest goes first, the stale parts and bad-records file at finish().
    w2 = RunWriter(folder, OutputOptions(gzip=True))
    w2.begin()
    assert not (Path(folder) / "_manifest.json").exists()
    w2.write("z")
    files2, bad2 = w2.finish()
    assert bad2 is None
    assert sorted(p.name for p in Path(folder).iterdir()) == [
        layout.LOCK_NAME,
        "part-00000.jsonl.gz",
    ]
    w2.write_manifest(_manifest(files2))
    assert read_manifest(folder) == _manifest(files2)


def test_empty_run_and_manifest_last(tmp_path: Path) -> None:
    folder = str(tmp_path / "d")
    w = RunWriter(folder)
    w.begin()
    with pytest.raises(RuntimeError):
        w.write_manifest(_manifest(()))
    files, bad = w.finish()
    assert files == () and bad is None
    w.write_manifest(_manifest(files))
    assert [p.name for p in Path(folder).iterdir()] == [layout.MANIFEST_NAME]
    assert read_manifest(str(tmp_path / "other")) is None


def test_abort_leaves_no_temp_and_no_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    with pytest.raises(ValueError):
        with RunWriter(str(folder), OutputOptions(max_records_per_file=2)) as w:
            w.begin()
            w.write_many(["a", "b", "c"])  # part-00000 complete, part-00001 open
            raise ValueError("bad input")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["part-00000.jsonl"]  # complete, but no manifest: the date is not ready


def test_bad_record_line() -> None:
    line = BadRecord(
        "missing_key", "key field 'id' is missing", "after", "s3://b/a.jsonl", 7, '{"v":"é"}'
    ).to_line()
    assert json.loads(line) == {
        "reason": "missing_key",
        "message": "key field 'id' is missing",
        "side": "after",
        "file": "s3://b/a.jsonl",
        "line": 7,
        "raw": '{"v":"é"}',
    }
    assert "é" in line


def test_finish_moves_a_staged_bad_records_file(tmp_path: Path) -> None:
    folder = tmp_path / "2026-11-25"
    folder.mkdir()
    (folder / layout.BAD_RECORDS_NAME).write_text("old\n")
    staged = tmp_path / "staging" / "bad-records-00000.staged"
    staged.parent.mkdir()
    line = BadRecord("malformed_json", "bad", "after", "a.jsonl", 2, "{").to_line() + "\n"
    staged.write_text(line)
    w = RunWriter(str(folder))
    w.begin()
    w.write("e")
    files, bad = w.finish(staged_bad_records=str(staged))
    assert bad == layout.BAD_RECORDS_NAME
    assert (folder / layout.BAD_RECORDS_NAME).read_text() == line
    assert not staged.exists()
    assert sorted(p.name for p in folder.iterdir()) == [
        layout.BAD_RECORDS_NAME,
        layout.LOCK_NAME,  # held until the manifest is written
        files[0].name,
    ]
    # Both a staged file and bad records added: which one would be the quarantine file?
    w2 = RunWriter(str(tmp_path / "other"))
    w2.begin()
    w2.add_bad_record(BadRecord("missing_key", "no id", "before", "b.jsonl", 1, "{}"))
    with pytest.raises(ValueError):
        w2.finish(staged_bad_records=str(folder / layout.BAD_RECORDS_NAME))


def test_s3_finish_moves_a_staged_bad_records_file(s3_bucket: str) -> None:
    folder = f"s3://{s3_bucket}/diffs/2026-11-25"
    staged = f"s3://{s3_bucket}/staging/bad.staged"
    store.write_text(staged, "x\n")
    w = RunWriter(folder)
    w.begin()
    _, bad = w.finish(staged_bad_records=staged)
    assert bad == layout.BAD_RECORDS_NAME
    assert store.read_text(store.join(folder, bad)) == "x\n"
    assert not store.exists(staged)


def test_describe_and_promote_local(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "s0.staged").write_bytes(b"a\nb\n")
    (staging / "s1.staged").write_bytes(b"")
    (staging / "s2.staged").write_bytes(b"c")  # no final newline: still one record
    assert describe_file(str(staging / "s2.staged")).records == 1
    folder = str(tmp_path / "out" / "2026-11-25")
    w = RunWriter(folder)
    w.begin()
    w.write("first")
    promoted = w.promote([str(staging / n) for n in ("s0.staged", "s1.staged", "s2.staged")])
    assert [f.name for f in promoted] == ["part-00001.jsonl", "part-00002.jsonl"]
    files, _ = w.finish()
    assert [f.name for f in files] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert [f.records for f in files] == [1, 2, 1]
    assert list(staging.iterdir()) == []
    for f in files:
        assert describe_file(store.join(folder, f.name)) == f


def test_s3_run(s3_bucket: str) -> None:
    folder = f"s3://{s3_bucket}/diffs/2026-11-25"
    store.write_text(f"{folder}/part-00009.jsonl", "stale\n")
    store.write_text(f"{folder}/_manifest.json", "{}")
    w = RunWriter(folder, OutputOptions(max_records_per_file=2, gzip=True))
    w.begin()
    assert not store.exists(f"{folder}/_manifest.json")
    w.write_many(["a", "b", "c"])
    staged = f"s3://{s3_bucket}/staging/x.staged"
    store.write_bytes(staged, gzip.compress(b"d\n"))
    w.promote([staged])
    files, _ = w.finish()
    w.write_manifest(_manifest(files))
    names = sorted(store.basename(u) for u in store.list_files(folder))
    assert names == [
        "_manifest.json",
        "part-00000.jsonl.gz",
        "part-00001.jsonl.gz",
        "part-00002.jsonl.gz",
    ]
    assert _check_files(folder, files) == ["a", "b", "c", "d"]
    assert not store.exists(staged)
    assert read_manifest(folder) == _manifest(files)


def test_promote_with_entries_from_the_writer_reads_nothing_again(tmp_path: Path) -> None:
    staged = tmp_path / "s0.staged"
    staged.write_bytes(b"a\nb\n")
    want = describe_file(str(staged))
    folder = str(tmp_path / "out" / "2026-11-25")
    w = RunWriter(folder)
    w.begin()
    (promoted,) = w.promote([str(staged)], described=[want])
    assert (promoted.name, promoted.records, promoted.bytes, promoted.sha256) == (
        "part-00000.jsonl",
        want.records,
        want.bytes,
        want.sha256,
    )
    assert describe_file(store.join(folder, promoted.name)) == promoted
