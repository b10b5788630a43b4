"""Property-based conformance: random snapshots, the engine against `reference` (hypothesis).

Snapshots are built from a small key space with inserts, deletes, updates and semantically equal
rewrites (member shuffles, 1 -> 1.0, added nulls / empty objects), over records holding mixed
types, nulls, empty objects and arrays, big integers, floats, unicode (astral plane, escapes),
nested objects and arrays of objects. Examples per engine: `EngineEntry.max_examples`, or
CONFORMANCE_MAX_EXAMPLES to override.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffcore.spec import OutputOptions, RunSpec
from tests.conformance import engines, reference, runner

# Member names: no dots (a dot is a path separator), none equal to a key field, non-ASCII and
# astral included; none in U+E000..U+FFFF, where UTF-16 and code point order disagree.
NAMES = ["a", "b", "B", "a_b", "ü", "日本", "x𝄞", "s p"]
SPECIAL_INTS = [
    0,
    -1,
    2**53,
    2**53 + 1,
    -(2**53) - 1,
    2**63 - 1,
    2**63,
    2**63 + 1,
    -(2**63) - 1,
    2**64,
    10**30,
]

ints = st.one_of(st.integers(-5, 5), st.sampled_from(SPECIAL_INTS), st.integers(-(2**70), 2**70))
floats = st.floats(allow_nan=False, allow_infinity=False)
texts = st.text(st.characters(codec="utf-8"), max_size=6)
scalars = st.one_of(
    st.none(), st.booleans(), ints, floats, texts, st.sampled_from(["1", "true", "", " ", "null"])
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(NAMES), inner, max_size=3),
    ),
    max_leaves=8,
)
payloads = st.dictionaries(st.sampled_from(NAMES), values, max_size=4)

KEY_MODES = {"single": ("id",), "composite": ("t", "id"), "nested": ("k.id",)}
ID_POOL = [0, 1, 2, 3, 4, 5, 6, 7, "1", "2", "ção", "𝄞", 2**63 + 1, -(2**53) - 1]
T_POOL = ["br", "pt"]


def with_key(payload: dict, mode: str, ident: tuple) -> dict:
    record = dict(payload)
    if mode == "single":
        record["id"] = ident[0]
    elif mode == "composite":
        record["t"], record["id"] = ident
    else:
        record["k"] = {"id": ident[0]}
    return record


@st.composite
def rewrite(draw: Any, value: Any) -> Any:
    """A value the contract calls equal to `value`, written differently."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) <= 2**53 and draw(st.booleans()):
            return float(value)
        return value
    if isinstance(value, float):
        # The float stands for its repr's decimal (what json.dumps writes): the equal integer
        # is that decimal's, not the double's (4.228340158988137e+16 is ...370, not ...368).
        exact = Fraction(repr(value))
        if exact.denominator == 1 and abs(exact) < 2**64 and draw(st.booleans()):
            return int(exact)
        return value
    if isinstance(value, list):
        return [draw(rewrite(item)) for item in value]
    members = [
        (k, draw(rewrite(v))) for k, v in value.items() if v is not None or draw(st.booleans())
    ]
    members = draw(st.permutations(members)) if members else []
    out = dict(members)
    extra = [n for n in NAMES if n not in out]
    if extra and draw(st.booleans()):
        out[draw(st.sampled_from(extra))] = draw(st.sampled_from([None, {}, {"a": None}]))
    return out


@st.composite
def snapshots(draw: Any) -> dict[str, Any]:
    mode = draw(st.sampled_from(sorted(KEY_MODES)))
    if mode == "composite":
        idents = st.tuples(st.sampled_from(T_POOL), st.sampled_from(ID_POOL))
    else:
        idents = st.tuples(st.sampled_from(ID_POOL))
    keys_before = draw(st.lists(idents, max_size=8, unique_by=reference.canonical))
    keys_new = draw(st.lists(idents, max_size=4, unique_by=reference.canonical))
    before, after = [], []
    for ident in keys_before:
        payload = draw(payloads)
        before.append(with_key(payload, mode, ident))
        fate = draw(st.sampled_from(["same", "rewrite", "rewrite", "update", "delete"]))
        if fate == "same":
            after.append(with_key(payload, mode, ident))
        elif fate == "rewrite":
            after.append(with_key(draw(rewrite(payload)), mode, ident))
        elif fate == "update":
            after.append(with_key(draw(payloads), mode, ident))
    seen = {reference.canonical(list(i)) for i in keys_before}
    for ident in keys_new:
        if reference.canonical(list(ident)) not in seen:
            after.append(with_key(draw(payloads), mode, ident))
    after = draw(st.permutations(after))
    ignore = draw(st.sampled_from([(), (), ("b",), ("a_b", "ü")]))
    layout_ = {
        side: [
            (draw(st.sampled_from(["jsonl", "array", "gz"])), draw(st.booleans()))
            for _ in range(draw(st.integers(1, 3)))
        ]
        for side in ("before", "after")
    }
    return {
        "key": KEY_MODES[mode],
        "before": before,
        "after": after,
        "ignore": ignore,
        "layout": layout_,
        "max_records": draw(st.sampled_from([1, 2, 5, 100_000])),
        "gzip": draw(st.booleans()),
    }


