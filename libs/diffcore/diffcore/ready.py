"""The "diffs ready" event: how the diff stage starts the publish stage for the date it wrote.

The publisher runs daily at 02:00 (the floor) and publishes "today" unless `RUN_DATE` says
otherwise. A diff that finishes later (a late start, a slow day, a backfill of an older date)
would wait for a person. So, once a run's manifest is written, the Glue job puts one EventBridge
event on the bus named by `--ready_event_bus`:

    source "diffs-pipeline.diff", detail-type "Diffs Ready",
    detail {"job_name": ..., "run_date": "YYYY-MM-DD", "folder": "s3://<diffs>/<D>/", "changes": N}

and an EventBridge rule (infra/cdk/pipeline_infra/chain_stage.py) matching this job's events starts
the publisher's ECS task with `RUN_DATE` = `detail.run_date` through the target's input
transformer (the task overrides). Why not the Glue job's own "Glue Job State Change" SUCCEEDED
event: it carries no job arguments, so a rule on it cannot tell the publisher which date was
written, and a clock-based date would be wrong for a backfill. The publisher is idempotent
(published files are checkpointed), so the chained run and the 02:00 run may both happen.

One definition for the sender (the Glue job), the rule and its target input (the CDK app) and the
local pipeline (tests/e2e), which routes the same event through moto's EventBridge.
Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from diffcore import layout

SOURCE = "diffs-pipeline.diff"
DETAIL_TYPE = "Diffs Ready"
DEFAULT_BUS = "default"
# The publisher's environment variable for the date to publish (kafka_publisher.config).
RUN_DATE_ENV = "RUN_DATE"
# The publisher's container in the task definition (the CDK app's publish_stage.CONTAINER_NAME,
# which chain_stage_test checks against this), named by the overrides.
PUBLISHER_CONTAINER = "publisher"
# EventBridge input transformer: the event's run date into the ECS task overrides.
INPUT_PATHS: dict[str, str] = {"run_date": "$.detail.run_date"}


def detail(job_name: str, run_date: str, folder: str, changes: int) -> dict[str, Any]:
    return {
        "job_name": job_name,
        "run_date": layout.date_folder(run_date),
        "folder": folder,
        "changes": changes,
    }


def put_events_entry(
    bus: str, job_name: str, run_date: str, folder: str, changes: int
) -> dict[str, str]:
    """The `events:PutEvents` entry announcing that `run_date` is complete."""
    return {
        "EventBusName": bus,
        "Source": SOURCE,
        "DetailType": DETAIL_TYPE,
        "Detail": json.dumps(detail(job_name, run_date, folder, changes), sort_keys=True),
    }


def rule_pattern(job_name: str) -> dict[str, Any]:
    """The EventBridge pattern of one job's "diffs ready" events (another job's never match)."""
    return {"source": [SOURCE], "detail-type": [DETAIL_TYPE], "detail": {"job_name": [job_name]}}


def ecs_overrides_template(container_name: str) -> str:
    """The input template of the ECS target: RunTask overrides that set `RUN_DATE`. The quoted
    `"<run_date>"` receives the string as is (EventBridge's rule for quoted placeholders)."""
    overrides = {
        "containerOverrides": [
            {
                "name": container_name,
                "environment": [{"name": RUN_DATE_ENV, "value": "<run_date>"}],
            }
        ]
    }
    return json.dumps(overrides, sort_keys=True)


def run_date_from_overrides(overrides: str | Mapping[str, Any], container_name: str) -> str:
    """The `RUN_DATE` a task started with these overrides gets (the local pipeline plays ECS with
    it); ValueError when they hold none or not a date."""
    obj = json.loads(overrides) if isinstance(overrides, str) else overrides
    for container in obj.get("containerOverrides", []):
        if container.get("name") != container_name:
            continue
        for variable in container.get("environment", []):
            if variable.get("name") == RUN_DATE_ENV:
                return layout.date_folder(str(variable.get("value")))
    raise ValueError(f"no {RUN_DATE_ENV} for container {container_name!r} in {obj!r}")
