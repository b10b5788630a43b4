from __future__ import annotations

import io
import json
import logging

from kafka_publisher.logs import (
    Redactor,
    emf_line,
    forward_logging,
    get_logger,
    replay_record,
    setup_logging,
)


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


def test_records_forwarded_from_a_worker_are_written_by_the_parent_redacted() -> None:
    """What a worker process sends (plain values) becomes the same JSON line, redacted."""
    sent: list[dict] = []
    forward_logging(sent.append)  # as in a worker: records go to `send`, not to a stream
    log = get_logger("librdkafka")
    log.warning("%s failed: %s", "broker", "topsecret", extra={"file": "f", "obj": lambda: 0})
    try:
        raise ValueError("boom topsecret")
    except ValueError:
        log.exception("crashed")
    assert [s["msg"] for s in sent] == ["broker failed: topsecret", "crashed"]
    assert sent[0]["args"] is None and sent[0]["obj"].startswith("<function")
    assert "boom topsecret" in sent[1]["traceback"]

    stream = io.StringIO()
    setup_logging("INFO", Redactor(["topsecret"]), stream)  # the parent
    for fields in sent:
        replay_record(fields, worker=2)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["msg"] == "broker failed: ***" and lines[0]["logger"].endswith("librdkafka")
    assert lines[0]["level"] == "WARNING" and lines[0]["file"] == "f" and lines[0]["worker"] == 2
    assert "boom ***" in lines[1]["traceback"] and "topsecret" not in stream.getvalue()
    setup_logging("INFO", Redactor(), io.StringIO())
    logging.getLogger("kafka_publisher").handlers.clear()
