from __future__ import annotations

import os
from pathlib import Path

import pytest

from diffcore import store


def test_locations() -> None:
    assert store.is_s3("s3://b/k") and not store.is_s3("/tmp/x")
    assert store.split_s3("s3://bucket/a/b.json") == ("bucket", "a/b.json")
    assert store.split_s3("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError):
        store.split_s3("/local")
    with pytest.raises(ValueError):
        store.split_s3("s3:///key")
    assert store.join("s3://b/", "2026-11-25/", "part") == "s3://b/2026-11-25/part"
    assert store.basename("s3://b/x/y.json") == "y.json"
    assert store.parent("s3://b/x/y.json") == "s3://b/x"


def test_local_write_read_list_delete(tmp_path: Path) -> None:
    target = str(tmp_path / "a" / "b" / "c.json")
    store.write_text(target, "hello ☃")
    assert store.read_text(target) == "hello ☃"
    assert store.read_bytes(target) == "hello ☃".encode()
    assert store.exists(target) and store.size(target) == len("hello ☃".encode())
    assert not store.exists(str(tmp_path / "a"))  # a directory is not a file
    store.write_bytes(str(tmp_path / "a" / "z.bin"), b"z")
    assert store.list_files(str(tmp_path)) == sorted(
        [str(tmp_path / "a" / "b" / "c.json"), str(tmp_path / "a" / "z.bin")]
    )
    assert store.list_files(target) == [target]
    assert store.list_files(str(tmp_path / "missing")) == []
    store.delete(target)
    store.delete(target)  # deleting twice is fine
    assert not store.exists(target)


def test_local_open_write_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "part-00000.jsonl"
    target.write_text("old\n")
    with store.open_write(str(target)) as f:
        f.write(b"new ")
        # Not visible yet: the old content is still there, the new bytes are in a dot file.
        assert target.read_text() == "old\n"
        temps = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
        assert len(temps) == 1 and temps[0].startswith(".part-00000.jsonl.tmp-")
        f.write(b"content\n")
    assert target.read_text() == "new content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.jsonl"]


def test_local_open_write_error_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    with pytest.raises(RuntimeError):
        with store.open_write(str(target)) as f:
            f.write(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_local_copy_and_move(tmp_path: Path) -> None:
    src = str(tmp_path / "src.txt")
    store.write_bytes(src, b"data")
    store.copy(src, str(tmp_path / "d" / "copy.txt"))
    assert store.read_bytes(str(tmp_path / "d" / "copy.txt")) == b"data"
    store.move(src, str(tmp_path / "e" / "moved.txt"))
    assert not os.path.exists(src)
    assert store.read_bytes(str(tmp_path / "e" / "moved.txt")) == b"data"


def test_open_read_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.open_read(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        store.open_read(str(tmp_path / "nope"), start=3)


def test_local_open_read_from_a_byte(tmp_path: Path) -> None:
    target = str(tmp_path / "a.jsonl")
    store.write_bytes(target, b"0123456789")
    with store.open_read(target, start=0) as f:
        assert f.read() == b"0123456789"
    with store.open_read(target, start=4) as f:
        assert f.read(3) == b"456"
        assert f.readline() == b"789"


# --------------------------------------------------------------------------------------------
# S3 (moto_server)


def test_s3_roundtrip(s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/2026-11-25/part-00000.jsonl"
    assert not store.exists(uri)
    store.write_text(uri, "line\n")
    assert store.exists(uri)
    assert store.read_text(uri) == "line\n"
    assert store.size(uri) == 5
    with store.open_read(uri) as f:
        assert f.read(2) == b"li"
        assert f.read() == b"ne\n"
    store.delete(uri)
    assert not store.exists(uri)
    store.delete(uri)
    with pytest.raises(FileNotFoundError):
        store.open_read(uri)


def test_s3_open_read_from_a_byte(s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/ranged.jsonl"
    store.write_bytes(uri, b"0123456789")
    with store.open_read(uri, start=0) as f:
        assert f.read() == b"0123456789"
    with store.open_read(uri, start=4) as f:  # a ranged GET
        assert f.read(3) == b"456"
        assert f.readline() == b"789"
    with store.open_read(uri, start=9) as f:
        assert f.read() == b"9"
    with pytest.raises(FileNotFoundError):
        store.open_read(f"s3://{s3_bucket}/missing.jsonl", start=4)


def test_s3_list_prefix_semantics(s3_bucket: str) -> None:
    for key in ("x/a.json", "x/sub/b.json", "x2/c.json", "x", "y.json"):
        store.write_bytes(f"s3://{s3_bucket}/{key}", b"{}")
    base = f"s3://{s3_bucket}"
    assert store.list_files(f"{base}/x/") == [f"{base}/x/a.json", f"{base}/x/sub/b.json"]
    # `x` (no slash) is the object x itself plus the folder x/, never x2/.
    assert store.list_files(f"{base}/x") == [
        f"{base}/x",
        f"{base}/x/a.json",
        f"{base}/x/sub/b.json",
    ]
    assert len(store.list_files(base)) == 5
    assert store.list_files(f"{base}/nothing/") == []


def test_s3_multipart_write_and_copy(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"s3://{s3_bucket}/big.bin"
    blob = os.urandom(256 * 1024) * 48  # 12 MiB: three parts of 5 MiB (the S3 minimum)
    monkeypatch.setattr(store, "MULTIPART_PART_SIZE", 5 * 1024 * 1024)
    with store.open_write(uri) as f:
        for i in range(0, len(blob), 1_000_000):
            f.write(blob[i : i + 1_000_000])
    assert store.read_bytes(uri) == blob
    store.copy(uri, f"s3://{s3_bucket}/copy/big.bin")
    assert store.size(f"s3://{s3_bucket}/copy/big.bin") == len(blob)
    store.move(f"s3://{s3_bucket}/copy/big.bin", f"s3://{s3_bucket}/moved.bin")
    assert not store.exists(f"s3://{s3_bucket}/copy/big.bin")
    assert store.exists(f"s3://{s3_bucket}/moved.bin")


def test_s3_failed_write_leaves_nothing(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "MULTIPART_PART_SIZE", 5 * 1024 * 1024)
    uri = f"s3://{s3_bucket}/failed.bin"
    with pytest.raises(RuntimeError):
        with store.open_write(uri) as f:
            f.write(b"x" * (6 * 1024 * 1024))  # one part already uploaded
            raise RuntimeError("boom")
    assert not store.exists(uri)
    uploads = store.s3_client().list_multipart_uploads(Bucket=s3_bucket)
    assert not uploads.get("Uploads")


def test_copy_between_local_and_s3(s3_bucket: str, tmp_path: Path) -> None:
    local = str(tmp_path / "a.json")
    store.write_bytes(local, b'{"a":1}')
    store.copy(local, f"s3://{s3_bucket}/a.json")
    store.copy(f"s3://{s3_bucket}/a.json", str(tmp_path / "b.json"))
    assert store.read_bytes(str(tmp_path / "b.json")) == b'{"a":1}'


def test_a_commit_that_fails_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills up at the commit (fsync reports ENOSPC: delayed allocation) makes the
    write fail with the OSError and leaves neither the final name nor the temporary."""
    import errno

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", full)
    target = tmp_path / "part-00000.jsonl"
    with pytest.raises(OSError) as info:
        store.write_bytes(str(target), b'{"a":1}\n')
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
