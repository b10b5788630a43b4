from __future__ import annotations

import pytest

from diffcore.errors import DiffError, ErrorClass
from diffcore.spec import OutputOptions, RunSpec, parse_allow_empty, parse_paths


def test_parse_paths_and_allow_empty() -> None:
    assert parse_paths(" tenant, customer.id ,,") == ("tenant", "customer.id")
    assert parse_paths(None) == ()
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
