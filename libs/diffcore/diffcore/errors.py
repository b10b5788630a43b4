"""The contract's error classes (section 6) and the exit codes that go with them."""

from __future__ import annotations

from enum import Enum


class ErrorClass(str, Enum):
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_KEY = "missing_key"
    DUPLICATE_KEY = "duplicate_key"
    EMPTY_SNAPSHOT = "empty_snapshot"
    # Not data errors: the run could not read or write, or was asked something impossible.
    IO_ERROR = "io_error"
    CONFIG_ERROR = "config_error"
    # Another run is writing the same date (diffcore.runlock): this one wrote nothing.
    CONCURRENT_RUN = "concurrent_run"
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
}

# Classes a quarantine run may set aside record by record; the others always stop the run.
RECORD_ERRORS = frozenset(
    {ErrorClass.MALFORMED_JSON, ErrorClass.NOT_AN_OBJECT, ErrorClass.MISSING_KEY}
)

_EXCERPT_CHARS = 120


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
        """An exception no rule foresaw, as `engine_error`: its type and first message line
        (a Spark error's first line names the failing Python exception)."""
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines if "Error" in line or "Exception" in line), "")
        first = detail or (lines[0] if lines else "")
        return cls(ErrorClass.ENGINE_ERROR, f"{type(exc).__name__}: {first}"[:500])

    def to_dict(self) -> dict:
        return {
            "error": self.error_class.value,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "excerpt": self.excerpt,
        }
