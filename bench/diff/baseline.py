"""A baseline checkout for the diff bench: the engine as of another commit, built and ready to
run beside the work tree's (`bench.diff.run --baseline DIR --tools engine,baseline,...`).

    PYTHONPATH=. .venv/bin/python -m bench.diff.baseline COMMIT [--out /tmp/bench-baseline]

Exports `libs/diffcore` and `libs/linescan` of COMMIT (`git archive`) into `--out/COMMIT`, and
builds the C scanner in place there with the dev venv's compiler toolchain (`setup.py
build_ext --inplace`), so that the `baseline` tool's PYTHONPATH finds that commit's diffcore
and linescan before the work tree's.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def export(commit: str, out: Path) -> Path:
    target = out / commit
    if (target / "libs" / "linescan" / "linescan").is_dir():
        return target  # built already
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "libs/diffcore", "libs/linescan"],
        check=True,
        capture_output=True,
    ).stdout
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=target / "libs" / "linescan",
        check=True,
    )
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.diff.baseline", description=__doc__)
    ap.add_argument("commit")
    ap.add_argument("--out", default="/tmp/bench-baseline")
    a = ap.parse_args(argv)
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", a.commit],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(export(sha, Path(a.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
