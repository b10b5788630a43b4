"""schedules.py against an independent oracle, day by day over 2026-2030, for the zones the docs
and the issue name; config.py refuses the times that would skip or double a day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pipeline_infra.config import ConfigError, PipelineConfig
from pipeline_infra.schedules import (
    DOUBLED,
    SKIPPED,
    DstProblem,
    days_of,
    dst_problems,
    min_elapsed_minutes,
    utc_instant,
)

YEARS = range(2026, 2031)
# UTC and America/Sao_Paulo (README's examples), the two DST zones of issue 20, and zones whose
# switches happen at other hours (London 01:00, Sydney 02:00/03:00 in the other hemisphere,
# Santiago 00:00/24:00) or never (Kolkata).
ZONES = (
    "UTC",
    "America/Sao_Paulo",
    "America/New_York",
    "Europe/Berlin",
    "Europe/London",
    "Australia/Sydney",
    "America/Santiago",
    "Asia/Kolkata",
)
TIMES = ("00:00", "00:30", "00:45", "01:30", "02:00", "02:30", "03:00", "23:30")


def _offsets(zone: ZoneInfo, years: range) -> set[timedelta]:
    """Every UTC offset the zone uses in those years (sampled every 6 hours)."""
    start = datetime(years[0] - 1, 12, 31, tzinfo=UTC)
    steps = (len(years) + 1) * 366 * 4
    return {(start + timedelta(hours=6 * i)).astimezone(zone).utcoffset() for i in range(steps)}


def _oracle(hhmm: str, zone_name: str, years: range) -> list[DstProblem]:
    """How many UTC instants read as `hhmm` local on each day: 0 skipped, 2 doubled. Uses only
    UTC -> local conversion (never ambiguous), unlike schedules.py's fold arithmetic."""
    zone = ZoneInfo(zone_name)
    hours, minutes = map(int, hhmm.split(":"))
    offsets = _offsets(zone, years)
    problems = []
    for day in days_of(years):
        wall = datetime(day.year, day.month, day.day, hours, minutes)
        hits = {
            wall - offset
            for offset in offsets
            if (wall - offset).replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None) == wall
        }
        if len(hits) != 1:
            problems.append(DstProblem(day, SKIPPED if not hits else DOUBLED))
    return problems


@pytest.mark.parametrize("zone", ZONES)
def test_every_day_matches_the_oracle(zone: str) -> None:
    for hhmm in TIMES:
        assert dst_problems(hhmm, zone, YEARS) == _oracle(hhmm, zone, YEARS), (zone, hhmm)


def test_known_gaps_and_overlaps() -> None:
    assert dst_problems("02:00", "America/New_York", [2026]) == [
        DstProblem(date(2026, 3, 8), SKIPPED)
    ]
    assert dst_problems("01:30", "America/New_York", [2026]) == [
        DstProblem(date(2026, 11, 1), DOUBLED)
    ]
    assert dst_problems("02:30", "Europe/Berlin", [2026]) == [
        DstProblem(date(2026, 3, 29), SKIPPED),
        DstProblem(date(2026, 10, 25), DOUBLED),
    ]
    # the oracle is not vacuous: it sees them too
    assert _oracle("02:30", "Europe/Berlin", range(2026, 2027)) == dst_problems(
        "02:30", "Europe/Berlin", [2026]
    )
    assert dst_problems("02:00", "UTC", YEARS) == []


def test_shortest_real_gap_is_on_the_spring_forward_day() -> None:
    minutes, day = min_elapsed_minutes("00:30", "03:00", "America/New_York", YEARS)
    assert (minutes, day) == (90, date(2026, 3, 8))  # 150 wall-clock minutes on other days
    assert min_elapsed_minutes("00:30", "02:00", "UTC", YEARS) == (90, date(2026, 1, 1))
    # each day's gap, computed the slow way, is never shorter than the reported minimum
    for each in days_of(YEARS):
        gap = utc_instant(each, "03:00", "America/New_York") - utc_instant(
            each, "00:30", "America/New_York"
        )
        assert gap >= timedelta(minutes=minutes)


@pytest.mark.parametrize(
    "context",
    [
        {},  # the defaults: UTC, 00:30 and 02:00
        {"timezone": "America/Sao_Paulo", "glue_time": "00:45"},  # README's deploy example
        {"timezone": "America/New_York", "publisher_time": "03:00"},
        {"timezone": "Europe/Berlin", "glue_time": "00:30", "publisher_time": "04:00"},
    ],
)
def test_accepted_configurations_run_once_every_day(context: dict) -> None:
    config = PipelineConfig.from_mapping(context)
    for hhmm in (config.glue_time, config.publisher_time):
        assert _oracle(hhmm, config.timezone, YEARS) == []
    # and the job, started as late as Scheduler may, times out before the publisher starts
    for day in days_of(YEARS):
        glue_start = utc_instant(day, config.glue_time, config.timezone)
        publisher_start = utc_instant(day, config.publisher_time, config.timezone)
        latest_end = glue_start + timedelta(
            minutes=config.scheduler_delay_minutes + config.effective_glue_timeout
        )
        assert latest_end < publisher_start, (context, day)


@pytest.mark.parametrize(
    ("context", "words"),
    [
        (
            {"timezone": "America/New_York"},  # 02:00, the default publisher time
            ["publisher_time=02:00", "America/New_York", "2026-03-08", "DST gap", "skip"],
        ),
        (
            {"timezone": "Europe/Berlin", "glue_time": "00:30", "publisher_time": "02:30"},
            ["publisher_time=02:30", "Europe/Berlin", "2026-03-29", "e.g. 03:00"],
        ),
        (
            {"timezone": "America/New_York", "glue_time": "01:30", "publisher_time": "03:00"},
            ["glue_time=01:30", "2026-11-01", "DST overlap", "twice"],
        ),
    ],
)
def test_times_in_a_gap_or_overlap_are_refused(context: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as excinfo:
        PipelineConfig.from_mapping(context)
    for word in words:
        assert word in str(excinfo.value), (word, str(excinfo.value))


def test_timeout_must_fit_the_shortest_day() -> None:
    # 150 wall-clock minutes, but 90 on the spring-forward day, minus Scheduler's 15
    context = {"timezone": "America/New_York", "publisher_time": "03:00"}
    assert PipelineConfig.from_mapping({**context, "glue_timeout_minutes": 75})
    with pytest.raises(ConfigError, match="glue_timeout_minutes=76: between 1 and 75"):
        PipelineConfig.from_mapping({**context, "glue_timeout_minutes": 76})
