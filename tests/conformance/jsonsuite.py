"""JSONTestSuite (tests/conformance/jsonsuite/, MIT, see its README) as diff input.

Each document of `test_parsing` and `test_transform` becomes the value of one record's member,
`{"id":N,"v":<document>}`, in two framings: one NDJSON file with a line per document (the
documents without a newline byte), and one JSON array file per document. The contract's answer
for a framed record (`contract_answer`) is the strict reading of `reference`: the record, or
the class of bad record it is (§1: invalid UTF-8, a byte-order mark inside a text, nesting past
256 levels: `malformed_json`; a member named twice: `duplicate_member`).

    PYTHONPATH=libs/diffcore:. .venv/bin/python -m tests.conformance.jsonsuite --write-docs

runs the Polars engine on both framings and rewrites the table of docs/json-conformance.md
(the test `test_json_suite.py` checks that the table is what the engines answer).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcore import layout
from diffcore.spec import RunSpec
from tests.conformance import reference

SUITE = Path(__file__).parent / "jsonsuite"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "json-conformance.md"
BEGIN, END = "<!-- jsonsuite-table:begin -->", "<!-- jsonsuite-table:end -->"
RUN_DATE = "2024-05-01"
MAX_DEPTH = 256  # contract §1: at least 256 levels; `diffcore.jsonvalue.MAX_DEPTH`


@dataclass(frozen=True)
class Document:
    number: int  # the record's id, and its NDJSON line
    folder: str  # test_parsing or test_transform
    name: str
    data: bytes

    @property
    def expectation(self) -> str:
        """y (must be read), n (must be refused), i (the contract decides), t (transform)."""
        return self.name[0] if self.folder == "test_parsing" else "t"

    @property
    def record(self) -> bytes:
        return b'{"id":%d,"v":' % self.number + self.data + b"}"


@dataclass(frozen=True)
class Answer:
    """What the contract says of a framed record: its value, or the class of bad record."""

    value: Any = None
    error_class: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_class is None


def documents() -> list[Document]:
    docs = []
    for folder in ("test_parsing", "test_transform"):
        for path in sorted((SUITE / folder).iterdir()):
            docs.append(Document(len(docs) + 1, folder, path.name, path.read_bytes()))
    return docs


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend(
                (v, level + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


def contract_answer(doc: Document) -> Answer:
    try:
        text = doc.record.decode("utf-8")
    except UnicodeDecodeError:
        return Answer(error_class="malformed_json")
    try:
        value = reference.loads(text)
    except reference.DuplicateMember:
        return Answer(error_class="duplicate_member")
    except (ValueError, RecursionError):
        return Answer(error_class="malformed_json")
    if _depth(value) > MAX_DEPTH:
        return Answer(error_class="malformed_json")
    return Answer(value=value)


# ---------------------------------------------------------------------------------------------
# Framings and runs


def write_ndjson(docs: list[Document], folder: Path) -> dict[int, int]:
    """One file, a line per document without a newline byte; returns {id: line}."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [d for d in docs if b"\n" not in d.data]
    (folder / "suite.jsonl").write_bytes(b"".join(d.record + b"\n" for d in lines))
    return {d.number: i for i, d in enumerate(lines, 1)}


def write_arrays(docs: list[Document], folder: Path) -> dict[int, str]:
    """One array file per document; returns {id: file name}."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for d in docs:
        name = f"doc-{d.number:03d}.json"
        (folder / name).write_bytes(b"[" + d.record + b"]")
        names[d.number] = name
    return names


def spec_for(tmp: Path, after: Path, quarantine: bool) -> RunSpec:
    (tmp / "empty").mkdir(parents=True, exist_ok=True)
    return RunSpec(
        before=str(tmp / "empty"),
        after=str(after),
        key=("id",),
        out=str(tmp / "out"),
        run_date=RUN_DATE,
        bad_records="quarantine" if quarantine else "fail",
        allow_empty=("before",),
    )


@dataclass(frozen=True)
class Observed:
    """What one quarantine run gave for each document id: an event's after text, or the
    (class, file, line) of its bad record."""

    events: dict[int, str]  # id -> the event line
    bad: dict[int, tuple[str, str, int | None, str]]  # id -> (class, file name, line, message)


def observe(engine: Any, tmp: Path, after: Path) -> Observed:
    """Run `engine` in quarantine mode over a framing; read back events and bad records."""
    result = engine.run(spec_for(tmp, after, quarantine=True))
    folder = Path(result.folder)
    events: dict[int, str] = {}
    for entry in result.manifest.files:
        for line in _lines(folder / entry.name):
            events[reference.loads(line)["key"]["id"]] = line
    bad: dict[int, tuple[str, str, int | None, str]] = {}
    bad_path = folder / layout.BAD_RECORDS_NAME
    if bad_path.exists():
        for line in _lines(bad_path):
            item = json.loads(line)
            where = (item["reason"], Path(item["file"]).name, item["line"], item["message"])
            bad[_id_of_bad(item)] = where
    return Observed(events, bad)


def _lines(path: Path) -> list[str]:
    """The lines of an output file: cut at `\n` only (`str.splitlines` also cuts at U+2028,
    which a JSON string may hold raw)."""
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def _id_of_bad(item: dict[str, Any]) -> int:
    """The document id of a bad record: from the array file's name, or the NDJSON raw text."""
    name = Path(item["file"]).name
    if name.startswith("doc-"):
        return int(name[4:7])
    return int(item["raw"].split(",", 1)[0].removeprefix('{"id":'))


# ---------------------------------------------------------------------------------------------
# The docs table


def table(rows: list[tuple[Document, str, str]]) -> str:
    """Markdown rows: document, what the contract says, the answer in each framing."""
    out = [
        "| document | NDJSON line | array file |",
        "|---|---|---|",
    ]
    for doc, ndjson, array in rows:
        out.append(f"| `{doc.folder}/{doc.name}` | {ndjson} | {array} |")
    return "\n".join(out)


def engine_answer(doc: Document, observed: Observed, framing: str) -> str:
    if doc.number in observed.bad:  # (an array file may also give the element before a break)
        return f"bad record: `{observed.bad[doc.number][0]}`"
    if doc.number in observed.events:
        return "read, written as read"
    return "not in this framing (the document holds a newline)" if framing == "ndjson" else "?"


def docs_table(docs: list[Document], ndjson: Observed, arrays: Observed) -> str:
    rows = [
        (d, engine_answer(d, ndjson, "ndjson"), engine_answer(d, arrays, "array"))
        for d in docs
        if d.expectation in ("i", "t") or not contract_answer(d).ok and d.expectation == "y"
    ]
    return table(rows)


def replace_table(text: str, new_table: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{new_table}\n{END}{tail}"


def documented_table() -> str:
    text = DOCS.read_text(encoding="utf-8")
    return text.partition(BEGIN)[2].partition(END)[0].strip()


def main() -> int:
    import tempfile

    from diffcore.engines.polars_engine import PolarsEngine

    if "--write-docs" not in sys.argv[1:]:
        print(__doc__)
        return 2
    docs = documents()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        write_ndjson(docs, t / "ndjson")
        write_arrays(docs, t / "arrays")
        engine = PolarsEngine()
        ndjson = observe(engine, t / "n", t / "ndjson")
        arrays = observe(engine, t / "a", t / "arrays")
    DOCS.write_text(
        replace_table(DOCS.read_text(encoding="utf-8"), docs_table(docs, ndjson, arrays))
    )
    print(f"wrote the table of {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
