"""Hostile lines, generated: both engines give an answer from the contract's set, never a
traceback, and the same answer, byte for byte.

Each example is a before and an after file of NDJSON lines drawn from hostile forms: numbers of
every shape and magnitude (`1e400`, `-0`, `0.10000000000000001`, 40-digit integers,
`123e-10000000`), strings with escapes and lone surrogates, nesting up to and past the declared
depth, key values of every JSON type or missing, and broken lines (trailing commas, a BOM in
the middle, invalid UTF-8, `NaN`, unbalanced brackets, members named twice). Both engines run it in quarantine mode
and in fail mode; they must agree on the outcome (the error class and line, or the events as
bytes, the bad records' reasons and lines, and the counts).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffcore import layout
from diffcore.errors import EXIT_CODES, DiffError
from diffcore.jsonvalue import MAX_DEPTH
from diffcore.spec import RunSpec
from tests.conformance import engines

NUMBERS = [
    "0", "-0", "1", "1.0", "1e0", "1E+0", "0.1", "0.10000000000000001", "1e400", "-1e400",
    "2e400", "1e-400", "123e-10000000", "9007199254740993", "-9223372036854775809",
    "1234567890123456789012345678901234567890", "4.9e-324", "1.7976931348623157e308",
]  # fmt: skip
STRINGS = [
    '""', '"a"', '"\\ud800"', '"\\uD800"', '"\\udc00x"', '"\\ud83d\\ude00"', '"😀"', '"\\u0000"',
    '"\\/"', '"é"', '"e\\u0301"', '"\\"quoted\\""', '"1"', '"true"', '"null"',
]  # fmt: skip
BROKEN = [
    b'{"id":1,"v":1,}', b'{"id":2,"v":[1,2,]}', b'{"id":3,\xef\xbb\xbf"v":1}', b'{"id":4,"v":NaN}',
    b'{"id":5,"v":"\xff\xfe"}', b'{"id":6,"v":[1}', b'{"id":7 "v":1}', b"[1,2]", b"null", b'"x"',
    b'{"id":8,"v":Infinity}', b'{"id":9,"v":01}', b'{"id":10,"v":"\t"}',
    b'{"id":11,"v":1,"v":2}', b'{"id":12,"o":{"a":1,"\\u0061":2}}', b'{"id":1,"id":1}',
    b'{"id":13,"a":[{"b":1},{"b":2,"b":3}]}', b'{id:14}', b'{"id":15,"v":"x"}}',
]  # fmt: skip


def _nested(depth: int, leaf: str) -> str:
    return "[" * depth + leaf + "]" * depth


@st.composite
def value(draw: Any) -> str:
    kind = draw(st.sampled_from(["number", "string", "literal", "array", "object", "deep"]))
    if kind == "number":
        return draw(st.sampled_from(NUMBERS))
    if kind == "string":
        return draw(st.sampled_from(STRINGS))
    if kind == "literal":
        return draw(st.sampled_from(["true", "false", "null"]))
    if kind == "array":
        return "[" + ",".join(draw(st.lists(st.sampled_from(NUMBERS + STRINGS), max_size=3))) + "]"
    if kind == "object":
        names = draw(st.lists(st.sampled_from(['"a"', '"b"', '"\\u0061"']), max_size=3))
        return "{" + ",".join(f"{n}:{draw(st.sampled_from(NUMBERS))}" for n in names) + "}"
    depth = draw(st.sampled_from([MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 50]))
    return _nested(depth, draw(st.sampled_from(NUMBERS)))


@st.composite
def line(draw: Any, ident: int) -> bytes:
    if draw(st.integers(0, 14)) == 0:
        return draw(st.sampled_from(BROKEN))
    hostile = ["true", "null", "[1]", '{"a":1}', "1e400", "2e400", '"\\ud800"', "1.0", "-0"]
    key = (
        draw(st.sampled_from(hostile))
        if draw(st.integers(0, 4)) == 0
        else draw(st.sampled_from([str(ident), f'"k{ident}"']))
    )
    members = [f'"id":{key}'] if draw(st.integers(0, 15)) else []  # sometimes no key at all
    members += [f'"v":{draw(value())}']
    if draw(st.booleans()):
        members.append(f'"w":{draw(value())}')
    return ("{" + ",".join(draw(st.permutations(members))) + "}").encode("utf-8", "surrogatepass")


@st.composite
def snapshots(draw: Any) -> tuple[list[bytes], list[bytes]]:
    ids = draw(st.lists(st.integers(0, 9), min_size=1, max_size=6, unique=True))
    before = [draw(line(i)) for i in ids]
    # after: mostly the same lines (unchanged pairs), some rewritten, some new
    after = [ln if draw(st.integers(0, 2)) else draw(line(ids[k])) for k, ln in enumerate(before)]
    after += [draw(line(i)) for i in draw(st.lists(st.integers(10, 14), max_size=3, unique=True))]
    return before, after


def _outcome(engine: Any, before: list[bytes], after: list[bytes], mode: str) -> Any:
    """The run's answer as plain data: ("error", class, line) or ("ok", events, bad, counts)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for side, lines in (("b", before), ("a", after)):
            (root / side).mkdir()
            (root / side / "x.jsonl").write_bytes(b"".join(ln + b"\n" for ln in lines))
        spec = RunSpec(
            before=str(root / "b"),
            after=str(root / "a"),
            key=("id",),
            out=str(root / "out"),
            run_date="2026-11-25",
            bad_records=mode,  # type: ignore[arg-type]
        )
        try:
            engine.run(spec)
        except DiffError as exc:  # anything else is a failure of the test: a traceback
            assert exc.error_class in EXIT_CODES
            return ("error", exc.error_class.value, exc.line)
        folder = root / "out" / "2026-11-25"
        manifest = json.loads((folder / layout.MANIFEST_NAME).read_text())
        events = sorted(
            ln for f in manifest["files"] for ln in (folder / f["name"]).read_bytes().splitlines()
        )
        bad = []
        if manifest.get("bad_records_file"):
            for raw in (folder / manifest["bad_records_file"]).read_text().splitlines():
                record = json.loads(raw)
                bad.append((record["reason"], record["side"], record["line"], record["message"]))
        unreadable = {
            side: manifest["inputs"][side]["unreadable_keys"] for side in ("before", "after")
        }
        return ("ok", events, sorted(bad), manifest["counts"], unreadable)


@pytest.fixture(scope="module")
def both() -> dict[str, Any]:
    wanted = engines.selected()
    if not {"polars", "spark"} <= set(wanted):
        pytest.skip("needs both engines (CONFORMANCE_ENGINES)")
    return {name: engines.get(name) for name in ("polars", "spark")}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(snapshots(), st.sampled_from(["quarantine", "fail"]))
def test_both_engines_give_the_same_contract_answer(
    both: dict[str, Any], pair: Any, mode: str
) -> None:
    before, after = pair
    polars = _outcome(both["polars"], before, after, mode)
    spark = _outcome(both["spark"], before, after, mode)
    assert polars == spark, f"polars: {polars}\nspark: {spark}"
