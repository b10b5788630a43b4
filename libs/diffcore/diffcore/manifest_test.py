from __future__ import annotations

import json

from diffcore import manifest as mf


def _manifest() -> mf.Manifest:
    return mf.Manifest(
        run_date="2026-11-25",
        engine=mf.Engine("polars", "0.1.0"),
        key=("tenant", "id"),
        ignored=("updated_at",),
        before=mf.InputSide("s3://a/", (mf.InputFile("s3://a/x.jsonl", 3),), 3),
        after=mf.InputSide("s3://b/", (mf.InputFile("s3://b/x.jsonl", 4),), 4),
        counts=mf.Counts(c=1, u=2, d=0, unchanged=1, bad_records=0),
        files=(mf.DataFile("part-00000.jsonl", 3, 1234, "ab" * 32),),
        schema_drift=mf.schema_drift(
            {"a": ["number"], "b": {"string"}}, {"a": ["string", "number"], "c": ["array"]}
        ),
        started_at="2026-11-25T03:00:00+00:00",
        finished_at="2026-11-25T03:01:00+00:00",
        extra={"mode": "in-memory"},
    )


def test_roundtrip() -> None:
    m = _manifest()
    obj = json.loads(m.to_json())
    assert set(obj["inputs"]) == {"before", "after"} and "before" not in obj
    assert obj["contract_version"] == 1
    assert mf.Manifest.from_json(m.to_json()) == m
    assert m.file("part-00000.jsonl") is m.files[0] and m.file("nope") is None
    assert m.counts.changes == 3


def test_schema_drift() -> None:
    drift = _manifest().schema_drift
    assert drift.added == ("c",) and drift.removed == ("b",)
    assert drift.type_changed == (mf.TypeChange("a", ("number",), ("number", "string")),)
    assert not drift.empty
    assert mf.schema_drift({"a": ["number"]}, {"a": {"number"}}).empty
