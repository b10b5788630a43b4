from __future__ import annotations

import pytest

from diffcore.errors import DiffError, ErrorClass
from diffcore.spec import (
    OutputOptions,
    RunSpec,
    key_value_problem,
    parse_allow_empty,
    parse_paths,
)


def test_parse_paths_and_allow_empty() -> None:
    assert parse_paths(" tenant, customer.id ,,") == ("tenant", "customer.id")
    assert parse_paths(None) == ()
    assert parse_paths(["region", " id,sub ", ""]) == ("region", "id", "sub")
    assert parse_paths([]) == ()
    assert parse_allow_empty("none") == frozenset() and parse_allow_empty(None) == frozenset()
    assert parse_allow_empty("both") == {"before", "after"}
    assert parse_allow_empty("before") == {"before"}
    with pytest.raises(DiffError) as err:
        parse_allow_empty("sideways")
    assert err.value.error_class is ErrorClass.CONFIG_ERROR and err.value.exit_code == 2


def test_run_spec() -> None:
    spec = RunSpec(before="a", after="b", key=("id",), out="s3://diffs/", run_date="2026-11-25")
    assert spec.run_folder == "s3://diffs/2026-11-25"
    assert spec.location("before") == "a" and spec.location("after") == "b"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key": ()},
        {"key": ("a..b",)},
        {"key": ("id",), "ignore": ("",)},
        {"key": ("meta.id",), "ignore": ("meta",)},
        {"key": ("id", "id")},
        {"key": parse_paths("id, id")},
        {"key": parse_paths(["tenant,id", "tenant"])},
        {"key": ("id",), "ignore": ("id",)},
        {"key": ("id",), "ignore": parse_paths("a,b,a")},
        {"bad_records": "skip"},
        {"run_date": "2026-13-01"},
        {"run_date": "26-11-25"},
    ],
)
def test_run_spec_rejects(kwargs: dict) -> None:
    base = {"before": "a", "after": "b", "key": ("id",), "out": "o", "run_date": "2026-11-25"}
    with pytest.raises(DiffError) as err:
        RunSpec(**{**base, **kwargs})
    assert err.value.error_class is ErrorClass.CONFIG_ERROR


def test_output_options() -> None:
    with pytest.raises(DiffError):
        OutputOptions(max_records_per_file=0)
    assert OutputOptions().max_bytes_per_file == 128 * 1024 * 1024


def test_run_spec_names_the_path_given_twice() -> None:
    base = {"before": "a", "after": "b", "out": "o", "run_date": "2026-11-25"}
    with pytest.raises(DiffError, match=r"key field path given twice: 'customer\.id'"):
        RunSpec(**base, key=parse_paths("tenant,customer.id,customer.id"))
    with pytest.raises(DiffError, match=r"ignore field path given twice: 'meta'"):
        RunSpec(**base, key=("id",), ignore=("meta", "meta"))
    assert RunSpec(**base, key=parse_paths(["region", "id"])).key == ("region", "id")


def test_key_value_problem() -> None:
    """A key field holds a scalar: missing, null, object and array values are `missing_key`."""
    assert key_value_problem("id", None) == "key field 'id' is missing or null"
    assert key_value_problem("c.id", {"n": 1}) == (
        "key field 'c.id' is an object, not a scalar key value"
    )
    assert key_value_problem("id", {}) == "key field 'id' is an object, not a scalar key value"
    assert key_value_problem("id", []) == "key field 'id' is an array, not a scalar key value"
    for scalar in ("", "1", 0, 1, -(2**70), 1.5, True, False):
        assert key_value_problem("id", scalar) is None


@pytest.mark.parametrize(
    "before, after, out, clash",
    [
        ("/data/snap", "/data/today", "/data/snap/diffs", True),  # out inside before
        ("/data/snap", "/data/today", "/data/today", True),  # D's folder inside after
        ("/data/snap/*.jsonl", "/data/today", "/data/snap", True),  # a glob's folder
        ("/data/snap", "/data/today", "/data/diffs", False),
        ("/data/snap", "/data/today", "/data", False),  # /data/2026-11-25 is apart
        ("s3://b/exports/2026-11-24/", "s3://b/exports/2026-11-25/", "s3://b/diffs", False),
        # out/D is the after snapshot itself: refused
        ("s3://b/exports/2026-11-24/", "s3://b/exports/2026-11-25/", "s3://b/exports", True),
        ("s3://b/exports/", "s3://b/exports/x/", "s3://b/exports/diffs", True),
        ("s3://b/exports/", "s3://b/x/", "/data/exports", False),  # local vs S3
        ("s3://b/ex/", "s3://b/y/", "s3://b/exports", False),  # a prefix of the text only
    ],
)
def test_output_inside_an_input_is_refused(before: str, after: str, out: str, clash: bool) -> None:
    def make() -> RunSpec:
        return RunSpec(before=before, after=after, key=("id",), out=out, run_date="2026-11-25")

    if not clash:
        make()
        return
    with pytest.raises(DiffError) as info:
        make()
    assert info.value.exit_code == 2
    assert "overlap" in info.value.message and out.rstrip("/") in info.value.message
