from __future__ import annotations

import io
import json
import logging

from kafka_publisher.logs import Redactor, emf_line, get_logger, setup_logging


def test_json_lines_with_fields_and_redaction() -> None:
    stream = io.StringIO()
    redactor = Redactor(["topsecret"])
    setup_logging("DEBUG", redactor, stream)
    log = get_logger("x")
    log.info("hello topsecret", extra={"file": "part-00000.jsonl", "nested": {"pw": "topsecret"}})
    try:
        raise ValueError("boom topsecret")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["msg"] == "hello ***" and lines[0]["file"] == "part-00000.jsonl"
    assert lines[0]["nested"] == {"pw": "***"} and lines[0]["level"] == "INFO"
    assert "boom ***" in lines[1]["traceback"]
    assert "topsecret" not in stream.getvalue()
    setup_logging("INFO", Redactor(), io.StringIO())
    logging.getLogger("kafka_publisher").handlers.clear()


def test_redactor_replaces_longest_first() -> None:
    r = Redactor(["abc", "abcdef"])
    assert r.scrub("xabcdefx abc") == "x***x ***"


def test_emf_line_shape() -> None:
    doc = json.loads(
        emf_line(
            {"MessagesPublished": (5, "Count"), "MessagesFailed": (0, "Count")},
            {"Topic": "t"},
            {"run_date": "2026-11-25"},
            timestamp_ms=1,
        )
    )
    assert doc["_aws"] == {
        "Timestamp": 1,
        "CloudWatchMetrics": [
            {
                "Namespace": "DiffsPipeline/Publisher",
                "Dimensions": [["Topic"]],
                "Metrics": [
                    {"Name": "MessagesPublished", "Unit": "Count"},
                    {"Name": "MessagesFailed", "Unit": "Count"},
                ],
            }
        ],
    }
    assert doc["Topic"] == "t" and doc["MessagesPublished"] == 5 and doc["run_date"] == "2026-11-25"
