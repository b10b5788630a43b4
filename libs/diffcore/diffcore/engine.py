"""What an engine is: a function from a run specification to a complete, written run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from diffcore.manifest import Manifest
from diffcore.spec import RunSpec


@dataclass(frozen=True)
class RunResult:
    """A finished run: where it was written and its manifest (already written, last)."""

    folder: str
    manifest: Manifest


class Engine(Protocol):
    name: str

    def run(self, spec: RunSpec) -> RunResult:
        """Diff `spec.before` against `spec.after` and write `spec.out/<run_date>/`.

        Raises `diffcore.errors.DiffError` for bad input; then no manifest is written.
        """
        ...
