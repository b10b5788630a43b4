"""Command line: `kafka-publisher [--run-date D] [--dry-run]`; configuration from the environment."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from diffcore import layout
from kafka_publisher import __version__
from kafka_publisher.config import (
    LOG_LEVELS,
    PROP_PREFIX,
    is_sensitive,
    load_config,
    prop_name,
    require_kafka,
)
from kafka_publisher.errors import EXIT_CONFIG, EXIT_OK, ConfigError, PublisherError
from kafka_publisher.logs import Redactor, emit_metrics, get_logger, setup_logging
from kafka_publisher.publisher import KafkaSink, Summary, publish_day, validate_day

EPILOG = """\
configuration: environment variables, see apps/kafka_publisher/README.md
  DIFFS_LOCATION, KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC, KAFKA_SECURITY_PROTOCOL,
  KAFKA_SASL_MECHANISM, KAFKA_USERNAME/KAFKA_PASSWORD or KAFKA_SECRET_ARN,
  KAFKA_PROP_<NAME> (any librdkafka property), RUN_DATE, TIMEZONE, PUBLISH_TOMBSTONES, LOG_LEVEL,
  PUBLISH_WORKERS (default 1: files published one after the other in this process; N > 1: N
  worker processes, each with its own producer, publish whole files side by side)

exit codes:
  0 done (published, or nothing left to publish)   10 not ready: no manifest for the date
  11 configuration error                             12 delivery failure (Kafka)
  13 bad data (a file or line not matching the manifest or the contract; found
     before anything of the file, or of the day, is produced)

examples:
  # publish today's diffs (today in TIMEZONE, default UTC)
  DIFFS_LOCATION=s3://acme-diffs KAFKA_BOOTSTRAP_SERVERS=b-1.msk:9096 KAFKA_TOPIC=changes \\
  KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SASL_MECHANISM=SCRAM-SHA-512 \\
  KAFKA_SECRET_ARN=arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka kafka-publisher

  # validate a date's files (manifest, counts, every line) without publishing
  DIFFS_LOCATION=s3://acme-diffs kafka-publisher --run-date 2026-11-25 --dry-run

  # republish a date into a local broker from a local folder, with tombstones after deletes
  DIFFS_LOCATION=./out KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 KAFKA_TOPIC=changes \\
  PUBLISH_TOMBSTONES=true KAFKA_PROP_COMPRESSION_TYPE=zstd kafka-publisher --run-date 2026-11-25

  # the same with two worker processes (one per core)
  DIFFS_LOCATION=./out KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 KAFKA_TOPIC=changes \\
  PUBLISH_WORKERS=2 kafka-publisher --run-date 2026-11-25
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors are configuration errors (exit 11)
        self.print_usage(sys.stderr)
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kafka-publisher",
        description=(
            "Publish every change event of a run date's diffs (<DIFFS_LOCATION>/<D>/part-*.jsonl"
            "[.gz], complete once _manifest.json exists) to a Kafka topic: one message per event, "
            "in file order, key = canonical JSON of the event's key, value = the line as written. "
            "A file is checkpointed under <DIFFS_LOCATION>/_published/<D>/ once all its messages "
            "were acknowledged; a rerun skips it."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--run-date",
        metavar="YYYY-MM-DD",
        help="the date to publish (overrides RUN_DATE; default: today in TIMEZONE)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the manifest, the files, their counts and every line; publish nothing, "
        "write no checkpoint, do not contact Kafka",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _early_secrets(environ: Mapping[str, str]) -> list[str]:
    """Secret values straight from the environment, redacted even if configuration fails."""
    out = [environ.get("KAFKA_USERNAME", ""), environ.get("KAFKA_PASSWORD", "")]
    for name, value in environ.items():
        if name.startswith(PROP_PREFIX) and is_sensitive(prop_name(name)):
            out.append(value)
    return [s for s in out if s]


def _metrics(
    summary: Summary, topic: str | None, outcome: str, exit_code: int, redactor: Redactor
) -> None:
    fields = summary.as_fields()
    emit_metrics(
        {
            "MessagesPublished": (summary.messages, "Count"),
            "MessagesFailed": (summary.failed, "Count"),
            "FilesPublished": (summary.files_published, "Count"),
            "FilesSkipped": (summary.files_skipped, "Count"),
            "BytesPublished": (summary.value_bytes, "Bytes"),
            "DurationSeconds": (fields["duration_s"], "Seconds"),
            "MessagesPerSecond": (fields["messages_per_s"], "Count/Second"),
        },
        {"Topic": topic or "none"},
        {"run_date": summary.run_date, "outcome": outcome, "exit_code": exit_code},
        redactor=redactor,
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    redactor = Redactor(_early_secrets(environ))
    early_level = environ.get("LOG_LEVEL", "").strip().upper()
    setup_logging(early_level if early_level in LOG_LEVELS else "INFO", redactor)
    log = get_logger()
    summary: Summary | None = None
    topic: str | None = None
    try:
        config = load_config(environ)
        redactor.add(*config.secrets())
        setup_logging(config.log_level, redactor)
        topic = config.topic
        if args.run_date:
            try:
                run_date = layout.date_folder(args.run_date)
            except ValueError:
                raise ConfigError(f"--run-date must be YYYY-MM-DD, got {args.run_date!r}") from None
        else:
            run_date = config.resolve_run_date()
        log.info(
            "start",
            extra={
                "version": __version__,
                "run_date": run_date,
                "dry_run": args.dry_run,
                "config": config.redacted(),
            },
        )
        summary = Summary(run_date=run_date, dry_run=args.dry_run)
        if args.dry_run:
            validate_day(
                config.diffs_location,
                run_date,
                config.topic,
                summary,
                accept_unreadable_keys=config.accept_unreadable_keys,
            )
        else:
            require_kafka(config)
            assert config.topic is not None
            conf = config.producer_config()

            def sink() -> KafkaSink:
                return KafkaSink(conf, config.topic or "", redactor)

            publish_day(
                config.diffs_location,
                run_date,
                config.topic,
                sink,
                config.publish_tombstones,
                summary,
                workers=config.publish_workers,
                accept_unreadable_keys=config.accept_unreadable_keys,
            )
        summary.finish()
        log.info("done", extra={"outcome": "ok", "exit_code": EXIT_OK, **summary.as_fields()})
        if not args.dry_run:
            _metrics(summary, topic, "ok", EXIT_OK, redactor)
        return EXIT_OK
    except PublisherError as exc:
        fields: dict[str, Any] = {
            "outcome": exc.kind,
            "exit_code": exc.exit_code,
            "error": exc.message,
        }
        fields.update(exc.fields)
        if summary is not None:
            summary.finish()
            fields["summary"] = summary.as_fields()
        log.error(exc.message, extra=fields)
        if summary is not None and not args.dry_run:
            _metrics(summary, topic, exc.kind, exc.exit_code, redactor)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - an unexpected failure still gets a redacted JSON log
        log.exception(
            "unexpected error",
            extra={"outcome": "error", "exit_code": 1, "error": f"{type(exc).__name__}: {exc}"},
        )
        if summary is not None and not args.dry_run:
            summary.finish()
            _metrics(summary, topic, "error", 1, redactor)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version (0) or a usage error (11)
        return int(exc.code or 0)
    return run(args, os.environ)


if __name__ == "__main__":
    sys.exit(main())
