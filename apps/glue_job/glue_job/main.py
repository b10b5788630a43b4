"""AWS Glue 5 (Spark 3.5.4, Python 3.11) entry point: diff two JSON snapshots into `<diffs>/<D>/`.

    --before LOC --after LOC --diffs ROOT --key id[,tenant] [--ignore a,b.c]
    [--bad_records fail|quarantine] [--allow_empty none|before|after|both]
    [--run_date YYYY-MM-DD | ISO timestamp] [--timezone Area/City] [--TempDir LOC]
    [--gzip true|false] [--max_records_per_file N] [--ready_event_bus default|NAME|ARN]

LOC may hold date placeholders resolved from the run date (`diffcore.locations`):
`--before s3://exports/{yesterday}/ --after s3://exports/{run_date}/`.

On Glue the arguments come from `awsglue.utils.getResolvedOptions` (which has no optional
arguments: the optional ones are resolved only when present in `sys.argv`); elsewhere the same
names are parsed with argparse. Arguments Glue adds itself (`--JOB_ID`, `--JOB_RUN_ID`,
`--job-bookmark-option`, ...) are ignored.

What it writes (contract section 5, docs/decisions.md): the Spark engine stages part files
under `--TempDir` (names ending `.staged`, never a notified suffix, no `_SUCCESS` marker), then
promotes them to `<diffs>/<D>/part-NNNNN.jsonl[.gz]`, removes parts of an earlier run of D, and
writes `<diffs>/<D>/_manifest.json` last (the old manifest is removed first). One JSON log line
per step on stdout. Exit code: 0, or the contract's code for the error class (2 usage, 3-7 bad
input, 8 I/O): then no manifest exists for D.

This file is the Glue script: it imports only the standard library, PySpark and the `diffcore`
wheel (`--additional-python-modules`), so it runs as an uploaded single file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from diffcore import layout, ready
from diffcore.errors import DiffError, ErrorClass
from diffcore.locations import resolve_pair
from diffcore.spec import OutputOptions, RunSpec, parse_allow_empty, parse_paths

REQUIRED = ("before", "after", "diffs", "key")
OPTIONAL = (
    "ignore",
    "bad_records",
    "allow_empty",
    "run_date",
    "timezone",
    "TempDir",
    "gzip",
    "max_records_per_file",
    "max_bytes_per_file",
    "ready_event_bus",
    "JOB_NAME",
)
DEFAULTS: dict[str, str] = {
    "ignore": "",
    "bad_records": "fail",
    "allow_empty": "none",
    "timezone": "UTC",
    "gzip": "false",
    "max_records_per_file": str(layout.DEFAULT_MAX_RECORDS_PER_FILE),
    "max_bytes_per_file": str(layout.DEFAULT_MAX_BYTES_PER_FILE),
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

log = logging.getLogger("glue_job")


# ------------------------------------------------------------------------------------------
# Structured logs


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, event, and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def emit(event: str, level: int = logging.INFO, **fields: Any) -> None:
    log.log(level, event, extra={"fields": fields})


# ------------------------------------------------------------------------------------------
# Arguments


def _present(argv: Sequence[str], name: str) -> bool:
    flag = f"--{name}"
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def resolve_args(argv: Sequence[str]) -> dict[str, str]:
    """The job's arguments by name; Glue's resolver when `awsglue` is importable."""
    try:
        from awsglue.utils import getResolvedOptions  # type: ignore[import-not-found]
    except ImportError:
        getResolvedOptions = None  # noqa: N806
    if getResolvedOptions is not None:
        wanted = list(REQUIRED) + [n for n in OPTIONAL if _present(argv, n)]
        try:
            args = dict(getResolvedOptions(list(argv), wanted))
        except SystemExit as exc:  # argparse inside getResolvedOptions
            raise DiffError(
                ErrorClass.CONFIG_ERROR, f"bad job arguments (exit {exc.code})"
            ) from None
    else:
        parser = argparse.ArgumentParser(prog="glue_job", add_help=True)
        for name in REQUIRED:
            parser.add_argument(f"--{name}", required=True)
        for name in OPTIONAL:
            if name == "gzip":
                parser.add_argument("--gzip", nargs="?", const="true")
            else:
                parser.add_argument(f"--{name}")
        try:
            known, _unknown = parser.parse_known_args(list(argv[1:]))  # Glue's own args ignored
        except SystemExit as exc:
            if exc.code == 0:
                raise
            raise DiffError(
                ErrorClass.CONFIG_ERROR, "bad job arguments (see usage above)"
            ) from None
        args = {k: v for k, v in vars(known).items() if v is not None}
    for name, value in DEFAULTS.items():
        args.setdefault(name, value)
    return args


def parse_bool(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "y", "on"):
        return True
    if value in ("false", "0", "no", "n", "off", ""):
        return False
    raise DiffError(ErrorClass.CONFIG_ERROR, f"--{name} takes true or false, got {text!r}")


def parse_run_date(text: str | None, tz_name: str = "UTC", now: datetime | None = None) -> str:
    """`YYYY-MM-DD` as given; an ISO timestamp (EventBridge Scheduler's
    `<aws.scheduler.scheduled-time>`, e.g. `2026-11-25T00:30:00Z`) converted to `tz_name` and
    cut to its date (a timestamp without offset is a wall-clock time in `tz_name`); absent or
    empty: today in `tz_name`."""
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DiffError(ErrorClass.CONFIG_ERROR, f"unknown time zone {tz_name!r}") from None
    if text is None or not text.strip():
        moment = now or datetime.now(UTC)
        return moment.astimezone(tz).date().isoformat()
    text = text.strip()
    try:
        if _DATE.match(text):
            return date.fromisoformat(text).isoformat()
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise DiffError(
            ErrorClass.CONFIG_ERROR,
            f"--run_date takes YYYY-MM-DD or an ISO timestamp, got {text!r}",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(tz).date().isoformat()


def build_spec(args: dict[str, str], now: datetime | None = None) -> tuple[RunSpec, str | None]:
    try:
        max_records = int(args["max_records_per_file"])
        max_bytes = int(args["max_bytes_per_file"])
    except ValueError:
        raise DiffError(
            ErrorClass.CONFIG_ERROR, "--max_records_per_file/--max_bytes_per_file take integers"
        ) from None
    run_date = parse_run_date(args.get("run_date"), args["timezone"], now)
    # `--before s3://exports/{yesterday}/`: templates resolve from the run date (diffcore.locations)
    before, after = resolve_pair(args["before"], args["after"], run_date, ("--before", "--after"))
    spec = RunSpec(
        before=before,
        after=after,
        key=parse_paths(args["key"]),
        out=args["diffs"],
        run_date=run_date,
        ignore=parse_paths(args["ignore"]),
        bad_records=args["bad_records"].strip(),  # type: ignore[arg-type]
        allow_empty=parse_allow_empty(args["allow_empty"]),
        output=OutputOptions(
            gzip=parse_bool(args["gzip"], "gzip"),
            max_records_per_file=max_records,
            max_bytes_per_file=max_bytes,
        ),
    )
    temp = args.get("TempDir") or None
    return spec, temp


# ------------------------------------------------------------------------------------------
# Spark


def spark_session() -> Any:
    """On Glue (or under spark-submit) the preconfigured session; elsewhere local Spark."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if _on_glue() or os.environ.get("SPARK_ENV_LOADED") or os.environ.get("PYSPARK_GATEWAY_PORT"):
        return SparkSession.builder.getOrCreate()
    from diffcore.engines.spark_engine import local_session

    cores = int(os.environ.get("DIFFCORE_SPARK_CORES", "2"))
    return local_session("glue_job-local", cores=cores, shuffle_partitions=cores * 2)


