"""The Spark engine's own tests: its record helpers without Spark, then local Spark (one session
for the module): byte-range splitting with exact line numbers, skew, huge records, and a
property test that the Spark engine and the Polars engine produce the same diff.

The contract itself is checked by tests/conformance (the Spark engine is registered there).
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffcore import jsonvalue, layout
from diffcore import manifest as mf
from diffcore.engines import spark_engine as se
from diffcore.errors import DiffError
from diffcore.spec import OutputOptions, RunSpec

# ------------------------------------------------------------------------------ without Spark


def test_importing_the_spark_engine_imports_neither_polars_nor_pyspark() -> None:
    code = (
        "import sys, diffcore.engines.spark_engine\n"
        "bad = [m for m in ('polars', 'pyspark') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=None)


@pytest.mark.parametrize(
    "text",
    [
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "-1e400",
        "1e400",
        "0.1",
        "1.0",
        "-0.0",
        "5e-324",
        '"\\ud800"',
        '{"n": 1152921504606846977}',
        '[1, 2.5, "x", null, true]',
    ],
)
def test_parse_record_is_the_reference_parser(text: str) -> None:
    for raw in (text, text.encode()):
        got, want = se.parse_record(raw), jsonvalue.loads(raw)
        # The same value by the contract (orjson's float where a double is exact, the
        # reference's Number otherwise), written back the same.
        assert jsonvalue.normalize(got) == jsonvalue.normalize(want)
        assert jsonvalue.compact_json(got) == jsonvalue.compact_json(want)


@pytest.mark.parametrize(
    "text",
    ["NaN", "Infinity", "{", "[1,]", "{'a':1}", "01", "", '{"a":1,"a":2}', '[{"b":{"c":1,"c":1}}]'],
)
def test_parse_record_rejects_what_the_reference_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        jsonvalue.loads(text)
    with pytest.raises(ValueError):
        se.parse_record(text)
    assert se.fast_record_key(text.encode(), ("a",)) is None


json_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=300, deadline=None)
@given(
    value=st.recursive(
        st.one_of(st.none(), st.booleans(), json_numbers, st.text(max_size=8)),
        lambda c: st.one_of(
            st.lists(c, max_size=4), st.dictionaries(st.text(max_size=4), c, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_parse_record_matches_the_reference_on_random_json(value) -> None:
    text = json.dumps(value)
    assert jsonvalue.normalize(se.parse_record(text)) == jsonvalue.normalize(jsonvalue.loads(text))
    assert jsonvalue.compact_json(se.parse_record(text)) == jsonvalue.compact_json(
        jsonvalue.loads(text)
    )


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), json_numbers, st.text(max_size=6)),
    lambda c: st.one_of(
        st.lists(c, max_size=4), st.dictionaries(st.text(max_size=3), c, max_size=4)
    ),
    max_leaves=16,
)


key_values = st.one_of(
    st.none(),
    st.booleans(),
    json_numbers,
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@settings(max_examples=500, deadline=None)
@given(
    record=st.dictionaries(st.sampled_from(["id", "a", "b", "x.y"]), key_values, max_size=4),
    nested=st.one_of(st.none(), key_values),
    key=st.sampled_from([("id",), ("a", "id"), ("b", "a"), ("x.y",), ("n.id",)]),
    spaces=st.booleans(),
)
def test_fast_record_key_is_the_careful_key_or_none(record, nested, key, spaces) -> None:
    if nested is not None:
        record["n"] = {"id": nested}
    text = json.dumps(record, ensure_ascii=False, separators=(", ", ": ") if spaces else None)
    got = se.fast_record_key(text.encode(), key)
    if got is not None:  # the fast path may decline, but never disagree
        assert se.record_key(jsonvalue.loads(text), key) == (None, got)


@pytest.mark.parametrize(
    "text",
    [
        '{"id": 18446744073709551616}',
        '{"id": -9223372036854775809}',
        '{"id": 1.5}',
        '{"id": 1e400}',
        '{"id": null}',
        '{"id": "\\ud800"}',
        '[{"id": 1}]',
        '{"id": 1',
    ],
)
def test_fast_record_key_leaves_the_hard_cases_to_the_careful_path(text: str) -> None:
    assert se.fast_record_key(text.encode(), ("id",)) is None


def test_fast_record_key_writes_canonical_json() -> None:
    raw = '{"z":1,"id":"caf\u00e9 \\"q\\"","b":true,"a":-1099511627776}'.encode()
    got = se.fast_record_key(raw, ("id", "b", "a"))
    assert got == jsonvalue.canonical_json({"id": 'café "q"', "b": True, "a": -(2**40)})


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.sampled_from([b"", b"{}", b"x" * 40, b"  ", b'{"a":1}', b"\r"]), max_size=30),
    split=st.integers(min_value=1, max_value=64),
    trailing=st.booleans(),
)
def test_byte_ranges_own_every_line_exactly_once(
    lines: list[bytes], split: int, trailing: bool
) -> None:
    data = b"\n".join(lines) + (b"\n" if trailing and lines else b"")
    whole = io.BytesIO(data).readlines()
    got: list[bytes] = []
    for start in range(0, max(len(data), 1), split):
        end = start + split
        stream = io.BytesIO(data)
        stream.seek(max(start - 1, 0))
        rng = se._RangeLines(stream, start, -1 if end >= len(data) else end)  # noqa: SLF001
        part = list(rng)
        assert rng.count == len(part)
        got += part
    assert got == whole


def test_record_key_errors_and_canonical_text() -> None:
    assert se.record_key({"b": {"id": 2**70}, "a": "x"}, ("b.id", "a")) == (
        None,
        '{"a":"x","b.id":1180591620717411303424}',
    )
    assert se.record_key([1], ("id",))[0].value == "not_an_object"
    assert se.record_key({"id": None}, ("id",))[0].value == "missing_key"
    assert se.record_key({"x": {"id": 1}}, ("x.id", "y"))[0].value == "missing_key"


# ------------------------------------------------------------------------------ with Spark


@pytest.fixture(scope="module")
def spark():
    session = se.local_session("spark-engine-test", cores=2, shuffle_partitions=4)
    yield session
    session.stop()


def _spec(tmp: Path, **kw) -> RunSpec:
    base = dict(
        before=str(tmp / "before"),
        after=str(tmp / "after"),
        key=("id",),
        out=str(tmp / "out"),
        run_date="2026-11-25",
    )
    base.update(kw)
    return RunSpec(**base)


def _events(folder: str) -> list[dict]:
    out = []
    for path in sorted(Path(folder).glob("part-*")):
        out += [json.loads(line) for line in path.read_text().splitlines()]
    return out


def _summary(events: list[dict]) -> list[tuple]:
    return sorted(
        (
            e["op"],
            json.dumps(e["key"], sort_keys=True),
            tuple(e["changed"] or ()),
            e["event_id"],
            (
                None
                if e["before"] is None
                else jsonvalue.comparable_leaves(e["before"]).items().__repr__()
            ),
            (
                None
                if e["after"] is None
                else jsonvalue.comparable_leaves(e["after"]).items().__repr__()
            ),
        )
        for e in events
    )


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def test_split_files_give_the_same_diff_and_exact_line_numbers(spark, tmp_path: Path) -> None:
    before = [json.dumps({"id": i, "v": i % 7, "pad": "x" * (i % 13)}) for i in range(400)]
    after = [
        json.dumps({"id": i, "v": (i % 7) + (i % 5 == 0), "pad": "x" * (i % 13)})
        for i in range(20, 430)
    ]
    before.insert(150, "")  # blank lines move the line numbers, not the records
    after.insert(10, "   ")
    _write(tmp_path / "before" / "a.jsonl", before)
    _write(tmp_path / "after" / "a.jsonl", after)
    whole = se.SparkEngine(spark).run(_spec(tmp_path, out=str(tmp_path / "o1")))
    split_engine = se.SparkEngine(spark, split_bytes=512)
    split = split_engine.run(_spec(tmp_path, out=str(tmp_path / "o2")))
    assert split_engine.last_stats["read_tasks"] > 20
    assert _summary(_events(whole.folder)) == _summary(_events(split.folder))
    assert whole.manifest.counts == split.manifest.counts
    assert whole.manifest.schema_drift == split.manifest.schema_drift
    assert split.manifest.before.files[0].records == 400

    # A bad line deep into a split file is reported with its line number in the whole file.
    bad_after = list(after)
    bad_after[333] = '{"id": 999, "v": '
    _write(tmp_path / "after" / "a.jsonl", bad_after)
    with pytest.raises(DiffError) as info:
        split_engine.run(_spec(tmp_path, out=str(tmp_path / "o3")))
    assert info.value.error_class.value == "malformed_json"
    assert info.value.line == 334 and info.value.file.endswith("a.jsonl")
    assert not (tmp_path / "o3" / "2026-11-25" / layout.MANIFEST_NAME).exists()

    # Quarantine over split files: every bad record with its exact line.
    bad_after[100] = "[1]"
    bad_after[250] = '{"v": 1}'
    _write(tmp_path / "after" / "a.jsonl", bad_after)
    q = split_engine.run(_spec(tmp_path, out=str(tmp_path / "o4"), bad_records="quarantine"))
    bad = [
        json.loads(x) for x in (Path(q.folder) / layout.BAD_RECORDS_NAME).read_text().splitlines()
    ]
    assert [(b["reason"], b["line"]) for b in bad] == [
        ("not_an_object", 101),
        ("missing_key", 251),
        ("malformed_json", 334),
    ]
    assert q.manifest.counts.bad_records == 3


def test_duplicate_across_ranges_names_both_lines(spark, tmp_path: Path) -> None:
    lines = [json.dumps({"id": i, "pad": "y" * 30}) for i in range(200)]
    lines.append(json.dumps({"id": 7, "pad": "dup"}))
    _write(tmp_path / "before" / "a.jsonl", lines)
    _write(tmp_path / "after" / "a.jsonl", lines[:3])
    with pytest.raises(DiffError) as info:
        se.SparkEngine(spark, split_bytes=300).run(_spec(tmp_path))
    assert info.value.error_class.value == "duplicate_key"
    assert (
        info.value.line == 8
        and "a.jsonl:201" in info.value.message
        and '"id":7' in info.value.message
    )


def test_array_file_larger_than_a_range_is_read_whole(spark, tmp_path: Path) -> None:
    records = [{"id": i, "v": [i, {"x": str(i)}]} for i in range(300)]
    (tmp_path / "before").mkdir()
    (tmp_path / "before" / "a.json").write_text(json.dumps(records, indent=2))
    _write(tmp_path / "after" / "a.jsonl", [json.dumps(r) for r in records[1:]])
    res = se.SparkEngine(spark, split_bytes=256).run(_spec(tmp_path))
    assert (res.manifest.counts.d, res.manifest.counts.unchanged) == (1, 299)
    assert res.manifest.before.records == 300


def test_skew_one_partition_and_huge_records(spark, tmp_path: Path) -> None:
    """All keys in one shuffle partition, a 6 MB record, many changes in few partitions:
    the same events as with more partitions, and part files still bounded."""
    huge = "z" * (6 * 1024 * 1024)
    before = [json.dumps({"id": i, "v": 0}) for i in range(3000)] + [
        json.dumps({"id": "huge", "blob": huge})
    ]
    after = [json.dumps({"id": i, "v": i % 2}) for i in range(3000)] + [
        json.dumps({"id": "huge", "blob": huge + "!"})
    ]
    _write(tmp_path / "before" / "a.jsonl", before)
    _write(tmp_path / "after" / "a.jsonl", after)
    opts = OutputOptions(max_records_per_file=400, max_bytes_per_file=1024 * 1024)
    one = se.SparkEngine(spark, shuffle_partitions=1).run(
        _spec(tmp_path, out=str(tmp_path / "o1"), output=opts)
    )
    many = se.SparkEngine(spark, shuffle_partitions=7).run(
        _spec(tmp_path, out=str(tmp_path / "o2"), output=opts)
    )
    assert one.manifest.counts.u == many.manifest.counts.u == 1501
    assert _summary(_events(one.folder)) == _summary(_events(many.folder))
    for m in (one.manifest, many.manifest):
        assert all(f.records <= 400 for f in m.files)
        # a file is closed before it would pass the byte bound, unless its only line is bigger
        assert all(f.bytes <= 1024 * 1024 or f.records == 1 for f in m.files)
    huge_event = [e for e in _events(one.folder) if e["key"] == {"id": "huge"}]
    assert huge_event[0]["changed"] == ["blob"]


# ------------------------------------------------------------------------------ Spark == Polars

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=5),
)
values = st.recursive(
    scalars,
    lambda c: st.one_of(
        st.lists(c, max_size=3), st.dictionaries(st.sampled_from("abcxy"), c, max_size=3)
    ),
    max_leaves=8,
)
payloads = st.dictionaries(st.sampled_from(["a", "b", "c", "n", "m.x"]), values, max_size=4)


@st.composite
def snapshot_pair(draw):
    ids = draw(
        st.lists(
            st.one_of(st.integers(-5, 40), st.sampled_from(["1", "k", "é"])),
            unique=True,
            max_size=25,
        )
    )
    before, after = {}, {}
    for i in ids:
        fate = draw(st.sampled_from(["both_same", "both_diff", "before", "after", "rewrite"]))
        p = draw(payloads)
        if fate in ("both_same", "both_diff", "before", "rewrite"):
            before[json.dumps(i)] = {"id": i, **p}
        if fate == "both_same":
            after[json.dumps(i)] = {"id": i, **p}
        elif fate == "rewrite":  # same JSON by the contract, other bytes
            q = {"id": i, **{k: v for k, v in reversed(list(p.items()))}, "zz": None}
            after[json.dumps(i)] = q
        elif fate in ("both_diff", "after"):
            after[json.dumps(i)] = {"id": i, **draw(payloads)}
    gz = draw(st.booleans())
    array = draw(st.booleans())
    ignore = draw(st.sampled_from([(), ("a",), ("m",), ("b.x",)]))
    return list(before.values()), list(after.values()), gz, array, ignore


def _write_side(folder: Path, records: list[dict], gz: bool, array: bool) -> None:
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    half = len(records) // 2
    (folder / "p1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:half]))
    text = (
        json.dumps(records[half:], indent=1)
        if array
        else "".join(json.dumps(r) + "\n" for r in records[half:])
    )
    if gz:
        (folder / "p2.json.gz").write_bytes(gzip.compress(text.encode()))
    else:
        (folder / "p2.json").write_text(text)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pair=snapshot_pair())
def test_spark_equals_polars_on_random_nested_records(spark, tmp_path_factory, pair) -> None:
    polars_engine = pytest.importorskip("diffcore.engines.polars_engine")
    before, after, gz, array, ignore = pair
    tmp = tmp_path_factory.mktemp("prop")
    _write_side(tmp / "before", before, gz, array)
    _write_side(tmp / "after", after, gz, array)
    allow = frozenset({"before", "after"})
    results = {}
    for name, engine in (
        ("spark", se.SparkEngine(spark, split_bytes=random.choice([64, 10**9]))),
        ("polars", polars_engine.PolarsEngine()),
    ):
        spec = _spec(tmp, out=str(tmp / name), ignore=ignore, allow_empty=allow)
        try:
            res = engine.run(spec)
        except DiffError as exc:
            results[name] = ("error", exc.error_class.value, Path(exc.file or "").name, exc.line)
            continue
        m = res.manifest
        results[name] = (
            _summary(_events(res.folder)),
            m.counts,
            m.schema_drift,
            [(Path(f.path).name, f.records) for f in m.before.files + m.after.files],
        )
    assert results["spark"] == results["polars"]


def _reference_drift(before: list[str], after: list[str]) -> mf.SchemaDrift:
    """Schema drift by definition: every record of each side parsed (`jsonvalue.leaf_types`)."""
    sides = []
    for lines in (before, after):
        types: dict[str, set[str]] = {}
        for line in lines:
            for path, kind in jsonvalue.leaf_types(jsonvalue.loads(line)).items():
                types.setdefault(path, set()).add(kind)
        sides.append(types)
    return mf.schema_drift(*sides)


@pytest.mark.parametrize(
    "before, after",
    [
        # p: number in the unchanged records; the update makes it a string -> number|string,
        # not number -> string (the unchanged records' types are found by the search job).
        (
            ['{"id":1,"p":1}', '{"id":2,"p":2}', '{"id":3,"p":3}'],
            ['{"id":1,"p":1}', '{"id":2,"p":2}', '{"id":3,"p":"x"}'],
        ),
        # q exists only in unchanged records and in a deleted one: not removed.
        (
            ['{"id":1,"q":true}', '{"id":2}', '{"id":3,"q":false}'],
            ['{"id":1,"q":true}', '{"id":2,"r":[1]}'],
        ),
        # an inserted record brings a type the unchanged records already have (escaped name).
        (
            ['{"id":1,"n":{"\\u0061":"s"}}', '{"id":2,"n":{"a":1}}'],
            ['{"id":1,"n":{"\\u0061":"s"}}', '{"id":2,"n":{"a":1}}', '{"id":3,"n":{"a":"t"}}'],
        ),
        # a type only in the after side's unchanged records... is in the before side's too.
        (
            ['{"id":1,"v":[1]}', '{"id":2,"v":1}'],
            ['{"id":1,"v":[1]}', '{"id":2,"v":[2]}'],
        ),
    ],
)
def test_schema_drift_counts_the_unchanged_records_it_does_not_parse(
    spark, tmp_path: Path, before: list[str], after: list[str]
) -> None:
    _write(tmp_path / "before" / "b.jsonl", before)
    _write(tmp_path / "after" / "a.jsonl", after)
    result = se.SparkEngine(spark).run(_spec(tmp_path))
    assert result.manifest.schema_drift == _reference_drift(before, after)
