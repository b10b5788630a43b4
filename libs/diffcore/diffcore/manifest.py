"""The manifest (contract section 5): written last, it marks a run date's output complete."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from diffcore import CONTRACT_VERSION
from diffcore.jsonvalue import escape_lone_surrogates


@dataclass(frozen=True)
class InputFile:
    path: str
    records: int


@dataclass(frozen=True)
class InputSide:
    location: str
    files: tuple[InputFile, ...]
    records: int  # every non-blank line (array element), bad records included
    bad_records: int = 0  # quarantined
    # Quarantined records whose key could not be read from the line (contract §6): a record
    # that may exist without any event for it; the publisher refuses a day with such lines
    # on the after side unless told to accept them.
    unreadable_keys: int = 0


@dataclass(frozen=True)
class DataFile:
    name: str
    records: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Counts:
    c: int = 0
    u: int = 0
    d: int = 0
    unchanged: int = 0
    bad_records: int = 0
    # Keys with a valid record that got no event because a quarantined line names them too
    # (contract §6: a bad record is never a change).
    withheld: int = 0

    @property
    def changes(self) -> int:
        return self.c + self.u + self.d


@dataclass(frozen=True)
class TypeChange:
    path: str
    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass(frozen=True)
class SchemaDrift:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    type_changed: tuple[TypeChange, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.type_changed)


def schema_drift(
    before_types: Mapping[str, Iterable[str]], after_types: Mapping[str, Iterable[str]]
) -> SchemaDrift:
    """Compare `leaf path -> set of JSON types` of the two snapshots."""
    before = {p: frozenset(t) for p, t in before_types.items()}
    after = {p: frozenset(t) for p, t in after_types.items()}
    return SchemaDrift(
        added=tuple(sorted(after.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - after.keys())),
        type_changed=tuple(
            TypeChange(p, tuple(sorted(before[p])), tuple(sorted(after[p])))
            for p in sorted(before.keys() & after.keys())
            if before[p] != after[p]
        ),
    )


@dataclass(frozen=True)
class Engine:
    name: str
    version: str


@dataclass(frozen=True)
class Manifest:
    run_date: str
    engine: Engine
    key: tuple[str, ...]
    ignored: tuple[str, ...]
    before: InputSide
    after: InputSide
    counts: Counts
    files: tuple[DataFile, ...]
    schema_drift: SchemaDrift
    started_at: str
    finished_at: str
    bad_records_file: str | None = None
    contract_version: int = CONTRACT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["inputs"] = {"before": out.pop("before"), "after": out.pop("after")}
        return out

    def to_json(self) -> str:
        # A leaf path may hold a lone surrogate (a member name read from "\\ud800"): written
        # as its escape, as in the events (contract §1), so the text is UTF-8.
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
        return escape_lone_surrogates(text) + "\n"

    def file(self, name: str) -> DataFile | None:
        return next((f for f in self.files if f.name == name), None)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Manifest:
        def side(s: Mapping[str, Any]) -> InputSide:
            return InputSide(
                location=s["location"],
                files=tuple(InputFile(**f) for f in s["files"]),
                records=s["records"],
                bad_records=s.get("bad_records", 0),
                unreadable_keys=s.get("unreadable_keys", 0),
            )

        drift = obj["schema_drift"]
        return cls(
            run_date=obj["run_date"],
            engine=Engine(**obj["engine"]),
            key=tuple(obj["key"]),
            ignored=tuple(obj["ignored"]),
            before=side(obj["inputs"]["before"]),
            after=side(obj["inputs"]["after"]),
            counts=Counts(**obj["counts"]),
            files=tuple(DataFile(**f) for f in obj["files"]),
            schema_drift=SchemaDrift(
                added=tuple(drift["added"]),
                removed=tuple(drift["removed"]),
                type_changed=tuple(
                    TypeChange(t["path"], tuple(t["before"]), tuple(t["after"]))
                    for t in drift["type_changed"]
                ),
            ),
            started_at=obj["started_at"],
            finished_at=obj["finished_at"],
            bad_records_file=obj.get("bad_records_file"),
            contract_version=obj.get("contract_version", CONTRACT_VERSION),
            extra=obj.get("extra", {}),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        return cls.from_dict(json.loads(text))
