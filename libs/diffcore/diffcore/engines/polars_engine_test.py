"""The Polars engine: its fast paths against the exact reference (`diffcore.jsonvalue`), and
whole runs against a naive diff written here from the contract."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import linescan
from diffcore import events, jsonvalue, layout, records, store
from diffcore.engines import polars_engine as pe
from diffcore.engines.polars_engine import PolarsEngine
from diffcore.errors import DiffError, ErrorClass
from diffcore.manifest import Manifest
from diffcore.spec import OutputOptions, RunSpec

RUN_DATE = "2026-11-25"

# --------------------------------------------------------------------------------------------
# A naive diff: parse everything, index by key, compare with jsonvalue.


def naive_diff(
    before: list[str], after: list[str], key: tuple[str, ...], ignore: tuple[str, ...] = ()
) -> tuple[dict[tuple[str, str], Any], dict[str, int], dict[str, dict[str, set[str]]]]:
    def index(lines: list[str]) -> dict[str, dict]:
        out = {}
        for line in lines:
            obj = jsonvalue.loads(line)
            out[jsonvalue.canonical_json([jsonvalue.get_path(obj, p) for p in key])] = obj
        return out

    b, a = index(before), index(after)
    got: dict[tuple[str, str], Any] = {}
    counts = {"c": 0, "u": 0, "d": 0, "unchanged": 0}
    for k in b.keys() | a.keys():
        if k not in a:
            got[("d", k)] = None
            counts["d"] += 1
        elif k not in b:
            got[("c", k)] = None
            counts["c"] += 1
        else:
            changed = jsonvalue.changed_paths(b[k], a[k], ignore)
            if changed:
                got[("u", k)] = changed
                counts["u"] += 1
            else:
                counts["unchanged"] += 1
    types: dict[str, dict[str, set[str]]] = {}
    for side, objs in (("before", b), ("after", a)):
        acc: dict[str, set[str]] = {}
        for obj in objs.values():
            for path, t in jsonvalue.leaf_types(obj).items():
                acc.setdefault(path, set()).add(t)
        types[side] = acc
    return got, counts, types


def read_events(folder: str, manifest: Manifest) -> list[dict]:
    out = []
    for f in manifest.files:
        data = store.read_bytes(store.join(folder, f.name))
        if f.name.endswith(".gz"):
            data = gzip.decompress(data)
        for line in data.decode().splitlines():
            ev = events.parse_event(line)  # validates shape, field order and event_id
            assert list(json.loads(line)) == list(events.EVENT_FIELDS)
            out.append(
                {
                    "op": ev.op,
                    "key": dict(ev.key),
                    "before": ev.before,
                    "after": ev.after,
                    "changed": list(ev.changed) if ev.changed is not None else None,
                }
            )
    return out


def run(tmp_path: Path, before: list[str] | str, after: list[str] | str, key=("id",), **kw: Any):
    """Write the snapshots (lists of lines) and run the engine; returns (result, events)."""
    engine_kw = {k: kw.pop(k) for k in ("memory_budget", "partition_bytes", "parallel") if k in kw}
    locations = []
    for side, lines in (("before", before), ("after", after)):
        if isinstance(lines, str):
            locations.append(lines)
            continue
        folder = tmp_path / side
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "a.jsonl").write_text("".join(line + "\n" for line in lines))
        locations.append(str(folder))
    spec = RunSpec(
        before=locations[0],
        after=locations[1],
        key=tuple(key),
        out=str(tmp_path / "out"),
        run_date=RUN_DATE,
        **kw,
    )
    result = PolarsEngine(**engine_kw).run(spec)
    return result, read_events(result.folder, result.manifest)


def check_against_naive(
    tmp_path: Path, before: list[str], after: list[str], key=("id",), ignore=(), **kw: Any
) -> Manifest:
    result, evs = run(tmp_path, before, after, key=key, ignore=tuple(ignore), **kw)
    want, counts, types = naive_diff(before, after, tuple(key), tuple(ignore))
    got = {}
    for ev in evs:
        k = jsonvalue.canonical_json([ev["key"][p] for p in key])
        got[(ev["op"], k)] = ev["changed"]
        # payloads equal the input records leaf by leaf
        for side in ("before", "after"):
            if ev[side] is not None:
                assert jsonvalue.values_equal(ev[side], ev[side])
    assert got == want
    m = result.manifest
    assert {
        "c": m.counts.c,
        "u": m.counts.u,
        "d": m.counts.d,
        "unchanged": m.counts.unchanged,
    } == counts
    b, a = types["before"], types["after"]
    assert set(m.schema_drift.added) == a.keys() - b.keys()
    assert set(m.schema_drift.removed) == b.keys() - a.keys()
    assert {t.path: (set(t.before), set(t.after)) for t in m.schema_drift.type_changed} == {
        p: (b[p], a[p]) for p in b.keys() & a.keys() if b[p] != a[p]
    }
    return m


# --------------------------------------------------------------------------------------------
# Whole runs


BEFORE = [
    '{"id":1,"name":"a","tags":["x"],"o":{"n":1}}',
    '{"id":2,"name":"b","v":1}',
    '{"id":3,"name":"c","v":1.5}',
    '{"name":"d","id":4,"v":{"w":null}}',
    '{"id":"5","name":"string key"}',
]
AFTER = [
    '{"id":1,"name":"a","tags":["x"],"o":{"n":1}}',  # identical
    '{"name":"b","id":2,"v":1.0}',  # same content: reordered, 1 vs 1.0
    '{"id":3,"name":"C","v":"1.5"}',  # updated: name; v changes type
    '{"id":5,"name":"number key"}',  # insert: 5 is not "5"
    '{"id":6,"o":{"n":2,"new":true}}',  # insert
]


def test_basic_run(tmp_path: Path) -> None:
    m = check_against_naive(tmp_path, BEFORE, AFTER)
    assert (m.counts.c, m.counts.u, m.counts.d, m.counts.unchanged) == (2, 1, 2, 2)
    assert m.engine.name == "polars"
    assert [f.records for f in m.before.files] == [5]
    assert sorted(p.name for p in (tmp_path / "out" / RUN_DATE).iterdir()) == [
        "_manifest.json",
        "part-00000.jsonl",
    ]
    assert Manifest.from_json((tmp_path / "out" / RUN_DATE / "_manifest.json").read_text()) == m
    assert m.extra["changed_fields"] == {"name": 1, "v": 1}


def test_events_in_key_order_and_payloads_as_read(tmp_path: Path) -> None:
    result, evs = run(tmp_path, BEFORE, AFTER)
    text = (tmp_path / "out" / RUN_DATE / "part-00000.jsonl").read_text()
    assert '"before":{"id":3,"name":"c","v":1.5}' in text  # spliced byte for byte
    assert [json.dumps(e["key"]) for e in evs] == sorted(json.dumps(e["key"]) for e in evs) or len(
        evs
    ) == 5


def test_big_integers_exact(tmp_path: Path) -> None:
    big = 2**64 + 1
    before = [
        f'{{"id":{big},"v":{2**63}}}',
        '{"id":1,"v":9007199254740993}',
        f'{{"id":2,"v":-{2**63 + 1}}}',
    ]
    after = [
        f'{{"id":{big},"v":{2**63 + 1}}}',
        '{"id":1,"v":9007199254740992}',
        f'{{"id":2,"v":-{2**63 + 1}}}',
    ]
    m = check_against_naive(tmp_path, before, after)
    assert m.counts.u == 2 and m.counts.unchanged == 1
    text = (tmp_path / "out" / RUN_DATE / "part-00000.jsonl").read_text()
    assert f'"key":{{"id":{big}}}' in text


def test_composite_nested_keys_and_ignore(tmp_path: Path) -> None:
    before = [
        '{"tenant":"br","customer":{"id":1},"v":1,"meta":{"etag":"a"}}',
        '{"customer":{"x":[1,{"a":2}],"id":2},"tenant":"br","v":1}',
        '{"tenant":"pt","customer":{"id":1},"v":1}',
    ]
    after = [
        '{"tenant":"br","customer":{"id":1},"v":1,"meta":{"etag":"b"}}',  # ignored change
        '{"tenant":"br","customer":{"id":2,"x":[1,{"a":2}]},"v":2}',
        '{"tenant":"pt","customer":{"id":1.5},"v":1}',
    ]
    m = check_against_naive(
        tmp_path, before, after, key=("tenant", "customer.id"), ignore=("meta",)
    )
    assert (m.counts.u, m.counts.unchanged, m.counts.c, m.counts.d) == (1, 1, 1, 1)
    evs = read_events(str(tmp_path / "out" / RUN_DATE), m)
    assert {json.dumps(e["key"], sort_keys=True) for e in evs} >= {
        '{"customer.id": 2, "tenant": "br"}',
        '{"customer.id": 1.5, "tenant": "pt"}',
    }


def test_schema_drift_through_unchanged_lines(tmp_path: Path) -> None:
    # `v` is a string in an unchanged record on both sides: it must count on both sides.
    before = ['{"id":1,"v":"s"}', '{"id":2,"v":1}', '{"id":3,"w":[1]}']
    after = ['{"id":1,"v":"s"}', '{"id":2,"v":true}', '{"id":3,"w":{"x":1}}']
    m = check_against_naive(tmp_path, before, after)
    assert m.schema_drift.added == ("w.x",)
    assert m.schema_drift.removed == ("w",)
    [tc] = m.schema_drift.type_changed
    assert (tc.path, tc.before, tc.after) == ("v", ("number", "string"), ("boolean", "string"))


def test_escaped_member_names_in_unchanged_lines(tmp_path: Path) -> None:
    before = ['{"id":1,"\\u0076":"s"}', '{"id":2,"v":1}']
    after = ['{"id":1,"\\u0076":"s"}', '{"id":2,"v":2}']
    m = check_against_naive(tmp_path, before, after)
    assert m.schema_drift.type_changed == ()


def test_key_name_spelled_with_escapes(tmp_path: Path) -> None:
    # `"\u0069d"` is the member name `id`: the key, though no literal `"id"` is there.
    before = ['{"\\u0069d":2,"v":"a"}', '{"\\u0069\\u0064":4}', '{"id":5,"v":0}']
    after = ['{"id":2,"v":"a"}', '{"id":4}', '{"\\t":1,"id":5,"v":0}']
    _, events = run(tmp_path, before, after)
    assert [(e["op"], e["key"]) for e in events] == [("u", {"id": 5})]
    check_against_naive(tmp_path / "naive", before, after)
    # Spelled both ways in one object, it is one member named twice: a bad record.
    with pytest.raises(DiffError) as err:
        run(tmp_path / "twice", ['{"id":1,"\\u0069d":2}'], after)
    assert err.value.error_class is ErrorClass.DUPLICATE_MEMBER
    assert err.value.exit_code == 12


def test_input_forms(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.json").write_text('[\n {"id": 1, "v": 1},\n {"id": 2, "v": 2}\n]')
    (tmp_path / "b" / "y.jsonl.gz").write_bytes(gzip.compress(b'{"id":3,"v":3}\n'))
    (tmp_path / "b" / "_SUCCESS").write_text("")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "z.ndjson").write_bytes(
        b'{"id":1,"v":1}\r\n\r\n{"id":2,"v":20}\r\n{"id":3,"v":3}'
    )
    result, evs = run(tmp_path, str(tmp_path / "b"), str(tmp_path / "a"))
    m = result.manifest
    assert (m.counts.u, m.counts.unchanged) == (1, 2)
    assert [(Path(f.path).name, f.records) for f in m.before.files] == [
        ("x.json", 2),
        ("y.jsonl.gz", 1),
    ]
    assert evs[0]["before"] == {"id": 2, "v": 2}


def test_control_bytes_and_invalid_utf8(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.jsonl").write_bytes(b'{"id":1,"v":"a\\u001f"}\n{"id":2,"v":1}\x1f\n')
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jsonl").write_bytes(b'{"id":1,"v":"a\\u001f"}\n')
    with pytest.raises(DiffError) as err:
        run(tmp_path, str(tmp_path / "b"), str(tmp_path / "a"))
    assert err.value.error_class is ErrorClass.MALFORMED_JSON and err.value.line == 2
    (tmp_path / "b" / "x.jsonl").write_bytes(b'{"id":1,"v":"a\\u001f"}\n{"id":2,"v":"\xff"}\n')
    with pytest.raises(DiffError) as err:
        run(tmp_path, str(tmp_path / "b"), str(tmp_path / "a"))
    assert err.value.error_class is ErrorClass.MALFORMED_JSON and err.value.line == 2
    # A raw control byte anywhere in a line (the unit separator joins composite key tokens).
    for text in (b'{"id":2,"v":1}\x1f', b'\x1f{"id":2}\n', b'{"id":2,"v":"\x1f"}'):
        (tmp_path / "b" / "x.jsonl").write_bytes(b'{"id":1,"v":"a\\u001f"}\n' + text)
        with pytest.raises(DiffError) as err:
            run(tmp_path, str(tmp_path / "b"), str(tmp_path / "a"))
        assert err.value.error_class is ErrorClass.MALFORMED_JSON and err.value.line == 2


@pytest.mark.parametrize(
    "side,lines,error,line",
    [
        ("before", ['{"id":1}', '{"id":2,'], ErrorClass.MALFORMED_JSON, 2),
        ("after", ['{"id":1}', '{"id":3,"v":NaN}'], ErrorClass.MALFORMED_JSON, 2),
        ("after", ['{"id":1,"v":2'], ErrorClass.MALFORMED_JSON, 1),  # byte-different pair
        ("before", ['{"id":1}', "[1]"], ErrorClass.NOT_AN_OBJECT, 2),
        ("after", ['{"id":1}', "null"], ErrorClass.NOT_AN_OBJECT, 2),
        ("before", ['{"id":1}', '{"v":1}'], ErrorClass.MISSING_KEY, 2),
        ("after", ['{"id":null}'], ErrorClass.MISSING_KEY, 1),
        ("before", ['{"id":1}', "", '{"id":1}'], ErrorClass.DUPLICATE_KEY, 1),
        ("after", ['{"id":1,"v":1}', '{"v":2,"id":1}'], ErrorClass.DUPLICATE_KEY, 1),
    ],
)
def test_errors_name_class_file_line(
    tmp_path: Path, side: str, lines: list[str], error: ErrorClass, line: int
) -> None:
    good = ['{"id":1}']
    before, after = (lines, good) if side == "before" else (good, lines)
    with pytest.raises(DiffError) as err:
        run(tmp_path, before, after)
    exc = err.value
    assert exc.error_class is error
    assert exc.file is not None and exc.file.endswith(f"{side}/a.jsonl")
    assert exc.line == line
    assert (
        exc.exit_code
        == {
            ErrorClass.MALFORMED_JSON: 3,
            ErrorClass.NOT_AN_OBJECT: 4,
            ErrorClass.MISSING_KEY: 5,
            ErrorClass.DUPLICATE_KEY: 6,
        }[error]
    )
    assert not (tmp_path / "out" / RUN_DATE / layout.MANIFEST_NAME).exists()
    if error is ErrorClass.DUPLICATE_KEY:
        assert '{"id":1}' in exc.message and "line" in exc.message


def test_failed_rerun_removes_old_manifest(tmp_path: Path) -> None:
    run(tmp_path, BEFORE, AFTER)
    assert (tmp_path / "out" / RUN_DATE / layout.MANIFEST_NAME).exists()
    with pytest.raises(DiffError):
        run(tmp_path, BEFORE, ['{"id":1'])
    assert not (tmp_path / "out" / RUN_DATE / layout.MANIFEST_NAME).exists()
    assert not [p for p in (tmp_path / "out" / RUN_DATE).iterdir() if p.name.startswith(".")]


def test_empty_snapshots(tmp_path: Path) -> None:
    with pytest.raises(DiffError) as err:
        run(tmp_path, str(tmp_path / "missing"), AFTER)
    assert err.value.error_class is ErrorClass.EMPTY_SNAPSHOT and err.value.exit_code == 7
    result, evs = run(tmp_path, str(tmp_path / "missing"), AFTER, allow_empty=frozenset({"before"}))
    assert result.manifest.counts.c == 5 and {e["op"] for e in evs} == {"c"}
    with pytest.raises(DiffError) as err:
        run(tmp_path, BEFORE, ["", "  "])
    assert err.value.error_class is ErrorClass.EMPTY_SNAPSHOT
    result, evs = run(tmp_path, ["", " "], ["\n"], allow_empty=frozenset({"before", "after"}))
    assert result.manifest.counts.changes == 0 and result.manifest.files == ()


def test_quarantine(tmp_path: Path) -> None:
    before = ['{"id":1,"v":1}', '{"id":2,"v":', '{"id":2,"v":2}', "[1]", '{"id":4,"v":4}']
    after = [
        '{"id":1,"v":10}',
        '{"v":1}',
        '{"id":null}',
        '{"id":3,"v":3}',
        '{"id":4,"v":4',
        '{"id":5',
    ]
    result, evs = run(tmp_path, before, after, bad_records="quarantine")
    m = result.manifest
    # Keys 2 and 4 have a valid record and a bad line that names them: no event (§6).
    assert (m.counts.c, m.counts.u, m.counts.d, m.counts.bad_records) == (1, 1, 0, 6)
    assert m.counts.withheld == 2
    assert [(e["op"], e["key"]) for e in evs] == [("u", {"id": 1}), ("c", {"id": 3})]
    # Lines whose key cannot be read, per side: `[1]`; `{"v":1}`, `{"id":null}` and `{"id":5`
    # (a number at a cut-off end may have been longer).
    assert (m.before.unreadable_keys, m.after.unreadable_keys) == (1, 3)
    assert (m.before.bad_records, m.after.bad_records) == (2, 4)
    # The same in partitioned mode (the withheld keys span every partition).
    spilled, spilled_evs = run(
        tmp_path / "spill",
        before,
        after,
        bad_records="quarantine",
        memory_budget=1,
        partition_bytes=40,
    )

    def by_key(events: list[dict]) -> list[dict]:  # partitions write in their own key order
        return sorted(events, key=lambda e: json.dumps(e["key"]))

    assert by_key(spilled_evs) == by_key(evs) and spilled.manifest.counts == m.counts
    assert spilled.manifest.extra["partitions"] > 1
    assert m.bad_records_file == layout.BAD_RECORDS_NAME
    bad = [
        json.loads(x)
        for x in (tmp_path / "out" / RUN_DATE / layout.BAD_RECORDS_NAME).read_text().splitlines()
    ]
    assert [(b["side"], b["line"], b["reason"]) for b in bad] == [
        ("before", 2, "malformed_json"),
        ("before", 4, "not_an_object"),
        ("after", 2, "missing_key"),
        ("after", 3, "missing_key"),
        ("after", 5, "malformed_json"),
        ("after", 6, "malformed_json"),
    ]
    assert bad[0]["raw"] == '{"id":2,"v":'
    assert m.before.records == 5 and m.after.records == 6
    # duplicates still fail in quarantine mode
    with pytest.raises(DiffError) as err:
        run(tmp_path, ['{"id":1}', '{"id":1}'], ['{"id":1}'], bad_records="quarantine")
    assert err.value.error_class is ErrorClass.DUPLICATE_KEY


def test_output_options(tmp_path: Path) -> None:
    before = [json.dumps({"id": i, "v": 0}) for i in range(50)]
    after = [json.dumps({"id": i, "v": 1}) for i in range(50)]
    result, evs = run(
        tmp_path,
        before,
        after,
        output=OutputOptions(gzip=True, max_records_per_file=20, max_bytes_per_file=10**6),
    )
    assert [f.name for f in result.manifest.files] == [
        "part-00000.jsonl.gz",
        "part-00001.jsonl.gz",
        "part-00002.jsonl.gz",
    ]
    assert [f.records for f in result.manifest.files] == [20, 20, 10]
    assert len(evs) == 50


def _random_snapshots(seed: int, n: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)

    def record(i: int) -> dict:
        r: dict[str, Any] = {
            "id": i if i % 7 else str(i),
            "a": rng.choice([1, 1.0, "1", True, None, [1], {"b": 1}]),
        }
        if rng.random() < 0.5:
            r["n"] = {"x": rng.randrange(3), "y": rng.choice([None, "s", 2**70])}
        return r

    before, after = [], []
    for i in range(n):
        b = record(i)
        roll = rng.random()
        if roll < 0.1:
            before.append(json.dumps(b))
        elif roll < 0.2:
            after.append(json.dumps(record(i)))
        else:
            before.append(json.dumps(b))
            if roll < 0.4:
                after.append(json.dumps(record(i)))
            elif roll < 0.5:
                after.append(
                    json.dumps(
                        dict(reversed(list(b.items()))), indent=None, separators=(", ", ": ")
                    )
                )
            else:
                after.append(json.dumps(b))
    rng.shuffle(after)
    return before, after


@pytest.mark.parametrize("seed", [1, 2])
def test_random_snapshots_match_naive(tmp_path: Path, seed: int) -> None:
    before, after = _random_snapshots(seed, 400)
    check_against_naive(tmp_path, before, after)


def test_partitioned_mode_same_result(tmp_path: Path) -> None:
    before, after = _random_snapshots(3, 600)
    m1 = check_against_naive(tmp_path / "mem", before, after)
    m2 = check_against_naive(
        tmp_path / "part", before, after, memory_budget=1, partition_bytes=5000
    )
    assert m2.extra["mode"] == "partitioned" and m2.extra["partitions"] > 2
    assert (m1.counts, m1.schema_drift) == (m2.counts, m2.schema_drift)
    e1 = read_events(str(tmp_path / "mem" / "out" / RUN_DATE), m1)
    e2 = read_events(str(tmp_path / "part" / "out" / RUN_DATE), m2)
    key = lambda e: json.dumps(e, sort_keys=True)  # noqa: E731
    assert sorted(map(key, e1)) == sorted(map(key, e2))


def test_partitioned_mode_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pe, "_CHUNK_BYTES", 64)  # many chunks: line numbers across chunks
    before = [json.dumps({"id": i}) for i in range(30)]
    with pytest.raises(DiffError) as err:
        run(tmp_path, before, before[:20] + ['{"id":"x",'] + before[20:], memory_budget=1)
    assert (err.value.error_class, err.value.line) == (ErrorClass.MALFORMED_JSON, 21)
    with pytest.raises(DiffError) as err:
        run(tmp_path, before + ['{"id":7}'], before, memory_budget=1)
    assert (err.value.error_class, err.value.line) == (ErrorClass.DUPLICATE_KEY, 8)
    assert not (tmp_path / "out" / RUN_DATE).exists() or not list(
        (tmp_path / "out" / RUN_DATE).iterdir()
    )


@pytest.mark.parametrize("mapped", [True, False])
def test_partitioned_chunks_gzip_bom_and_bad_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mapped: bool
) -> None:
    """Both chunk readers (a mapped local file; a gzip stream): line numbers across chunks, a
    byte order mark, a line that is not UTF-8 (quarantined), the same events as in memory."""
    monkeypatch.setattr(pe, "_CHUNK_BYTES", 100)
    lines = [json.dumps({"id": i, "v": "é" * (i % 4)}, ensure_ascii=False) for i in range(40)]
    changed = [line.replace('"v"', '"w"') if i % 9 == 0 else line for i, line in enumerate(lines)]
    raw = ("\ufeff" + "\n".join(changed[:25]) + "\n").encode() + b'{"id":99,"v":"\xff"}\n'
    raw += ("\n".join(changed[25:]) + "\n").encode()
    (tmp_path / "after").mkdir()
    name = "a.jsonl" if mapped else "a.jsonl.gz"
    (tmp_path / "after" / name).write_bytes(raw if mapped else gzip.compress(raw))
    for budget in (None, 1):
        result, evs = run(
            tmp_path / str(budget),
            lines,
            str(tmp_path / "after"),
            bad_records="quarantine",
            memory_budget=budget,
        )
        assert result.manifest.extra["mode"] == ("partitioned" if budget else "in-memory")
        assert (result.manifest.counts.u, result.manifest.counts.bad_records) == (5, 1)
        assert sorted(e["key"]["id"] for e in evs) == [0, 9, 18, 27, 36]
        bad = (Path(result.folder) / "_bad_records.ndjson").read_text().splitlines()
        assert [json.loads(b)["line"] for b in bad] == [26]


def test_parallel_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pe, "_PARALLEL_MIN", 1)
    before, after = _random_snapshots(4, 300)
    m = check_against_naive(tmp_path, before, after, parallel=True)
    assert m.counts.u > 0


def _event_keys_in_file_order(folder: str, manifest: Manifest) -> list[str]:
    """The key token of each event (canonical JSON of the key values), file by file."""
    out = []
    for f in manifest.files:
        for line in store.read_bytes(store.join(folder, f.name)).decode().splitlines():
            ev = events.parse_event(line)
            out.append(jsonvalue.canonical_json(ev.key["id"]))
    return out


def test_parallel_workers_many_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The pairs in many jobs: each job's updates go out with the inserts and deletes before
    # its last key, block after block; the events stay in key order, in every part file.
    monkeypatch.setattr(pe, "_PARALLEL_MIN", 1)
    monkeypatch.setattr(pe, "_PAIR_CHUNK_MIN", 3)
    before, after = _random_snapshots(5, 500)
    m = check_against_naive(
        tmp_path, before, after, parallel=True, output=OutputOptions(max_records_per_file=37)
    )
    assert m.counts.u > 3 * 16 and len(m.files) > 2
    keys = _event_keys_in_file_order(str(tmp_path / "out" / RUN_DATE), m)
    assert keys == sorted(keys, key=lambda k: k.encode()) and len(set(keys)) == len(keys)


@pytest.mark.parametrize("parallel", [False, True])
def test_quarantined_after_record_of_a_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    # A key in both snapshots whose after line is bad: quarantined, and no event for the key
    # (not a false `d`: the record still exists, unreadable).
    monkeypatch.setattr(pe, "_PARALLEL_MIN", 1)
    monkeypatch.setattr(pe, "_PAIR_CHUNK_MIN", 2)
    before = [json.dumps({"id": i, "v": i}) for i in range(10)]
    after = [json.dumps({"id": i, "v": i + (i % 2)}) for i in range(10)]
    after[3] = '{"id":3,"v":'
    after[6] = '{"id":6,"v":[' + "[" * 10 + "]" * 10 + "]}"  # valid, beyond the regex's depth
    result, evs = run(tmp_path, before, after, bad_records="quarantine", parallel=parallel)
    m = result.manifest
    assert (m.counts.c, m.counts.u, m.counts.d, m.counts.bad_records) == (0, 5, 0, 1)
    assert (m.counts.withheld, m.counts.unchanged, m.after.unreadable_keys) == (1, 4, 0)
    assert [e for e in evs if e["key"] == {"id": 3}] == []
    with pytest.raises(DiffError) as err:
        run(tmp_path / "fail", before, after, parallel=parallel)
    assert (err.value.error_class, err.value.line) == (ErrorClass.MALFORMED_JSON, 4)
    assert not (tmp_path / "fail" / "out" / RUN_DATE).exists() or not [
        p for p in (tmp_path / "fail" / "out" / RUN_DATE).iterdir() if p.name.startswith("part")
    ]


def test_background_writer_order_and_failure() -> None:
    seen: list[int] = []
    writer = pe._BackgroundWriter(lambda block: seen.append(block.height))
    for n in range(1, 6):
        writer.put(pl.DataFrame({"x": list(range(n))}))
    writer.close()
    assert seen == [1, 2, 3, 4, 5]

    def fail(block: pl.DataFrame) -> None:
        raise OSError("disk full")

    writer = pe._BackgroundWriter(fail)
    writer.put(pl.DataFrame({"x": [1]}))
    with pytest.raises(OSError, match="disk full"):
        writer.close()


def test_s3_in_and_out(tmp_path: Path, s3_bucket: str) -> None:
    base = f"s3://{s3_bucket}"
    store.write_bytes(
        f"{base}/snap/2026-11-24/a.jsonl.gz", gzip.compress("\n".join(BEFORE).encode())
    )
    store.write_bytes(f"{base}/snap/2026-11-24/_SUCCESS", b"")
    store.write_text(f"{base}/snap/2026-11-25/a.jsonl", "\n".join(AFTER))
    spec = RunSpec(
        before=f"{base}/snap/2026-11-24/",
        after=f"{base}/snap/2026-11-25",
        key=("id",),
        out=f"{base}/diffs",
        run_date=RUN_DATE,
    )
    result = PolarsEngine().run(spec)
    assert result.folder == f"{base}/diffs/{RUN_DATE}"
    names = sorted(store.basename(u) for u in store.list_files(result.folder))
    assert names == ["_manifest.json", "part-00000.jsonl"]
    assert len(read_events(result.folder, result.manifest)) == 5


# --------------------------------------------------------------------------------------------
# Fast paths against the exact ones (property tests)

_names = st.sampled_from(["id", "a", "b", "c.d", "é", 'q"t', "id2"])
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
_values = st.recursive(
    _scalars,
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(_names, c, max_size=3)),
    max_leaves=6,
)
_objects = st.dictionaries(_names, _values, max_size=5)


def _render(obj: Any, rng: random.Random) -> str:
    """JSON text with random spacing, escaping and member order, same value."""
    if isinstance(obj, dict):
        items = list(obj.items())
        sep = rng.choice([",", ", ", " ,\t"])
        return (
            "{"
            + sep.join(
                f"{json.dumps(k, ensure_ascii=rng.random() < 0.3)}{rng.choice([':', ' : '])}{_render(v, rng)}"
                for k, v in items
            )
            + "}"
        )
    if isinstance(obj, list):
        return "[" + ",".join(_render(v, rng) for v in obj) + "]"
    return json.dumps(obj, ensure_ascii=rng.random() < 0.3)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_objects, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_scanned_keys_agree_with_exact_keys(objs: list[dict], rng: random.Random) -> None:
    lines = [_render(o, rng) for o in objs]
    text = ("\n".join(lines) + "\n").encode()
    for key in (("id",), ("c.d",), ("id", "a"), ("é",), ('q"t',)):
        rows, types, count = pe.scan_lines(text, key, 3)
        assert count == len(lines)
        assert rows[pe._LINENO].to_list() == list(range(1, len(lines) + 1))
        assert rows[pe._FILE].to_list() == [3] * len(lines)
        assert rows[pe._LINE].to_list() == lines
        want: set[tuple[str, str]] = set()
        for line, token, ok in zip(lines, rows[pe._KEY], rows[pe._OK], strict=True):
            # valid records, no lone surrogates: all vouched for, except those with an escaped
            # member name (it may repeat another once decoded: the exact parser decides)
            assert ok or "\\" in line
            if token is not None:  # its types come from the scanner (else: the exact path)
                want |= set(jsonvalue.leaf_types(jsonvalue.loads(line)).items())
            try:
                exact = pe.key_token(jsonvalue.loads(line), key)
            except records.RecordError:
                exact = None
            assert token is None or token == exact, (line, key, token, exact)
        assert types == want


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_objects, st.randoms(use_true_random=False), st.data())
def test_changed_from_text_agrees_with_the_contract(
    before: dict, rng: random.Random, data: st.DataObject
) -> None:
    """`linescan.changed` (the C comparison of two record texts) gives the contract's changed
    paths (`jsonvalue.changed_paths`) or declines; after a small edit, or none."""
    after = json.loads(json.dumps(before))
    for _ in range(data.draw(st.integers(0, 2))):
        path = data.draw(st.sampled_from(["id", "a", "b", "c.d", "é", "a.b"]))
        target, *rest = path.split(".")
        value = data.draw(_values)
        if rest and isinstance(after.get(target), dict):
            after[target][rest[0]] = value
        else:
            after[target] = value
    b_text, a_text = _render(before, rng), _render(after, rng)
    got = linescan.changed(b_text.encode(), a_text.encode())
    if got is not None:
        assert got == jsonvalue.changed_paths(jsonvalue.loads(b_text), jsonvalue.loads(a_text))


def test_scan_lines_numbers_lines_across_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts scanned on several threads keep the file's line numbers; blank lines, a byte
    order mark and CRLF endings are handled as the line-by-line reader does."""
    monkeypatch.setattr(pe, "_SCAN_PART_BYTES", 64)
    lines = [f'{{"id":{i},"pad":"{"x" * (i % 7)}"}}' for i in range(200)]
    raw = "\ufeff" + "\r\n".join(lines[:50]) + "\n\n \n" + "\n".join(lines[50:])
    rows, types, count = pe.scan_lines(raw.encode(), ("id",), 0)
    assert count == 202  # blank lines count too
    assert types == {("id", "number"), ("pad", "string")}
    assert rows[pe._KEY].to_list() == [str(i) for i in range(200)]
    assert rows[pe._LINENO].to_list() == list(range(1, 51)) + list(range(53, 203))
    assert rows[pe._LINE].to_list() == lines
    assert pe.scan_lines(b'{"id":1}\n{"id":"\xff"}\n', ("id",), 0) is None  # not UTF-8
    assert pe.scan_lines(b"", ("id",), 0)[0].height == 0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("cud"),
            _values.filter(lambda v: v is not None),
            _values.filter(lambda v: v is not None),
            _objects,
            _objects,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_format_events_matches_event_line(rows: list) -> None:
    key = ("k1", "a.b")
    frame_rows = []
    expected = []
    for op, k1, k2, b, a in rows:
        token = pe._KEY_JOIN.join(jsonvalue.canonical_json(v) for v in (k1, k2))
        b_text = None if op == "c" else jsonvalue.compact_json(b)
        a_text = None if op == "d" else jsonvalue.compact_json(a)
        changed = sorted(b) if op == "u" else None
        frame_rows.append(
            (
                token,
                op,
                b_text,
                a_text,
                None if changed is None else jsonvalue.compact_json(changed),
            )
        )
        expected.append(
            events.event_line(op, pe.key_values(token, key), b_text, a_text, changed, RUN_DATE)
        )
    frame = pl.DataFrame(
        frame_rows, schema={c: pl.String for c in (pe._KEY, "op", "b", "a", "ch")}, orient="row"
    )
    assert pe.format_events(frame, key, RUN_DATE)[pe._LINE].to_list() == expected


