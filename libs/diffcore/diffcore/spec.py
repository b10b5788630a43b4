"""The run specification: everything a diff run needs to know, engine-independent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from diffcore import layout
from diffcore.errors import DiffError, ErrorClass

BadRecordMode = Literal["fail", "quarantine"]
Side = Literal["before", "after"]
SIDES: tuple[Side, Side] = ("before", "after")


def parse_paths(text: str | None) -> tuple[str, ...]:
    """`"tenant, customer.id"` -> `("tenant", "customer.id")`; empty items are dropped."""
    if not text:
        return ()
    return tuple(p.strip() for p in text.split(",") if p.strip())


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

    @property
    def run_folder(self) -> str:
        return layout.run_folder(self.out, self.run_date)

    def location(self, side: Side) -> str:
        return self.before if side == "before" else self.after


def today_iso() -> str:
    return date.today().isoformat()