def _on_glue() -> bool:
    try:
        import awsglue  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# Chaining: "diffs ready" for the publish stage


def announce_ready(args: dict[str, str], run_date: str, folder: str, changes: int) -> bool:
    """Put the "diffs ready" event (diffcore.ready) on `--ready_event_bus`, if given, so the
    publisher starts for `run_date` now instead of at its next schedule. The day is complete
    whatever happens here: a failure is a warning (the 02:00 schedule is the floor, and its "not
    ready" alarm has fired for a day the diff finished late), never a failed run."""
    bus = (args.get("ready_event_bus") or "").strip()
    if not bus:
        return False
    job_name = (args.get("JOB_NAME") or "").strip()
    if not job_name:
        emit("ready_event_failed", logging.WARNING, bus=bus, message="no --JOB_NAME to name")
        return False
    entry = ready.put_events_entry(bus, job_name, run_date, folder, changes)
    try:
        import boto3

        response = boto3.client("events").put_events(Entries=[entry])
    except Exception as exc:  # noqa: BLE001 - any failure to send is the same warning
        emit("ready_event_failed", logging.WARNING, bus=bus, message=f"{type(exc).__name__}: {exc}")
        return False
    result = (response.get("Entries") or [{}])[0]
    if response.get("FailedEntryCount") or "EventId" not in result:
        emit("ready_event_failed", logging.WARNING, bus=bus, message=str(result))
        return False
    emit("ready_event_sent", bus=bus, run_date=run_date, event_id=result["EventId"])
    return True


# ------------------------------------------------------------------------------------------
# Main


def run(argv: Sequence[str], now: datetime | None = None, spark: Any = None) -> int:
    """The job; returns the exit code. `spark`/`now` are for tests."""
    setup_logging()
    started = time.monotonic()
    try:
        args = resolve_args(argv)
        spec, temp = build_spec(args, now)
        emit(
            "run_start",
            run_date=spec.run_date,
            before=spec.before,
            after=spec.after,
            before_template=args["before"] if args["before"] != spec.before else None,
            after_template=args["after"] if args["after"] != spec.after else None,
            diffs=spec.out,
            key=list(spec.key),
            ignore=list(spec.ignore),
            bad_records=spec.bad_records,
            allow_empty=sorted(spec.allow_empty),
            gzip=spec.output.gzip,
            max_records_per_file=spec.output.max_records_per_file,
            staging=temp,
        )
        from diffcore.engines.spark_engine import SparkEngine

        engine = SparkEngine(spark or spark_session(), staging=temp)
        result = engine.run(spec)
    except DiffError as exc:
        emit("run_failed", logging.ERROR, exit_code=exc.exit_code, **exc.to_dict())
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - a named error, with the traceback in the log
        err = DiffError.from_unexpected(exc)
        emit("run_failed", logging.ERROR, exit_code=err.exit_code, **err.to_dict())
        log.exception("unexpected failure")
        return err.exit_code
    m = result.manifest
    emit(
        "run_complete",
        run_date=m.run_date,
        folder=result.folder,
        counts=dataclasses.asdict(m.counts),
        inputs={"before": m.before.records, "after": m.after.records},
        files=[{"name": f.name, "records": f.records, "bytes": f.bytes} for f in m.files],
        schema_drift={
            "added": list(m.schema_drift.added),
            "removed": list(m.schema_drift.removed),
            "type_changed": [t.path for t in m.schema_drift.type_changed],
        },
        bad_records_file=m.bad_records_file,
        engine=m.engine.version,
        seconds=round(time.monotonic() - started, 3),
        engine_stats=engine.last_stats,
    )
    announce_ready(args, m.run_date, result.folder, m.counts.changes)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(list(sys.argv if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