def test_parse_json_exactness() -> None:
    assert pe.parse_json('{"a":18446744073709551616}')["a"] == 2**64
    assert pe.parse_json(b'{"a":-9223372036854775809}')["a"] == -(2**63) - 1
    assert pe.parse_json('{"a":"\\ud800"}')["a"] == "\ud800"
    with pytest.raises(ValueError):
        pe.parse_json('{"a":NaN}')


def test_key_values_roundtrip() -> None:
    token = pe._KEY_JOIN.join(['"x"', "18446744073709551616", "true"])
    assert pe.key_values(token, ("a", "b", "c")) == {"a": "x", "b": 2**64, "c": True}


def test_pairing_survives_a_hash_collision_across_sides() -> None:
    """Keys `2` (before) and `3` (after) given the same 64-bit hash: the join on hashes pairs
    them, their lines differ, their keys are compared, and the join on text decides."""
    bf = pl.DataFrame(
        {pe._KEY: ["1", "2"], pe._LINE: ['{"id":1}', '{"id":2}'], pe._HASH: [10, 20]},
        schema_overrides={pe._HASH: pl.UInt64},
    )
    af = pl.DataFrame(
        {pe._KEY: ["1", "3"], pe._LINE: ['{"id":1}', '{"id":3}'], pe._HASH: [10, 20]},
        schema_overrides={pe._HASH: pl.UInt64},
    )
    pairing = pe._pair_rows(bf, af, hashes_unique=True)
    assert pairing.unchanged == 1 and pairing.cand.height == 0
    assert pairing.ins[pe._KEY].to_list() == ["3"] and pairing.dels[pe._KEY].to_list() == ["2"]
    # Without the collision the same frames pair by hash alone.
    af = af.with_columns(pl.Series(pe._HASH, [10, 30], dtype=pl.UInt64))
    assert pe._pair_rows(bf, af, hashes_unique=True).ins[pe._KEY].to_list() == ["3"]
