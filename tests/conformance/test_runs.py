"""Run-level rules of contract §5 that one case cannot show: reruns, failed reruns, other dates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffcore import layout
from diffcore.errors import DiffError
from diffcore.spec import OutputOptions, RunSpec
from tests.conformance import reference, runner


def _write(folder: Path, records: list[dict]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records), encoding="utf-8"
    )
    return str(folder)


def _spec(
    tmp: Path, before: str, after: str, run_date: str = "2024-05-01", max_records: int = 2
) -> RunSpec:
    return RunSpec(
        before=before,
        after=after,
        key=("id",),
        out=str(tmp / "out"),
        run_date=run_date,
        output=OutputOptions(max_records_per_file=max_records),
    )


def _check(engine, spec: RunSpec, before: list[dict], after: list[dict]) -> runner.RunOutput:
    out = runner.check_run(engine.run(spec), spec, engine.name)
    ref = reference.diff(before, after, spec.key)
    assert runner.compare_events(out.events, ref.events) == []
    assert {k: out.manifest["counts"][k] for k in ref.counts} == ref.counts
    return out


def test_rerun_replaces_the_dates_output(engine, tmp_path: Path) -> None:
    before = [{"id": i, "v": 0} for i in range(10)]
    after1 = [{"id": i, "v": 1} for i in range(10)]  # 10 updates: 5 parts of 2
    after2 = [{"id": i, "v": 0 if i else 2} for i in range(10)]  # 1 update: 1 part
    b = _write(tmp_path / "b", before)
    first = _check(engine, _spec(tmp_path, b, _write(tmp_path / "a1", after1)), before, after1)
    assert len(first.manifest["files"]) == 5
    second = _check(engine, _spec(tmp_path, b, _write(tmp_path / "a2", after2)), before, after2)
    # check_run already fails on any object of the folder the new manifest does not list.
    assert len(second.manifest["files"]) == 1


def test_failed_rerun_leaves_no_manifest(engine, tmp_path: Path) -> None:
    before = [{"id": i, "v": 0} for i in range(3)]
    after = [{"id": i, "v": 1} for i in range(3)]
    b = _write(tmp_path / "b", before)
    _check(engine, _spec(tmp_path, b, _write(tmp_path / "a", after)), before, after)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "data.jsonl").write_text('{"id": 1}\n{"id": 2, oops}\n', encoding="utf-8")
    spec = _spec(tmp_path, b, str(bad))
    with pytest.raises(DiffError) as info:
        engine.run(spec)
    assert info.value.error_class.value == "malformed_json"
    folder = Path(spec.out) / spec.run_date
    assert not (
        folder / layout.MANIFEST_NAME
    ).exists(), "a failed rerun left the old manifest: D looks complete"
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "temporary files left"


def test_other_dates_are_untouched(engine, tmp_path: Path) -> None:
    before = [{"id": i, "v": 0} for i in range(4)]
    after = [{"id": i, "v": i % 2} for i in range(4)]
    b, a = _write(tmp_path / "b", before), _write(tmp_path / "a", after)
    first = _check(engine, _spec(tmp_path, b, a, run_date="2024-05-01"), before, after)
    snapshot = {p.name: p.read_bytes() for p in first.folder.iterdir()}
    _check(engine, _spec(tmp_path, b, a, run_date="2024-05-02"), before, after)
    assert {p.name: p.read_bytes() for p in first.folder.iterdir()} == snapshot
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["2024-05-01", "2024-05-02"]


def test_same_input_gives_same_events(engine, tmp_path: Path) -> None:
    """Deterministic output: the same run twice gives the same events and event ids."""
    before = [{"id": i, "v": i} for i in range(6)]
    after = [{"id": i, "v": -i} for i in range(2, 9)]
    b, a = _write(tmp_path / "b", before), _write(tmp_path / "a", after)
    spec = _spec(tmp_path, b, a)
    one = _check(engine, spec, before, after)
    ids1 = sorted(e["event_id"] for e in one.events)
    two = _check(engine, spec, before, after)
    assert sorted(e["event_id"] for e in two.events) == ids1


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_date_held_by_another_run_is_refused(engine, tmp_path: Path) -> None:
    """Two runs for one date: the second fails with `concurrent_run` and touches nothing, so the
    date stays exactly the first run's (its manifest's SHA-256s match its files)."""
    from diffcore.runlock import RunLock

    before = [{"id": i, "v": 0} for i in range(6)]
    after = [{"id": i, "v": i % 3} for i in range(6)]
    b, a = _write(tmp_path / "b", before), _write(tmp_path / "a", after)
    spec = _spec(tmp_path, b, a)
    _check(engine, spec, before, after)
    folder = Path(spec.out) / spec.run_date
    complete = _folder_bytes(folder)
    other = RunLock(str(folder), "20240501T020000-othr0001")
    other.acquire()
    try:
        with pytest.raises(DiffError) as info:
            engine.run(_spec(tmp_path, b, _write(tmp_path / "a2", before)))
        assert info.value.error_class.value == "concurrent_run"
        assert info.value.exit_code == 10
        assert "20240501T020000-othr0001" in info.value.describe()
        held = _folder_bytes(folder)
        held.pop(layout.LOCK_NAME)
        assert held == complete, "the refused run changed the date's files"
    finally:
        other.release()
    _check(engine, spec, before, after)  # free again: a rerun goes through


def test_temporaries_of_a_killed_run_are_removed_by_the_next(engine, tmp_path: Path) -> None:
    before = [{"id": i, "v": 0} for i in range(3)]
    after = [{"id": i, "v": 1} for i in range(3)]
    spec = _spec(tmp_path, _write(tmp_path / "b", before), _write(tmp_path / "a", after))
    folder = Path(spec.out) / spec.run_date
    folder.mkdir(parents=True)
    for name in (".part-00000.jsonl.tmp-4242-deadbeef", "._manifest.json.tmp-4242-0badf00d"):
        (folder / name).write_bytes(b'{"half": ')
    _check(engine, spec, before, after)
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def moto_s3():
    """A moto_server on 127.0.0.1 that every S3 client of this process talks to."""
    from diffcore import store
    from tests.support.services import aws_env, moto_server

    with moto_server() as url, aws_env(url):
        store._clients.clear()
        yield url
    store._clients.clear()


def test_a_missing_bucket_is_an_io_error_naming_it(engine, tmp_path: Path, moto_s3: str) -> None:
    rows = [{"id": 1, "v": 0}]
    b, a = _write(tmp_path / "b", rows), _write(tmp_path / "a", rows)
    for spec in (
        RunSpec(before=b, after=a, key=("id",), out="s3://no-such-diffs-4711", run_date="2024-05-01"),
        RunSpec(before="s3://no-such-input-4711/x/", after=a, key=("id",), out=str(tmp_path / "o"),
                run_date="2024-05-01"),
    ):  # fmt: skip
        with pytest.raises(DiffError) as info:
            engine.run(spec)
        assert info.value.error_class.value == "io_error", info.value.describe()
        assert "no-such-" in info.value.describe() and "does not exist" in info.value.describe()


def test_symlinked_partition_is_read_and_a_fifo_refused(engine, tmp_path: Path) -> None:
    import os

    before = [{"id": i, "v": 0} for i in range(4)]
    b = _write(tmp_path / "b", before)
    real = Path(_write(tmp_path / "elsewhere", before[2:]))
    snap = tmp_path / "a"
    _write(snap / "p1", before[:2])
    (snap / "p2").symlink_to(real, target_is_directory=True)
    out = _check(engine, _spec(tmp_path, b, str(snap)), before, before)
    assert out.manifest["counts"]["d"] == 0  # the linked partition's records are not deleted
    os.mkfifo(snap / "p1" / "stream.jsonl")
    with pytest.raises(DiffError) as info:
        engine.run(_spec(tmp_path, b, str(snap), run_date="2024-05-02"))
    assert info.value.error_class.value == "io_error" and "FIFO" in info.value.describe()


def test_an_event_over_the_publishers_limit_is_refused_at_diff_time(engine, tmp_path: Path) -> None:
    """A record whose event would exceed `layout.MAX_EVENT_BYTES` (the publisher's line limit)
    fails the run with `event_too_large` naming the key: no day is written that could never be
    published."""
    b = _write(tmp_path / "b", [{"id": 1, "v": 0}])
    a = tmp_path / "a"
    a.mkdir()
    big = "x" * (layout.MAX_EVENT_BYTES + 10)
    (a / "data.jsonl").write_text('{"id": 1, "v": 0}\n{"id": 2, "blob": "' + big + '"}\n')
    spec = _spec(tmp_path, b, str(a))
    with pytest.raises(DiffError) as info:
        engine.run(spec)
    assert info.value.error_class.value == "event_too_large", info.value.describe()
    assert info.value.exit_code == 11
    assert "'c' event of key {\"id\": 2}" in info.value.message
    assert not (Path(spec.out) / spec.run_date / layout.MANIFEST_NAME).exists()


def _nested_array(n: int) -> str:
    return "[" * n + "1" + "]" * n


def _nested_object(n: int, leaf: str) -> str:
    return '{"x":' * n + leaf + "}" * n


def _lines(folder: Path, lines: list[str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(folder)


def test_nesting_up_to_the_declared_depth_and_a_named_error_past_it(engine, tmp_path: Path) -> None:
    """Contract §1: nesting to MAX_DEPTH (256) levels works, a deeper record is
    `malformed_json` "nested too deeply" naming file and line, at any depth: no RecursionError
    (Python's limit sits between 500 and 1023 levels), in both engines."""
    from diffcore.jsonvalue import MAX_DEPTH

    inner = MAX_DEPTH - 1  # the record's own object is one level
    before = [
        f'{{"id":1,"v":{_nested_array(inner)}}}',
        f'{{"id":2,"v":{_nested_object(inner, "1")}}}',
    ]
    after = [before[0], f'{{"id":2,"v":{_nested_object(inner, "2")}}}']
    spec = _spec(tmp_path, _lines(tmp_path / "b", before), _lines(tmp_path / "a", after))
    out = runner.check_run(engine.run(spec), spec, engine.name)
    assert [(e["op"], e["key"]) for e in out.events] == [("u", {"id": 2})]
    assert out.events[0]["changed"] == ["v" + ".x" * inner]
    for depth in (MAX_DEPTH, 1000, 100_000):  # one more than allowed, and far past it
        for deep in (_nested_array(depth), _nested_object(depth, "1")):
            a = _lines(tmp_path / f"a{depth}", [after[0], f'{{"id":3,"v":{deep}}}'])
            bad = _spec(tmp_path, _lines(tmp_path / "b", before), a, run_date="2024-05-02")
            with pytest.raises(DiffError) as info:
                engine.run(bad)
            err = info.value
            assert err.error_class.value == "malformed_json", err.describe()
            assert "nested too deeply" in err.message and err.line == 2, err.describe()
    # Quarantine survives any depth: the deep line is set aside, the rest is diffed.
    a = _lines(tmp_path / "aq", [after[0], f'{{"id":3,"v":{_nested_array(100_000)}}}'])
    quarantine = RunSpec(
        before=_lines(tmp_path / "b", before), after=a, key=("id",), out=str(tmp_path / "q"),
        run_date="2024-05-03", bad_records="quarantine",
    )  # fmt: skip
    out = runner.check_run(engine.run(quarantine), quarantine, engine.name)
    assert [(reason["reason"], reason["line"]) for _, reason in out.bad_records] == [
        ("malformed_json", 2)
    ]
