from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from diffcore import ready


def test_entry_pattern_and_overrides() -> None:
    entry = ready.put_events_entry("default", "diffs-pipeline-diff", "2026-11-25", "s3://d/x/", 7)
    assert (entry["Source"], entry["DetailType"]) == (ready.SOURCE, ready.DETAIL_TYPE)
    assert json.loads(entry["Detail"]) == {
        "job_name": "diffs-pipeline-diff",
        "run_date": "2026-11-25",
        "folder": "s3://d/x/",
        "changes": 7,
    }
    assert ready.rule_pattern("j")["detail"] == {"job_name": ["j"]}
    filled = ready.ecs_overrides_template("publisher").replace("<run_date>", "2026-11-25")
    assert ready.run_date_from_overrides(filled, "publisher") == "2026-11-25"
    with pytest.raises(ValueError):
        ready.run_date_from_overrides(filled, "other")
    with pytest.raises(ValueError):
        ready.put_events_entry("default", "j", "2026-11-31", "s3://d/", 0)


@mock_aws
def test_the_rule_routes_only_this_jobs_events_with_the_run_date_into_the_overrides() -> None:
    """Through EventBridge (moto): the rule's pattern and input transformer, as the CDK app sets
    them, turn this job's event into task overrides with RUN_DATE = the date the job wrote."""
    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="stand-in-for-ecs")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="chain", EventPattern=json.dumps(ready.rule_pattern("diffs-pipeline-diff"))
    )
    events.put_targets(
        Rule="chain",
        Targets=[
            {
                "Id": "publisher",
                "Arn": arn,
                "InputTransformer": {
                    "InputPathsMap": ready.INPUT_PATHS,
                    "InputTemplate": ready.ecs_overrides_template("publisher"),
                },
            }
        ],
    )
    entries = [
        ready.put_events_entry("default", "diffs-pipeline-diff", "2026-11-20", "s3://d/", 3),
        ready.put_events_entry("default", "another-job", "2026-11-21", "s3://e/", 3),
    ]
    assert events.put_events(Entries=entries)["FailedEntryCount"] == 0
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert [ready.run_date_from_overrides(m["Body"], "publisher") for m in got] == ["2026-11-20"]
