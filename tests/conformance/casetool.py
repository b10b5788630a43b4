"""What the reference says a case should produce: a second opinion on every `expected.json`.

    PYTHONPATH=libs/diffcore:. .venv/bin/python -m tests.conformance.casetool CASE_FOLDER

prints the reference's expectation for a case (a starting point for a new `expected.json`: read
it, then keep only what you checked by hand). `test_case_files.py` asserts that every case's
`expected.json` agrees with it, so a typo in a case cannot pass as an engine bug.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from diffcore import jsonvalue
from diffcore.records import readable_key
from tests.conformance import reference
from tests.conformance.runner import Case, _paths, loads_exact


def _rel(path: Path, case_path: Path) -> str:
    return path.relative_to(case_path).as_posix()


def expectation(case_path: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """The reference's result for a case: `{"error": {...}}` or events, counts, drift, inputs."""
    key, ignore = _paths(spec["key"]), _paths(spec.get("ignore"))
    allow = spec.get("allow_empty", [])
    allow = (
        {"none": [], "both": ["before", "after"]}.get(allow, allow)
        if isinstance(allow, str)
        else allow
    )
    quarantine = spec.get("bad_records", "fail") == "quarantine"
    sides: dict[str, tuple[list[Path], list[reference.Item]]] = {}
    for side in ("before", "after"):
        location = str(case_path / spec.get(side, side))
        files, items = reference.read_snapshot(location, key)
        bad = [i for i in items if i.error_class]
        if bad and not quarantine:
            first = bad[0]
            return {
                "error": {
                    "class": first.error_class,
                    "file": _rel(first.file, case_path),
                    "line": first.line,
                }
            }
        sides[side] = (files, items)
    records: dict[str, list[dict]] = {}
    for side, (_files, items) in sides.items():
        seen: dict[str, reference.Item] = {}
        good = [i for i in items if not i.error_class]
        for item in good:
            ck = reference.canonical(reference.key_of(item.record, key))
            if ck in seen:
                first = seen[ck]
                files_named = sorted({_rel(first.file, case_path), _rel(item.file, case_path)})
                lines = sorted({n for n in (first.line, item.line) if n is not None})
                return {
                    "error": {
                        "class": "duplicate_key",
                        "file": files_named[0] if len(files_named) == 1 else files_named,
                        "line": lines or None,
                    }
                }
            seen[ck] = item
        records[side] = [i.record for i in good]
    for side in ("before", "after"):
        if not records[side] and side not in allow:
            return {
                "error": {"class": "empty_snapshot", "file": spec.get(side, side), "line": None}
            }
    # Contract §6: a bad line that still names its key withholds that key's event. Which key
    # a damaged line names is diffcore's lenient reading (`records.readable_key`, tested on
    # its own); what the reference checks here is the consequence.
    bad_items = [i for _, items in sides.values() for i in items if i.error_class]
    held: set[str] = set()
    unreadable = {"before": 0, "after": 0}
    for side, (_files, items) in sides.items():
        for item in items:
            if not item.error_class:
                continue
            values = readable_key(item.raw, key) if item.raw is not None else None
            if values is None:
                unreadable[side] += 1
                continue
            # (diffcore's values: in the reference's own terms)
            text = jsonvalue.canonical_json(dict(zip(key, values, strict=True)))
            held.add(reference.canonical(reference.loads(text)))
    kept = {
        side: [
            r for r in records[side] if reference.canonical(reference.key_of(r, key)) not in held
        ]
        for side in ("before", "after")
    }
    withheld = {
        reference.canonical(reference.key_of(r, key))
        for side in ("before", "after")
        for r in records[side]
    } & held
    result = reference.diff(kept["before"], kept["after"], key, ignore)
    # Schema drift is the snapshots' (every valid record), withheld or not.
    result.drift = reference.schema_drift(records["before"], records["after"])
    result.counts["bad_records"] = len(bad_items)
    if quarantine:  # (only a quarantine run can hold a bad record and go on)
        result.counts["withheld"] = len(withheld)
    out: dict[str, Any] = {
        "events": result.events,
        "counts": result.counts,
        "schema_drift": result.drift,
    }
    if quarantine:
        out["unreadable_keys"] = unreadable
    if bad_items:
        out["bad_records"] = [
            {"class": i.error_class, "file": _rel(i.file, case_path), "line": i.line, "raw": i.raw}
            for i in bad_items
        ]
    else:
        out["inputs"] = {}
        for side, (files, items) in sides.items():
            root = case_path / spec.get(side, side)
            base = root if root.is_dir() else root.parent
            per_file = {_rel(f, base) if f.is_relative_to(base) else f.name: 0 for f in files}
            for item in items:
                name = _rel(item.file, base) if item.file.is_relative_to(base) else item.file.name
                per_file[name] += 1
            out["inputs"][side] = {"records": len(items), "files": per_file}
    return out


def expectation_of(case: Case) -> dict[str, Any]:
    return expectation(case.path, case.spec)


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    spec = loads_exact((folder / "spec.json").read_text(encoding="utf-8"))
    print(json.dumps(expectation(folder, spec), indent=2, ensure_ascii=False))
