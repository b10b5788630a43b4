"""Faults around a real `diffcore diff` process: a full disk, SIGKILL at random moments.

Whatever happens, a date is either complete (a manifest whose files match it byte for byte) or
visibly not ready (no manifest), the temporaries of a failed run do not outlive it, and the next
run of the date succeeds and leaves no temporary behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffcore import childpython, layout

RUN_DATE = "2026-11-25"


def _records(path: Path, n: int, version: int) -> str:
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "data.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "v": (i * version) % 5, "pad": "y" * 60}) + "\n")
    return str(path)


def _diff(before: str, after: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "diffcore", "diff", before, after, "--key", "id",
         "--out", str(out), "--run-date", RUN_DATE, "--quiet",
         "--max-records-per-file", "5000", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=childpython.child_env(),
    )  # fmt: skip


def _state(folder: Path) -> str:
    """'complete' (manifest matches files), 'not ready' (no manifest), or what is wrong."""
    manifest_path = folder / layout.MANIFEST_NAME
    if not manifest_path.exists():
        return "not ready"
    manifest = json.loads(manifest_path.read_text())
    listed = {f["name"]: f for f in manifest["files"]}
    present = {p.name for p in folder.iterdir() if layout.is_data_file(p.name)}
    if set(listed) != present:
        return f"manifest lists {sorted(listed)}, folder has {sorted(present)}"
    for name, f in listed.items():
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != f["sha256"]:
            return f"{name} does not match its manifest entry"
    return "complete"


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs (needs root, as CI runs; skipped elsewhere)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_is_an_io_error_and_leaves_nothing_half_written(
    tmp_path: Path, small_disk: Path
) -> None:
    before = _records(tmp_path / "b", 40_000, 1)
    after = _records(tmp_path / "a", 40_000, 2)  # ~4 MB of events: twice the disk
    proc = _diff(before, after, small_disk)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 8, err
    assert "io_error" in err and "Traceback" not in err
    folder = small_disk / RUN_DATE
    assert _state(folder) == "not ready"
    leftovers = [
        p.name for p in folder.iterdir() if p.name.startswith(".") or p.name == layout.LOCK_NAME
    ]
    assert leftovers == [], f"a failed run left {leftovers}"
    # With room again, the date completes.
    proc = _diff(before, _records(tmp_path / "a2", 40_000, 1), small_disk)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert _state(folder) == "complete"


def test_sigkill_at_random_moments_never_leaves_a_wrong_day(tmp_path: Path) -> None:
    before = _records(tmp_path / "b", 60_000, 1)
    after = _records(tmp_path / "a", 60_000, 2)
    out = tmp_path / "out"
    folder = out / RUN_DATE
    rng = random.Random(20261207)
    t0 = time.monotonic()
    proc = _diff(before, after, out)
    proc.communicate(timeout=300)
    full = time.monotonic() - t0  # one whole run, to aim the kills inside it
    assert proc.returncode == 0 and _state(folder) == "complete"
    for _ in range(6):
        proc = _diff(before, after, out)
        time.sleep(rng.uniform(0.05, full))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        state = _state(folder)
        assert state in ("complete", "not ready"), state
    proc = _diff(before, after, out)  # the next run cleans up and completes
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert _state(folder) == "complete"
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert not (folder / layout.LOCK_NAME).exists()


def test_missing_output_bucket_is_exit_8_naming_it(tmp_path: Path, moto_endpoint: str) -> None:
    """`--out s3://missing-bucket`: one line, `io_error`, the bucket named; no traceback."""
    before = _records(tmp_path / "b", 10, 1)
    after = _records(tmp_path / "a", 10, 2)
    proc = subprocess.run(
        [sys.executable, "-m", "diffcore", "diff", before, after, "--key", "id",
         "--out", "s3://no-such-diffs-bucket-4711", "--run-date", RUN_DATE],
        capture_output=True, text=True, env=childpython.child_env(), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 8, proc.stderr
    assert "io_error" in proc.stderr and "'no-such-diffs-bucket-4711' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_output_inside_an_input_snapshot_is_a_usage_error(tmp_path: Path) -> None:
    """A rerun would read its own part files as input records: refused, naming both paths."""
    before = _records(tmp_path / "b", 10, 1)
    after = _records(tmp_path / "a", 10, 2)
    out = tmp_path / "a" / "diffs"
    proc = subprocess.run(
        [sys.executable, "-m", "diffcore", "diff", before, after, "--key", "id",
         "--out", str(out), "--run-date", RUN_DATE],
        capture_output=True, text=True, env=childpython.child_env(), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert str(out / RUN_DATE) in proc.stderr and f"after snapshot {after}" in proc.stderr
    assert not out.exists()
