"""The cases themselves: well formed, enough of them, and each `expected.json` agreeing with the
independent reference (so a wrong case cannot be mistaken for an engine bug). No engine here."""

from __future__ import annotations

import re

import pytest

from tests.conformance import casetool, reference, runner

CASES = runner.load_cases()
EVENT_KEYS = {"op", "key", "before", "after", "changed"}


def test_at_least_30_cases_each_in_its_own_folder() -> None:
    assert len(CASES) >= 30
    for case in CASES:
        assert re.fullmatch(r"[a-z0-9_]+", case.name), case.name
        assert (case.path / "spec.json").is_file() and (case.path / "expected.json").is_file()


def test_every_rule_family_is_probed() -> None:
    families = {c.name.split("_")[0] for c in CASES}
    for family in (
        "key",
        "eq",
        "ignore",
        "changed",
        "ops",
        "unchanged",
        "input",
        "bad",
        "empty",
        "allow",
        "quarantine",
        "out",
        "event",
        "drift",
    ):
        assert family in families, f"no case for {family}_*"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_expected_agrees_with_reference(case: runner.Case) -> None:
    ref = casetool.expectation_of(case)
    want = case.expected
    if case.expects_error:
        assert "error" in ref, f"the reference succeeds where the case expects {want['error']}"
        got, exp = ref["error"], want["error"]
        assert got["class"] == exp["class"]
        files = exp["file"] if isinstance(exp["file"], list) else [exp["file"]]
        got_files = got["file"] if isinstance(got["file"], list) else [got["file"]]
        assert set(got_files) <= set(files)
        lines = exp.get("line")
        lines = set(lines if isinstance(lines, list) else [lines] if lines is not None else [])
        got_lines = got.get("line")
        got_lines = set(
            got_lines
            if isinstance(got_lines, list)
            else [got_lines] if got_lines is not None else []
        )
        assert got_lines == lines
        return
    assert "error" not in ref, f"the reference fails: {ref['error']}"
    for event in want["events"]:
        assert EVENT_KEYS <= set(event), event
    assert runner.compare_events(ref["events"], want["events"]) == []
    assert ref["counts"] == want["counts"]
    assert ref["schema_drift"] == want["schema_drift"]
    for name in ("inputs", "bad_records", "unreadable_keys"):
        assert ref.get(name) == want.get(name), name
    for event in want["events"]:
        if "event_id" in event:
            assert event["event_id"] == reference.event_id(
                case.spec["run_date"], event["op"], event["key"]
            )
