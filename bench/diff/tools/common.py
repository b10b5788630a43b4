"""What every tool script shares: its arguments and its one line of JSON on stdout."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def snapshot_files(folder: str) -> list[str]:
    """The NDJSON files of a snapshot folder, sorted (the generator writes `part-NNNN.ndjson`)."""
    files = sorted(str(p) for p in Path(folder).glob("*.ndjson"))
    if not files:
        raise SystemExit(f"no *.ndjson files in {folder}")
    return files


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--before", required=True, help="folder of the before snapshot")
    ap.add_argument("--after", required=True, help="folder of the after snapshot")
    ap.add_argument("--out", required=True, help="folder to write the output into")
    ap.add_argument("--key", default="id")
    ap.add_argument("--truth", help="truth.json (only the floor reads it: how much to write)")
    a = ap.parse_args(argv)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    return a


class Phases:
    """`with phases("read"): ...` records the seconds of each phase."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.times: dict[str, float] = {}
        self._name = ""
        self._start = 0.0

    def __call__(self, name: str) -> Phases:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.times[self._name] = round(time.perf_counter() - self._start, 3)


def emit(counts: dict[str, int] | None, phases: Phases, **extra: Any) -> None:
    out = {"counts": counts, "phases": phases.times, **extra}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
