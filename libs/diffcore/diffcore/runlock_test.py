from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from diffcore import childpython, layout, store
from diffcore.errors import DiffError, ErrorClass
from diffcore.runlock import RunLock

# ---------------------------------------------------------------------------- local folders


def test_second_run_is_refused_naming_the_first(tmp_path: Path) -> None:
    first, second = RunLock(str(tmp_path), "run-a"), RunLock(str(tmp_path), "run-b")
    first.acquire()
    with pytest.raises(DiffError) as info:
        second.acquire()
    assert info.value.error_class is ErrorClass.CONCURRENT_RUN
    assert "run run-a (pid" in info.value.message and info.value.file == first.location
    first.verify()
    first.release()
    assert not (tmp_path / layout.LOCK_NAME).exists()
    second.acquire()  # free again
    second.verify()
    second.release()


def test_release_is_idempotent_and_never_removes_anothers_lock(tmp_path: Path) -> None:
    a = RunLock(str(tmp_path), "run-a")
    a.acquire()
    a.release()
    b = RunLock(str(tmp_path), "run-b")
    b.acquire()
    a.release()  # a no longer holds anything
    assert json.loads((tmp_path / layout.LOCK_NAME).read_text())["run_id"] == "run-b"
    b.release()


def test_a_lock_file_replaced_under_a_run_fails_its_verify(tmp_path: Path) -> None:
    a = RunLock(str(tmp_path), "run-a")
    a.acquire()
    os.unlink(tmp_path / layout.LOCK_NAME)  # someone removed it by hand...
    b = RunLock(str(tmp_path), "run-b")
    b.acquire()  # ...and another run took the date
    with pytest.raises(DiffError) as info:
        a.verify()
    assert info.value.error_class is ErrorClass.CONCURRENT_RUN
    b.release()
    a.release()


HOLDER = """
import sys, time
from diffcore.runlock import RunLock
RunLock(sys.argv[1], "killed-run").acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_run_killed_with_sigkill_does_not_block_the_next(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=childpython.child_env(),
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(DiffError):
            RunLock(str(tmp_path), "next").acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    nxt = RunLock(str(tmp_path), "next")
    nxt.acquire()  # the kernel released the dead run's flock
    nxt.release()


# ---------------------------------------------------------------------------- S3 (moto)


@pytest.fixture()
def s3_folder(s3_bucket: str) -> str:
    """A date folder in a fresh bucket of the session's moto_server (conftest.py)."""
    return f"s3://{s3_bucket}/2026-11-25"


def test_s3_second_run_is_refused_then_goes_after_release(s3_folder: str) -> None:
    a, b = RunLock(s3_folder, "run-a"), RunLock(s3_folder, "run-b")
    a.acquire()
    with pytest.raises(DiffError) as info:
        b.acquire()
    assert info.value.error_class is ErrorClass.CONCURRENT_RUN
    assert "run run-a" in info.value.message and "expires at" in info.value.message
    a.verify()
    a.release()
    assert not store.exists(a.location)
    b.acquire()
    b.release()


def test_s3_expired_lock_is_taken_over_and_its_owner_loses(s3_folder: str) -> None:
    dead = RunLock(s3_folder, "run-dead", ttl=timedelta(seconds=-1))  # expired at birth
    dead.acquire()
    heir = RunLock(s3_folder, "run-heir")
    heir.acquire()
    with pytest.raises(DiffError) as info:
        dead.verify()
    assert "run run-heir" in info.value.message
    dead.release()  # conditional on its own ETag: the heir's lock stays
    assert json.loads(store.read_bytes(heir.location))["run_id"] == "run-heir"
    heir.verify()
    heir.release()


# ---------------------------------------------------------------------------- two real runs


def _records(path: Path, n: int, version: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "data.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "v": (i * version) % 7, "pad": "x" * 40}) + "\n")


def _consistent(folder: Path) -> bool:
    manifest = json.loads((folder / layout.MANIFEST_NAME).read_text())
    listed = {f["name"] for f in manifest["files"]}
    present = {p.name for p in folder.iterdir() if layout.is_data_file(p.name)}
    if listed != present:
        return False
    for f in manifest["files"]:
        data = (folder / f["name"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != f["sha256"] or len(data) != f["bytes"]:
            return False
    return True


def test_two_cli_runs_at_once_leave_one_consistent_day(tmp_path: Path) -> None:
    """`diffcore diff` twice at once, same --out and --run-date, different inputs: each pair
    ends with exit codes (0, 10) or, if they did not overlap, (0, 0); never two winners of
    one overlap, and the day's manifest always matches its files."""
    before, after1, after2 = tmp_path / "b", tmp_path / "a1", tmp_path / "a2"
    _records(before, 100_000, 1)
    _records(after1, 100_000, 2)
    _records(after2, 100_000, 3)
    out = tmp_path / "out"
    env = childpython.child_env()
    outcomes = []
    for _ in range(3):
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "diffcore", "diff", str(before), str(after), "--key",
                 "id", "--out", str(out), "--run-date", "2026-11-25", "--quiet",
                 "--max-records-per-file", "2000"],
                stderr=subprocess.PIPE, text=True, env=env,
            )
            for after in (after1, after2)
        ]  # fmt: skip
        codes = []
        for p in procs:
            _, err = p.communicate(timeout=300)
            codes.append(p.returncode)
            assert p.returncode in (0, 10), err
            if p.returncode == 10:
                assert "concurrent_run" in err and "this run wrote nothing" in err
        outcomes.append(tuple(codes))
        assert 0 in codes
        assert _consistent(out / "2026-11-25")
        assert not (out / "2026-11-25" / layout.LOCK_NAME).exists()
        time.sleep(0.1)
    print("outcomes", outcomes)
