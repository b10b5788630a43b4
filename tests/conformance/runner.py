"""Load conformance cases, run an engine on them, and check what it wrote against the contract.

Everything here reads the engine's output from disk (the manifest and the part files it lists),
never the engine's own objects, and recomputes what it checks with `reference` and `hashlib`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffcore import layout
from diffcore.errors import DiffError
from diffcore.manifest import Manifest
from diffcore.spec import OutputOptions, RunSpec, parse_allow_empty, parse_paths
from tests.conformance import reference

CASES_DIR = Path(__file__).parent / "cases"
EVENT_FIELDS = ["op", "key", "before", "after", "changed", "run_date", "event_id"]
DEFAULT_RUN_DATE = "2024-05-01"


# ---------------------------------------------------------------------------------------------
# Cases


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    spec: dict[str, Any]
    expected: dict[str, Any]

    @property
    def expects_error(self) -> bool:
        return "error" in self.expected


def loads_exact(text: str | bytes) -> Any:
    """JSON with exact numbers (ints, and the reference's `Number`s) that refuses NaN/Infinity."""
    return reference.loads(text)


def load_cases() -> list[Case]:
    cases = []
    for folder in sorted(p for p in CASES_DIR.iterdir() if p.is_dir()):
        if folder.name.startswith(("_", ".")):
            continue
        spec = loads_exact((folder / "spec.json").read_text(encoding="utf-8"))
        expected = loads_exact((folder / "expected.json").read_text(encoding="utf-8"))
        cases.append(Case(folder.name, folder, spec, expected))
    return cases


def _paths(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return parse_paths(value)
    return tuple(value)


def materialise(case: Case, tmp: Path) -> RunSpec:
    """Copy the case's inputs under `tmp` and build its RunSpec (output under `tmp/out`)."""
    work = tmp / "case"
    shutil.copytree(case.path, work)
    s = case.spec
    allow = s.get("allow_empty", [])
    return RunSpec(
        before=str(work / s.get("before", "before")),
        after=str(work / s.get("after", "after")),
        key=_paths(s["key"]),
        out=str(tmp / "out"),
        run_date=s.get("run_date", DEFAULT_RUN_DATE),
        ignore=_paths(s.get("ignore")),
        bad_records=s.get("bad_records", "fail"),
        allow_empty=parse_allow_empty(allow if isinstance(allow, str) else ",".join(allow)),
        output=OutputOptions(
            gzip=bool(s.get("gzip", False)),
            max_records_per_file=s.get("max_records_per_file", layout.DEFAULT_MAX_RECORDS_PER_FILE),
            max_bytes_per_file=s.get("max_bytes_per_file", layout.DEFAULT_MAX_BYTES_PER_FILE),
        ),
    )


# ---------------------------------------------------------------------------------------------
# Reading and checking a finished run


@dataclass
class RunOutput:
    folder: Path
    manifest: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    bad_records: list[tuple[str, Any]] = field(default_factory=list)  # (raw line, parsed)


def _read_data_file(path: Path, gz: bool) -> bytes:
    raw = path.read_bytes()
    if gz:
        assert raw[:2] == b"\x1f\x8b", f"{path.name} is named .gz but is not gzip"
        return gzip.decompress(raw)
    return raw


def check_run(result: Any, spec: RunSpec, engine_name: str) -> RunOutput:
    """Every layout and event invariant of a successful run (contract §4-5, decisions.md).

    `engine_name` is the engine's own `name` attribute, which the manifest must carry.
    """
    folder = Path(spec.out) / spec.run_date
    assert folder.is_dir(), f"run folder {folder} missing"
    assert Path(result.folder).resolve() == folder.resolve(), (result.folder, folder)

    manifest_path = folder / layout.MANIFEST_NAME
    assert manifest_path.is_file(), "a successful run must write the manifest"
    # Plain JSON: the manifest holds no record data, and its timings are floats like the engine's.
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    parsed = Manifest.from_dict(manifest)
    assert parsed == result.manifest, "RunResult.manifest differs from the manifest written"
    assert manifest["run_date"] == spec.run_date
    assert tuple(manifest["key"]) == spec.key
    assert tuple(manifest["ignored"]) == spec.ignore
    assert manifest["engine"]["name"] == engine_name, (manifest["engine"], engine_name)
    assert manifest["engine"]["version"], "manifest names no engine version"
    assert manifest["started_at"] <= manifest["finished_at"], "finished before it started"
    for side in ("before", "after"):
        got = manifest["inputs"][side]["location"]
        assert got.rstrip("/") == spec.location(side).rstrip("/"), f"inputs.{side}.location {got!r}"

    # Nothing in the folder but the manifest, the listed data files and the bad-records file.
    listed = [f["name"] for f in manifest["files"]]
    assert len(set(listed)) == len(listed), f"data file listed twice: {listed}"
    allowed = set(listed) | {layout.MANIFEST_NAME}
    bad_name = manifest.get("bad_records_file")
    if spec.bad_records == "quarantine":
        allowed.add(layout.BAD_RECORDS_NAME)
        if bad_name:
            assert Path(bad_name).name == layout.BAD_RECORDS_NAME, bad_name
    present = sorted(p.name for p in folder.iterdir())
    temps = [n for n in present if n.startswith(".")]
    assert not temps, f"temporary files left in the run folder: {temps}"
    stray = [n for n in present if n not in allowed]
    assert not stray, f"stray objects in the run folder: {stray} (manifest lists {listed})"
    for name in present:
        if name != layout.MANIFEST_NAME and not layout.is_data_file(name):
            assert not layout.is_notified(name), f"{name} would trigger an SQS message"

    out = RunOutput(folder=folder, manifest=manifest)
    suffix = layout.DATA_FILE_SUFFIX_GZIP if spec.output.gzip else layout.DATA_FILE_SUFFIX
    for entry in manifest["files"]:
        name = entry["name"]
        assert layout.is_data_file(name) and name.endswith(suffix), f"bad data file name {name}"
        path = folder / name
        assert path.is_file(), f"manifest lists {name}, which is not on disk"
        raw = path.read_bytes()
        assert entry["bytes"] == len(raw), f"{name}: manifest bytes {entry['bytes']} != {len(raw)}"
        assert entry["sha256"] == hashlib.sha256(raw).hexdigest(), f"{name}: sha256 mismatch"
        text = _read_data_file(path, spec.output.gzip)
        lines = text.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        assert all(line.strip() for line in lines), f"{name}: blank line in a data file"
        assert entry["records"] == len(
            lines
        ), f"{name}: manifest records {entry['records']} != {len(lines)} physical lines (an event spanning lines?)"
        assert (
            1 <= len(lines) <= spec.output.max_records_per_file
        ), f"{name}: {len(lines)} events, bound is 1..{spec.output.max_records_per_file}"
        if len(lines) > 1:
            assert (
                len(text) <= spec.output.max_bytes_per_file + max(map(len, lines)) + 1
            ), f"{name}: {len(text)} bytes, bound {spec.output.max_bytes_per_file}"
        for number, line in enumerate(lines, 1):
            where = f"{name}:{number}"
            order = json.loads(line, object_pairs_hook=lambda pairs: [k for k, _ in pairs])
            assert order == EVENT_FIELDS, f"{where}: field order {order}, want {EVENT_FIELDS}"
            event = loads_exact(line)
            out.events.append(check_event(event, spec, where))

    counts = manifest["counts"]
    ops = Counter(e["op"] for e in out.events)
    for op in ("c", "u", "d"):
        assert (
            counts[op] == ops[op]
        ), f"manifest counts {op}={counts[op]}, data files hold {ops[op]}"

    bad_path = folder / layout.BAD_RECORDS_NAME
    if bad_path.exists():
        for line in bad_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.bad_records.append((line, loads_exact(line)))
    assert counts["bad_records"] == len(out.bad_records), (
        f"manifest counts bad_records={counts['bad_records']}, "
        f"{layout.BAD_RECORDS_NAME} holds {len(out.bad_records)}"
    )
    return out


def check_event(event: dict[str, Any], spec: RunSpec, where: str) -> dict[str, Any]:
    op = event["op"]
    assert op in ("c", "u", "d"), f"{where}: op {op!r}"
    assert event["run_date"] == spec.run_date, f"{where}: run_date {event['run_date']!r}"
    key = event["key"]
    assert isinstance(key, dict) and list(sorted(key)) == sorted(spec.key), f"{where}: key {key!r}"
    want = reference.event_id(spec.run_date, op, key)
    assert event["event_id"] == want, f"{where}: event_id {event['event_id']} != {want}"
    assert (event["before"] is None) == (op == "c"), f"{where}: before must be null only for c"
    assert (event["after"] is None) == (op == "d"), f"{where}: after must be null only for d"
    if op == "u":
        changed = event["changed"]
        assert isinstance(changed, list) and changed, f"{where}: u needs a non-empty changed list"
        assert changed == sorted(set(changed)), f"{where}: changed not sorted/unique: {changed}"
    else:
        assert event["changed"] is None, f"{where}: changed must be null for {op}"
    for side in ("before", "after"):
        if event[side] is not None:
            assert isinstance(event[side], dict), f"{where}: {side} is not an object"
            got_key = reference.key_of(event[side], spec.key)
            assert reference.canonical(got_key) == reference.canonical(
                key
            ), f"{where}: {side} payload's key {got_key} != event key {key}"
    return event


# ---------------------------------------------------------------------------------------------
# Comparing with an expectation


def _leaf_diff(got: dict | None, want: dict | None) -> str | None:
    if got is None or want is None:
        return None if got is None and want is None else f"{got!r} != {want!r}"
    g, w = reference.comparable(got), reference.comparable(want)
    if g == w:
        return None
    paths = sorted(p for p in set(g) | set(w) if g.get(p) != w.get(p))
    return "; ".join(
        f"{p}: got {reference.leaves(got).get(p)!r}, want {reference.leaves(want).get(p)!r}"
        for p in paths
    )


def compare_events(got: list[dict], want: list[dict]) -> list[str]:
    """Events as a multiset keyed by (op, canonical key); `changed` and payload leaves equal."""
    problems = []

    def by_key(events: list[dict], label: str) -> dict[tuple[str, str], dict]:
        out: dict[tuple[str, str], dict] = {}
        for e in events:
            k = (e["op"], reference.canonical(e["key"]))
            if k in out:
                problems.append(f"{label}: event {k} occurs twice")
            out[k] = e
        return out

    g, w = by_key(got, "engine"), by_key(want, "expected")
    for k in sorted(set(w) - set(g)):
        problems.append(f"missing event {k}")
    for k in sorted(set(g) - set(w)):
        problems.append(f"unexpected event {k}: changed={g[k]['changed']}")
    for k in sorted(set(g) & set(w)):
        if g[k]["changed"] != w[k]["changed"]:
            problems.append(f"event {k}: changed {g[k]['changed']} != expected {w[k]['changed']}")
        for side in ("before", "after"):
            bad = _leaf_diff(g[k][side], w[k][side])
            if bad:
                problems.append(f"event {k}: {side} payload differs leaf by leaf: {bad}")
        if "event_id" in w[k] and g[k].get("event_id", w[k]["event_id"]) != w[k]["event_id"]:
            problems.append(
                f"event {k}: event_id {g[k]['event_id']} != expected {w[k]['event_id']}"
            )
    return problems


def drift_of(manifest: dict[str, Any]) -> dict[str, Any]:
    d = manifest["schema_drift"]
    return {
        "added": sorted(d["added"]),
        "removed": sorted(d["removed"]),
        "type_changed": sorted(
            (
                {"path": t["path"], "before": sorted(t["before"]), "after": sorted(t["after"])}
                for t in d["type_changed"]
            ),
            key=lambda t: t["path"],
        ),
    }


def compare_expected(out: RunOutput, expected: dict[str, Any]) -> list[str]:
    problems = compare_events(out.events, expected["events"])
    counts = {k: out.manifest["counts"].get(k) for k in expected["counts"]}
    if counts != expected["counts"]:
        problems.append(f"manifest counts {counts} != expected {expected['counts']}")
    if "schema_drift" in expected:
        got = drift_of(out.manifest)
        if got != expected["schema_drift"]:
            problems.append(f"schema drift {got} != expected {expected['schema_drift']}")
    files = out.manifest["files"]
    if "data_files" in expected and len(files) != expected["data_files"]:
        problems.append(f"{len(files)} data files, expected {expected['data_files']}")
    for side, want in expected.get("inputs", {}).items():
        got_side = out.manifest["inputs"][side]
        if got_side["records"] != want["records"]:
            problems.append(f"inputs.{side}.records {got_side['records']} != {want['records']}")
        got_files = {f["path"].replace("\\", "/"): f["records"] for f in got_side["files"]}
        if len(got_files) != len(want["files"]):
            problems.append(
                f"inputs.{side}.files {sorted(got_files)} != expected {sorted(want['files'])}"
            )
        for name, records in want["files"].items():
            hits = [p for p in got_files if p == name or p.endswith("/" + name)]
            if len(hits) != 1:
                problems.append(
                    f"inputs.{side}.files: {name} not listed once in {sorted(got_files)}"
                )
            elif got_files[hits[0]] != records:
                problems.append(
                    f"inputs.{side}.files {name}: records {got_files[hits[0]]} != {records}"
                )
    if "bad_records" in expected:
        problems += compare_bad_records(out.bad_records, expected["bad_records"])
    for side, want_n in expected.get("unreadable_keys", {}).items():
        got_n = out.manifest["inputs"][side].get("unreadable_keys")
        if got_n != want_n:
            problems.append(f"inputs.{side}.unreadable_keys {got_n} != expected {want_n}")
    return problems


def _fits(item: tuple[str, Any], want: dict[str, Any]) -> bool:
    raw, obj = item
    name = Path(want["file"]).name
    if not isinstance(obj, dict) or want["class"] not in raw or name not in raw:
        return False
    line = want.get("line")
    if line is not None and isinstance(obj.get("line"), int) and obj["line"] != line:
        return False
    # The record itself is kept (nothing dropped silently): its text is in some member.
    return not want.get("raw") or any(isinstance(v, str) and want["raw"] in v for v in obj.values())


def compare_bad_records(got: list[tuple[str, Any]], want: list[dict[str, Any]]) -> list[str]:
    """Each expected bad record matches one line naming its class and file, with the line number
    (if the line has a `line` member) and the record's text (`raw`, in some member), if given."""
    problems = []
    if len(got) != len(want):
        problems.append(
            f"{len(got)} quarantined records, expected {len(want)}: {[g[0] for g in got]}"
        )
    free = list(got)
    for w in want:
        match = next((item for item in free if _fits(item, w)), None)
        if match is None:
            problems.append(
                f"no quarantined record with reason {w['class']} from {w['file']} "
                f"line {w.get('line')} holding {w.get('raw')!r}"
            )
        else:
            free.remove(match)
    return problems


def check_error(exc: BaseException, want: dict[str, Any], work: Path) -> list[str]:
    """`work` is the case's copy (see `materialise`): paths are compared relative to it, so that
    e.g. `after/a.jsonl` must be named, not just any path that happens to contain `after`."""
    if not isinstance(exc, DiffError):
        return [f"raised {type(exc).__name__}: {exc}, expected DiffError({want['class']})"]
    problems = []
    text = str(exc)

    def relative(s: str) -> str:
        for prefix in {str(work.resolve()), str(work)}:
            s = s.replace(prefix + "/", "").replace(prefix, "")
        return s

    if exc.error_class.value != want["class"]:
        problems.append(f"error class {exc.error_class.value}, expected {want['class']} ({text})")
    if "file" in want:
        names = want["file"] if isinstance(want["file"], list) else [want["file"]]
        where = relative(exc.file or "") + "\n" + relative(text)
        if not any(name in where for name in names):
            problems.append(
                f"error does not name {' or '.join(names)}: file={exc.file!r}, {text!r}"
            )
    if want.get("line") is not None:
        lines = want["line"] if isinstance(want["line"], list) else [want["line"]]
        if exc.line not in lines and not any(f"line {n}" in text for n in lines):
            problems.append(
                f"error line {exc.line!r}, expected {' or '.join(map(str, lines))} ({text})"
            )
    for mention in want.get("mentions", []):
        if mention not in text and mention not in (exc.excerpt or ""):
            problems.append(f"error does not mention {mention!r}: {text!r}")
    return problems


def check_failed_run_folder(spec: RunSpec) -> list[str]:
    """A failed run leaves no manifest and no temporary file under the output."""
    out = Path(spec.out)
    if not out.exists():
        return []
    problems = []
    for path in out.rglob("*"):
        if path.name == layout.MANIFEST_NAME:
            problems.append(f"a failed run left a manifest: {path}")
        if path.name.startswith("."):
            problems.append(f"a failed run left a temporary file: {path}")
    return problems
