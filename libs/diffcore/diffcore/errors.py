"""The contract's error classes (section 6) and the exit codes that go with them."""

from __future__ import annotations

import re
from enum import Enum


class ErrorClass(str, Enum):
    MALFORMED_JSON = "malformed_json"
    # Two members of one name in one object, at any depth (contract §1).
    DUPLICATE_MEMBER = "duplicate_member"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_KEY = "missing_key"
    DUPLICATE_KEY = "duplicate_key"
    EMPTY_SNAPSHOT = "empty_snapshot"
    # Not data errors: the run could not read or write, or was asked something impossible.
    IO_ERROR = "io_error"
    CONFIG_ERROR = "config_error"
    # Another run is writing the same date (diffcore.runlock): this one wrote nothing.
    CONCURRENT_RUN = "concurrent_run"
    # One change event would be longer than layout.MAX_EVENT_BYTES (the publisher's line limit).
    EVENT_TOO_LARGE = "event_too_large"
    # The engine itself failed (a Spark task died, memory ran out, a bug): never the input's fault.
    ENGINE_ERROR = "engine_error"


EXIT_CODES: dict[ErrorClass, int] = {
    ErrorClass.CONFIG_ERROR: 2,
    ErrorClass.MALFORMED_JSON: 3,
    ErrorClass.NOT_AN_OBJECT: 4,
    ErrorClass.MISSING_KEY: 5,
    ErrorClass.DUPLICATE_KEY: 6,
    ErrorClass.EMPTY_SNAPSHOT: 7,
    ErrorClass.IO_ERROR: 8,
    ErrorClass.ENGINE_ERROR: 9,
    ErrorClass.CONCURRENT_RUN: 10,
    ErrorClass.EVENT_TOO_LARGE: 11,
    ErrorClass.DUPLICATE_MEMBER: 12,
}

# Classes a quarantine run may set aside record by record; the others always stop the run.
RECORD_ERRORS = frozenset(
    {
        ErrorClass.MALFORMED_JSON,
        ErrorClass.DUPLICATE_MEMBER,
        ErrorClass.NOT_AN_OBJECT,
        ErrorClass.MISSING_KEY,
    }
)

_EXCERPT_CHARS = 120

# "pkg.mod.SomeError: message", the last line of a Python traceback (also inside a Spark error).
_RAISED = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception|Failure)): .*$")
_CLASSES = frozenset(c.value for c in ErrorClass)
# Exceptions that mean the storage failed, not the engine (OSError and its family).
_IO_EXCEPTIONS = frozenset(
    {"OSError", "IOError", "StoreError", "FileNotFoundError", "PermissionError",
     "IsADirectoryError", "NotADirectoryError", "ConnectionError", "TimeoutError",
     "BadGzipFile", "EOFError", "BrokenPipeError", "ConnectionResetError"}
)  # fmt: skip


def excerpt(text: str | bytes | None, limit: int = _EXCERPT_CHARS) -> str | None:
    """A short, single-line, printable excerpt of a bad line for error messages."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip().replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DiffError(Exception):
    """A failed run: the class, what went wrong, and where (file, line, excerpt)."""

    def __init__(
        self,
        error_class: ErrorClass,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        excerpt: str | None = None,
    ) -> None:
        self.error_class = ErrorClass(error_class)
        self.message = message
        self.file = file
        self.line = line
        self.excerpt = excerpt
        super().__init__(self.describe())

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.error_class]

    def describe(self) -> str:
        where = ""
        if self.file is not None:
            where = f" in {self.file}" + (f", line {self.line}" if self.line is not None else "")
        text = f"{self.error_class.value}: {self.message}{where}"
        if self.excerpt:
            text += f": {self.excerpt}"
        return text

    @classmethod
    def from_unexpected(cls, exc: BaseException) -> DiffError:
        """An exception that escaped every rule: `io_error` when it is an I/O failure (an
        `OSError`, or a Spark task that died of one: its text names the Python exception),
        else `engine_error`; with its type and the line that names the cause."""
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        causes = [m for m in map(_RAISED.match, lines) if m]
        cause = causes[-1] if causes else None  # a worker's traceback ends with its exception
        if cause and cause.group(1) == "DiffError":  # raised in a Spark task: keep its class
            name, _, message = cause.group(0).partition(": ")[2].partition(": ")
            if name in _CLASSES:
                return cls(ErrorClass(name), message[:2000])
        if isinstance(exc, OSError) or (cause and cause.group(1) in _IO_EXCEPTIONS):
            text = cause.group(0) if cause else str(exc)
            return cls(ErrorClass.IO_ERROR, text[:500])
        first = cause.group(0) if cause else (lines[0] if lines else "")
        return cls(ErrorClass.ENGINE_ERROR, f"{type(exc).__name__}: {first}"[:500])

    def to_dict(self) -> dict:
        return {
            "error": self.error_class.value,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "excerpt": self.excerpt,
        }
