"""Rules of the synthesized template, asserted as invariants (computed from the template, not
pinned numbers), for the default and the "imports" configurations:

* both schedules happen exactly once on every day of 2026-2030 in their time zone, and the diff
  job, started as late as Scheduler may (flexible window + retry window) and running to its
  timeout, ends before the publisher's schedule fires, on every one of those days.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from pipeline_infra.schedules import days_of, dst_problems, utc_instant
from pipeline_infra.testing import Synth, default_synth, imports_synth

YEARS = range(2026, 2031)
_CRON_RE = re.compile(r"^cron\((\d{1,2}) (\d{1,2}) \* \* \? \*\)$")


@pytest.fixture(scope="module", params=["default", "imports"])
def synth(request: pytest.FixtureRequest) -> Synth:
    return default_synth() if request.param == "default" else imports_synth()


def _schedule(synth: Synth, construct) -> dict:
    return synth.raw["Resources"][synth.logical_id(construct)]["Properties"]


def _daily_time(props: dict) -> str:
    """HH:MM of a daily `cron(M H * * ? *)` expression."""
    match = _CRON_RE.match(props["ScheduleExpression"])
    assert match, props["ScheduleExpression"]
    return f"{int(match[2]):02d}:{int(match[1]):02d}"


def _latest_start_delay(props: dict) -> timedelta:
    """How late Scheduler may start the target: flexible window, then retries within the
    maximum event age."""
    window = props["FlexibleTimeWindow"]
    flexible = 0 if window["Mode"] == "OFF" else window["MaximumWindowInMinutes"]
    max_age = props["Target"]["RetryPolicy"]["MaximumEventAgeInSeconds"]
    return timedelta(minutes=flexible, seconds=max_age)


def test_each_schedule_fires_once_on_every_day(synth: Synth) -> None:
    for construct in (synth.stack.diff.schedule, synth.stack.publish.schedule):
        props = _schedule(synth, construct)
        zone = props["ScheduleExpressionTimezone"]
        assert dst_problems(_daily_time(props), zone, YEARS) == [], (zone, props)


def test_diff_job_ends_before_the_publisher_starts_on_every_day(synth: Synth) -> None:
    diff = _schedule(synth, synth.stack.diff.schedule)
    publish = _schedule(synth, synth.stack.publish.schedule)
    (job,) = (r["Properties"] for r in synth.resources("AWS::Glue::Job").values())
    timeout = timedelta(minutes=job["Timeout"])
    assert job["MaxRetries"] == 0  # a Glue retry would run past the timeout above
    glue_zone, publish_zone = (
        diff["ScheduleExpressionTimezone"],
        publish["ScheduleExpressionTimezone"],
    )
    for day in days_of(YEARS):
        latest_glue_end = (
            utc_instant(day, _daily_time(diff), glue_zone) + _latest_start_delay(diff) + timeout
        )
        publisher_start = utc_instant(day, _daily_time(publish), publish_zone)
        assert latest_glue_end < publisher_start, (day, latest_glue_end, publisher_start)
