"""Structured JSON logs (one object per line, on stdout) and CloudWatch Embedded Metric Format.

Every line, including librdkafka's own log lines (routed here with the `logger` producer
property), tracebacks and error messages, passes through `Redactor.scrub`: every secret value
known to the run is replaced by `***` before anything is written.

EMF: `emit_metrics` writes one JSON line with an `_aws` member; CloudWatch Logs (the ECS awslogs
driver writes stdout there) turns its values into metrics under `METRIC_NAMESPACE`, dimension
`Topic`.
"""

from __future__ import annotations

import json
import logging
import pickle
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

LOGGER_NAME = "kafka_publisher"
METRIC_NAMESPACE = "DiffsPipeline/Publisher"
REDACTED = "***"

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _written_forms(secret: str) -> set[str]:
    """A secret as it can appear in an output line: as is, and JSON-escaped both ways lines are
    written (log lines keep non-ASCII, EMF lines escape it). Lines are scrubbed after encoding,
    so a quote, backslash, newline (a PEM key) or accent in a secret would otherwise slip by."""
    return {secret, json.dumps(secret, ensure_ascii=False)[1:-1], json.dumps(secret)[1:-1]}


class Redactor:
    """Replaces every registered secret value in a text (longest first)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self._lock = threading.Lock()
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        with self._lock:
            for secret in secrets:
                if not secret:
                    continue
                for form in _written_forms(secret):
                    if form not in self._secrets:
                        self._secrets.append(form)
            self._secrets.sort(key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", ...extra fields}`; secrets scrubbed from the whole line."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                out[name] = value
        if record.exc_info:
            out["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return self.redactor.scrub(json.dumps(out, default=str, ensure_ascii=False))


class _StreamHandler(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is at emit time (pytest's capsys swaps it)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream)
        self._fixed = stream

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return self._fixed or sys.stdout

    @stream.setter
    def stream(self, value: TextIO | None) -> None:
        self._fixed = value


def setup_logging(
    level: str = "INFO", redactor: Redactor | None = None, stream: TextIO | None = None
) -> logging.Logger:
    """Configure the `kafka_publisher` logger (idempotent: replaces its handlers)."""
    redactor = redactor or Redactor()
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = _StreamHandler(stream)
    handler.setFormatter(JsonFormatter(redactor))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A log record as plain picklable values, to be replayed in another process
    (`replay_record`): the message formatted, a traceback as text, other values kept if they
    pickle, as their `str` otherwise (what `JsonFormatter` would write for them anyway). The
    standard attributes are plain values (`msg` is replaced by the formatted message): only the
    extra fields are tried."""
    out: dict[str, Any] = {}
    for name, value in record.__dict__.items():
        if name in ("args", "exc_info", "exc_text", "stack_info"):
            continue
        if name not in _STANDARD_ATTRS:
            try:
                pickle.dumps(value)
            except Exception:  # noqa: BLE001 - anything unpicklable is logged as its text
                value = str(value)
        out[name] = value
    out["msg"] = record.getMessage()
    out["args"] = None
    if record.exc_info and "traceback" not in out:
        out["traceback"] = "".join(traceback.format_exception(*record.exc_info))
    return out


def replay_record(fields: Mapping[str, Any], **extra: Any) -> None:
    """Log a record made by `record_fields` (in a worker process) through this process's
    handlers: the same JSON line and redaction as a record of this process."""
    record = logging.makeLogRecord({**fields, **extra})
    logger = logging.getLogger(record.name)
    if not logger.disabled:
        logger.handle(record)


class ForwardingHandler(logging.Handler):
    """Sends every record (as `record_fields`) through `send`: a worker process's logs reach
    stdout through its parent, one whole line at a time, redacted there."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send(record_fields(record))
        except Exception:  # noqa: BLE001 - logging must never break publishing
            self.handleError(record)


def forward_logging(send: Callable[[dict[str, Any]], None]) -> None:
    """In a worker process: the `kafka_publisher` logger's records go to `send` only."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.addHandler(ForwardingHandler(send))


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


def emf_line(
    metrics: Mapping[str, tuple[float, str]],
    dimensions: Mapping[str, str],
    properties: Mapping[str, Any] | None = None,
    namespace: str = METRIC_NAMESPACE,
    timestamp_ms: int | None = None,
) -> str:
    """One Embedded Metric Format line: `metrics` is `name -> (value, unit)`."""
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": n, "Unit": unit} for n, (_, unit) in metrics.items()],
                }
            ],
        }
    }
    doc.update(properties or {})
    doc.update(dimensions)
    doc.update({n: value for n, (value, _) in metrics.items()})
    return json.dumps(doc, separators=(",", ":"), default=str)


def emit_metrics(
    metrics: Mapping[str, tuple[float, str]],
    dimensions: Mapping[str, str],
    properties: Mapping[str, Any] | None = None,
    redactor: Redactor | None = None,
    stream: TextIO | None = None,
) -> None:
    line = emf_line(metrics, dimensions, properties)
    if redactor is not None:
        line = redactor.scrub(line)
    out = stream or sys.stdout
    out.write(line + "\n")
    out.flush()
