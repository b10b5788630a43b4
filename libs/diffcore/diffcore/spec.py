"""The run specification: everything a diff run needs to know, engine-independent."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from diffcore import layout
from diffcore.errors import DiffError, ErrorClass

BadRecordMode = Literal["fail", "quarantine"]
Side = Literal["before", "after"]
SIDES: tuple[Side, Side] = ("before", "after")


def parse_paths(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """`"tenant, customer.id"` -> `("tenant", "customer.id")`; empty items are dropped.

    Several texts (a repeated CLI flag: `--key region --key id,sub`) are joined in order:
    `("region", "id", "sub")`. A path given twice is kept twice: `RunSpec` refuses it."""
    if not text:
        return ()
    texts = (text,) if isinstance(text, str) else tuple(text)
    return tuple(p.strip() for t in texts for p in t.split(",") if p.strip())


def _repeated(paths: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for path in paths:
        if path in seen and path not in repeated:
            repeated.append(path)
        seen.add(path)
    return repeated


def key_value_problem(path: str, value: Any) -> str | None:
    """Why the value a record holds at key path `path` is no key value (a `missing_key` bad
    record, the same message in every engine), or None: a key field holds a scalar; a
    missing, null, object or array value is missing (docs/decisions.md, "Keys and inputs")."""
    if value is None:
        return f"key field {path!r} is missing or null"
    if isinstance(value, dict):
        return f"key field {path!r} is an object, not a scalar key value"
    if isinstance(value, list):
        return f"key field {path!r} is an array, not a scalar key value"
    return None


def _folder_of(location: str) -> str:
    """The folder a location names, for overlap checks: a glob's fixed part, no trailing `/`;
    local paths absolute with symlinks resolved (the folder need not exist yet)."""
    import os
    import re

    glob_at = re.search(r"[*?\[]", location)
    if glob_at:
        location = location[: glob_at.start()].rpartition("/")[0] or "."
    if layout.is_s3(location):
        return location.rstrip("/")
    return os.path.realpath(location)


def locations_overlap(a: str, b: str) -> bool:
    """Whether one location lies inside the other (or they are the same): local paths after
    resolving symlinks, S3 prefixes by their text; a local path never overlaps an S3 one."""
    fa, fb = _folder_of(a), _folder_of(b)
    if layout.is_s3(fa) != layout.is_s3(fb):
        return False
    return fa == fb or fa.startswith(fb.rstrip("/") + "/") or fb.startswith(fa.rstrip("/") + "/")


def parse_allow_empty(text: str | None) -> frozenset[Side]:
    """`none`, `before`, `after`, `both` (or a comma list) -> the sides allowed to be empty."""
    if not text or text.strip() == "none":
        return frozenset()
    if text.strip() == "both":
        return frozenset(SIDES)
    sides = set(parse_paths(text))
    unknown = sides - set(SIDES)
    if unknown:
        raise DiffError(
            ErrorClass.CONFIG_ERROR,
            f"allow-empty takes none, before, after or both; got {sorted(unknown)}",
        )
    return frozenset(sides)  # type: ignore[arg-type]


@dataclass(frozen=True)
class OutputOptions:
    gzip: bool = False
    max_records_per_file: int = layout.DEFAULT_MAX_RECORDS_PER_FILE
    max_bytes_per_file: int = layout.DEFAULT_MAX_BYTES_PER_FILE

    def __post_init__(self) -> None:
        if self.max_records_per_file < 1 or self.max_bytes_per_file < 1:
            raise DiffError(ErrorClass.CONFIG_ERROR, "part file bounds must be positive")


@dataclass(frozen=True)
class RunSpec:
    """One diff run: `before` and `after` snapshots compared by `key`, written to `out/<run_date>/`."""

    before: str
    after: str
    key: tuple[str, ...]
    out: str
    run_date: str
    ignore: tuple[str, ...] = ()
    bad_records: BadRecordMode = "fail"
    allow_empty: frozenset[Side] = frozenset()
    output: OutputOptions = field(default_factory=OutputOptions)

    def __post_init__(self) -> None:
        if not self.key:
            raise DiffError(ErrorClass.CONFIG_ERROR, "a key needs at least one field path")
        for path in self.key + self.ignore:
            if not path or any(not step for step in path.split(".")):
                raise DiffError(ErrorClass.CONFIG_ERROR, f"invalid field path {path!r}")
        for name, paths in (("key", self.key), ("ignore", self.ignore)):
            repeated = _repeated(paths)
            if repeated:
                raise DiffError(
                    ErrorClass.CONFIG_ERROR,
                    f"{name} field path given twice: {', '.join(map(repr, repeated))}",
                )
        overlap = [k for k in self.key if any(k == i or k.startswith(i + ".") for i in self.ignore)]
        if overlap:
            raise DiffError(ErrorClass.CONFIG_ERROR, f"key fields cannot be ignored: {overlap}")
        if self.bad_records not in ("fail", "quarantine"):
            raise DiffError(
                ErrorClass.CONFIG_ERROR,
                f"bad-records mode is fail or quarantine, got {self.bad_records!r}",
            )
        try:
            layout.date_folder(self.run_date)
        except ValueError as exc:
            raise DiffError(ErrorClass.CONFIG_ERROR, str(exc)) from None
        for side in SIDES:
            if locations_overlap(self.run_folder, self.location(side)):
                raise DiffError(
                    ErrorClass.CONFIG_ERROR,
                    f"the output folder {self.run_folder} and the {side} snapshot "
                    f"{self.location(side)} overlap: a rerun would read its own output as "
                    "input (or the run would replace input files); write the output elsewhere",
                )

    @property
    def run_folder(self) -> str:
        return layout.run_folder(self.out, self.run_date)

    def location(self, side: Side) -> str:
        return self.before if side == "before" else self.after


def today_iso() -> str:
    return date.today().isoformat()
