"""JSONTestSuite through every engine (contract §1, §6): each `test_parsing` and
`test_transform` document as a record's member, in an NDJSON line and in an array file.

- `y_`: read, and the event is exactly what a strict reading of the record gives (except where
  the contract refuses what RFC 8259 allows: a member named twice);
- `n_`: a bad record, `malformed_json`, naming the file and line; in fail mode the run stops
  with exit 3 naming them;
- `i_` and `test_transform`: the contract's answer (`jsonsuite.contract_answer`);
- one quarantine run per framing holds every document and completes;
- the table in docs/json-conformance.md is what the engines answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from diffcore import sources
from diffcore.errors import DiffError, ErrorClass
from tests.conformance import jsonsuite, reference

DOCS = jsonsuite.documents()
# RFC 8259 accepts these (names SHOULD be unique); the contract refuses them (§1).
REFUSED_BY_THE_CONTRACT = {"y_object_duplicated_key.json", "y_object_duplicated_key_and_value.json"}


def test_the_corpus_is_all_there() -> None:
    kinds = [d.expectation for d in DOCS]
    assert (kinds.count("y"), kinds.count("n"), kinds.count("i"), kinds.count("t")) == (
        95,
        188,
        35,
        22,
    )


def test_the_contract_reads_every_y_and_refuses_every_n() -> None:
    for doc in DOCS:
        answer = jsonsuite.contract_answer(doc)
        if doc.expectation == "y":
            assert answer.ok == (doc.name not in REFUSED_BY_THE_CONTRACT), doc.name
        if doc.expectation == "n":
            assert answer.error_class == "malformed_json", doc.name


@pytest.fixture(scope="module")
def observed(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One quarantine run per framing (every document in it), as each engine answers."""
    tmp = tmp_path_factory.mktemp(f"jsonsuite-{engine.name}")
    lines = jsonsuite.write_ndjson(DOCS, tmp / "ndjson")
    files = jsonsuite.write_arrays(DOCS, tmp / "arrays")
    return {
        "ndjson": (jsonsuite.observe(engine, tmp / "run-ndjson", tmp / "ndjson"), lines),
        "arrays": (jsonsuite.observe(engine, tmp / "run-arrays", tmp / "arrays"), files),
    }


@pytest.mark.parametrize("framing", ["ndjson", "arrays"])
def test_every_document_gets_the_contract_answer(observed: dict, framing: str) -> None:
    seen, where = observed[framing]
    problems = []
    for doc in DOCS:
        if doc.number not in where:
            continue  # (a document with a newline byte is no NDJSON line)
        want = jsonsuite.contract_answer(doc)
        bad = seen.bad.get(doc.number)
        line = seen.events.get(doc.number)
        if want.ok:
            if bad is not None or line is None:
                problems.append(f"{doc.name}: read by the contract, got {bad or 'no event'}")
                continue
            event = reference.loads(line)
            record = want.value
            expected = {"op": "c", "key": {"id": doc.number}, "before": None, "changed": None}
            got = {k: event[k] for k in expected}
            if got != expected or reference.canonical(event["after"]) != reference.canonical(
                record
            ):
                problems.append(f"{doc.name}: event {line[:120]!r} is not the record")
            elif event["event_id"] != reference.event_id(
                jsonsuite.RUN_DATE, "c", {"id": doc.number}
            ):
                problems.append(f"{doc.name}: event_id")
            continue
        if bad is None:
            problems.append(f"{doc.name}: {want.error_class} by the contract, got an event")
            continue
        cls, name, at, message = bad
        if cls != want.error_class:
            problems.append(f"{doc.name}: {want.error_class} by the contract, got {cls}")
        if framing == "ndjson":
            if (name, at) != ("suite.jsonl", where[doc.number]):
                problems.append(f"{doc.name}: named {name} line {at}")
            if line is not None:
                problems.append(f"{doc.name}: a bad line became an event")
        else:
            if name != where[doc.number] or not isinstance(at, int) or at < 1:
                problems.append(f"{doc.name}: named {name} line {at}")
            # An array file read up to a break gives the elements before it, and the rest as
            # one bad record that names no key (the day is then refused by the publisher).
            if line is not None and not sources.is_array_rest(message):
                problems.append(f"{doc.name}: a bad element became an event")
    assert not problems, "\n".join(problems)


def _fail_cases(engine_name: str) -> list[jsonsuite.Document]:
    refused = [d for d in DOCS if d.expectation == "n"]
    return refused if engine_name == "polars" else refused[::16]  # a Spark run costs seconds


@pytest.mark.parametrize("framing", ["ndjson", "arrays"])
def test_n_documents_stop_a_run_with_exit_3_naming_file_and_line(
    engine: Any, framing: str, tmp_path: Path
) -> None:
    problems = []
    for doc in _fail_cases(engine.name):
        folder = tmp_path / f"doc-{doc.number}"
        if framing == "ndjson":
            if b"\n" in doc.data:
                continue
            where = jsonsuite.write_ndjson([doc], folder / "after")
        else:
            where = jsonsuite.write_arrays([doc], folder / "after")
        with pytest.raises(DiffError) as err:
            engine.run(jsonsuite.spec_for(folder, folder / "after", quarantine=False))
        e = err.value
        name = Path(e.file or "").name
        if (e.error_class, e.exit_code) != (ErrorClass.MALFORMED_JSON, 3):
            problems.append(f"{doc.name}: {e.error_class.value} exit {e.exit_code}")
        if framing == "ndjson" and (name, e.line) != ("suite.jsonl", 1):
            problems.append(f"{doc.name}: named {name} line {e.line}")
        if framing == "arrays" and (name != where[doc.number] or not e.line):
            problems.append(f"{doc.name}: named {name} line {e.line}")
    assert not problems, "\n".join(problems)


def test_the_docs_table_is_what_the_engine_answers(observed: dict) -> None:
    table = jsonsuite.docs_table(DOCS, observed["ndjson"][0], observed["arrays"][0])
    assert table == jsonsuite.documented_table(), (
        "docs/json-conformance.md is out of date: run "
        "`PYTHONPATH=libs/diffcore:. .venv/bin/python -m tests.conformance.jsonsuite --write-docs`"
    )