def write_snapshot(folder: Path, records: list[dict], files: list[tuple[str, bool]]) -> None:
    folder.mkdir(parents=True)
    chunks: list[list[dict]] = [[] for _ in files]
    for i, record in enumerate(records):
        chunks[i % len(files)].append(record)
    for n, ((fmt, ascii_), chunk) in enumerate(zip(files, chunks, strict=True)):
        if not chunk:
            continue
        if fmt == "array":
            (folder / f"f{n}.json").write_text(
                json.dumps(chunk, ensure_ascii=ascii_), encoding="utf-8"
            )
            continue
        text = "".join(json.dumps(r, ensure_ascii=ascii_) + "\n" for r in chunk)
        if fmt == "gz":
            (folder / f"f{n}.jsonl.gz").write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
        else:
            (folder / f"f{n}.ndjson").write_text(text, encoding="utf-8")


def check_engine_against_reference(engine: Any, s: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        root = Path(tmp)
        write_snapshot(root / "before", s["before"], s["layout"]["before"])
        write_snapshot(root / "after", s["after"], s["layout"]["after"])
        spec = RunSpec(
            before=str(root / "before"),
            after=str(root / "after"),
            key=s["key"],
            out=str(root / "out"),
            run_date="2024-05-01",
            ignore=s["ignore"],
            allow_empty=frozenset({"before", "after"}),
            output=OutputOptions(gzip=s["gzip"], max_records_per_file=s["max_records"]),
        )
        out = runner.check_run(engine.run(spec), spec, engine.name)
        want = reference.diff(s["before"], s["after"], s["key"], s["ignore"])
        problems = runner.compare_events(out.events, want.events)
        counts = {k: out.manifest["counts"][k] for k in want.counts}
        if counts != want.counts:
            problems.append(f"counts {counts} != reference {want.counts}")
        drift = runner.drift_of(out.manifest)
        if drift != want.drift:
            problems.append(f"schema drift {drift} != reference {want.drift}")
        assert not problems, "\n".join(problems)


def _max_examples(engine_name: str) -> int:
    override = os.environ.get("CONFORMANCE_MAX_EXAMPLES")
    return int(override) if override else engines.ENGINES[engine_name].max_examples


def test_engine_matches_reference_on_random_snapshots(engine, engine_name: str) -> None:
    @settings(
        max_examples=_max_examples(engine_name),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(snapshots())
    def run(s: dict[str, Any]) -> None:
        check_engine_against_reference(engine, s)

    run()


# ---------------------------------------------------------------------------------------------
# Engine-independent: the generator's rewrites are equal, and the reference agrees with
# diffcore.jsonvalue (the module the engines share), so a bug in either shows up here.


@settings(max_examples=300, deadline=None)
@given(payloads, st.data())
def test_rewrites_are_equal_for_the_reference(payload: dict, data: st.DataObject) -> None:
    assert reference.changed_paths(payload, data.draw(rewrite(payload))) == []


@settings(max_examples=300, deadline=None)
@given(payloads, payloads, st.sampled_from([(), ("b",), ("a_b", "ü")]))
def test_reference_agrees_with_diffcore_jsonvalue(a: dict, b: dict, ignore: tuple) -> None:
    from diffcore import jsonvalue

    assert jsonvalue.changed_paths(a, b, ignore) == reference.changed_paths(a, b, ignore)
    for record in (a, b):
        assert jsonvalue.leaf_types(record) == {
            p: reference.json_type(v) for p, v in reference.leaves(record).items()
        }
