"""Daily schedules at a local time: the days a wall-clock time does not exist or exists twice.

EventBridge Scheduler runs `cron(M H * * ? *)` in a time zone. On the day a zone springs forward,
a time inside the gap (02:30 in Europe/Berlin on the last Sunday of March) never happens and
Scheduler skips that day's run; on the day it falls back, a time inside the overlap (01:30 in
America/New_York on the first Sunday of November) happens twice. Either way a day is published
zero or two times. `dst_problems` finds every such day for a (time, zone) over a range of years,
so config.py can refuse the configuration at synth with the zone, the time and an example date.

The real time between two daily local times also changes on those days (00:30 -> 03:00 in
America/New_York is 150 minutes, but 90 on the spring-forward day): `min_elapsed_minutes` gives
the shortest, which is what the Glue job's timeout must fit in.

Pure functions over `zoneinfo` (the system's tz database): no CDK import.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SKIPPED = "skipped"  # the local time falls in a DST gap: it does not exist that day
DOUBLED = "doubled"  # the local time falls in a DST overlap: it exists twice that day


@dataclass(frozen=True)
class DstProblem:
    """A day on which a daily local time does not happen exactly once."""

    day: date
    kind: str  # SKIPPED or DOUBLED

    def describe(self, hhmm: str, zone: str) -> str:
        if self.kind == SKIPPED:
            return f"{hhmm} does not exist in {zone} on {self.day.isoformat()} (DST gap)"
        return f"{hhmm} happens twice in {zone} on {self.day.isoformat()} (DST overlap)"


def parse_hhmm(hhmm: str) -> time:
    hours, minutes = hhmm.split(":")
    return time(int(hours), int(minutes))


def days_of(years: Iterable[int]) -> Iterator[date]:
    """Every calendar day of the given years, in order."""
    for year in years:
        day = date(year, 1, 1)
        while day.year == year:
            yield day
            day += timedelta(days=1)


def _offset_changes_during(day: date, zone: ZoneInfo) -> bool:
    """Whether `zone` changes its UTC offset between `day` 00:00 and the next day's 00:00 (local
    wall times, fold 0). Only such days can skip or double a time, or stretch a gap: checking
    this first keeps a 20-year walk fast (a few transition days a year)."""
    midnight = datetime.combine(day, time()).replace(tzinfo=zone)
    return midnight.utcoffset() != (midnight + timedelta(days=1)).utcoffset()


def _problem_on(day: date, at: time, zone: ZoneInfo) -> str | None:
    local = datetime.combine(day, at)
    first = local.replace(tzinfo=zone, fold=0)
    second = local.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return None  # one offset applies: the time exists exactly once
    # Two offsets: in a gap, the instant does not read back as the same wall time.
    round_trip = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return SKIPPED if round_trip != local else DOUBLED


def dst_problems(hhmm: str, zone: str, years: Iterable[int]) -> list[DstProblem]:
    """Every day of `years` on which the local time `hhmm` in `zone` is skipped or doubled."""
    tz, at = ZoneInfo(zone), parse_hhmm(hhmm)
    problems = []
    for day in days_of(years):
        if not _offset_changes_during(day, tz):
            continue
        kind = _problem_on(day, at, tz)
        if kind is not None:
            problems.append(DstProblem(day, kind))
    return problems


def utc_instant(day: date, hhmm: str, zone: str) -> datetime:
    """The UTC instant of `hhmm` local time on `day` (for a time that exists once that day)."""
    local = datetime.combine(day, parse_hhmm(hhmm)).replace(tzinfo=ZoneInfo(zone))
    return local.astimezone(UTC)


def min_elapsed_minutes(start: str, end: str, zone: str, years: Iterable[int]) -> tuple[int, date]:
    """The shortest real time, in minutes, from the daily local time `start` to `end` (same
    day) over `years`, and the first day it happens on. Times must exist once on every day."""
    tz = ZoneInfo(zone)
    wall = datetime.combine(date.min, parse_hhmm(end)) - datetime.combine(
        date.min, parse_hhmm(start)
    )
    shortest: tuple[int, date] | None = None
    for day in days_of(years):
        elapsed = wall  # one offset all day: real time is wall-clock time
        if _offset_changes_during(day, tz):
            elapsed = utc_instant(day, end, zone) - utc_instant(day, start, zone)
        minutes = int(elapsed.total_seconds() // 60)
        if shortest is None or minutes < shortest[0]:
            shortest = (minutes, day)
    if shortest is None:
        raise ValueError("no years given")
    return shortest


__all__ = [
    "DOUBLED",
    "SKIPPED",
    "DstProblem",
    "days_of",
    "dst_problems",
    "min_elapsed_minutes",
    "parse_hhmm",
    "utc_instant",
]
