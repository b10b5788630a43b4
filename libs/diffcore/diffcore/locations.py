"""Date-templated snapshot locations: `s3://exports/{yesterday}/` resolved from the run date.

A source that exports into dated folders is diffed day over day by giving the two snapshots as
templates: `--before 's3://exports/{yesterday}/' --after 's3://exports/{run_date}/'`. One
definition, used by the CLI, the Glue job and the CDK app (which validates the templates at synth).

Placeholders (the run date D is the run's `YYYY-MM-DD`):

| placeholder | value |
|---|---|
| `{run_date}` | D, `YYYY-MM-DD` |
| `{yesterday}` | D - 1 day, `YYYY-MM-DD` |
| `{run_date:FORMAT}`, `{yesterday:FORMAT}` | the same date through a strftime FORMAT made of `%Y %m %d %y %j` (and `%%`) plus literal text, e.g. `{run_date:%Y/%m/%d}` -> `2026/11/25` |
| `{{`, `}}` | a literal `{`, `}` |

A location without braces is used as given. Anything else in braces is refused (`config_error`,
exit 2) naming the option and the placeholder: an unknown name, `{}`, an unbalanced brace,
`{run_date!r}`, `{run_date.year}`, a FORMAT with another directive or none. A pair of templates is
refused when the before side names a later date than the after side (the sides are swapped: every
insert would be reported as a delete), or when both resolve to the same location (a snapshot
diffed against itself). Standard library only: the Glue job and the CDK app import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from diffcore.errors import DiffError, ErrorClass

# Placeholder name -> days from the run date.
PLACEHOLDERS: dict[str, int] = {"run_date": 0, "yesterday": -1}
# strftime directives a FORMAT may use: numeric date fields only (no locale names, no time).
DATE_DIRECTIVES = frozenset("Ymdyj")
_DIRECTIVE = re.compile(r"%(.?)", re.DOTALL)


@dataclass(frozen=True)
class Placeholder:
    """One `{name}` or `{name:format}` field of a template."""

    name: str
    format: str | None = None

    @property
    def offset_days(self) -> int:
        return PLACEHOLDERS[self.name]

    def render(self, run_date: date) -> str:
        day = run_date + timedelta(days=self.offset_days)
        return day.isoformat() if self.format is None else day.strftime(self.format)


@dataclass(frozen=True)
class LocationTemplate:
    """A parsed location: literal text and placeholders, in order."""

    text: str
    parts: tuple[str | Placeholder, ...]

    @property
    def is_template(self) -> bool:
        return any(isinstance(p, Placeholder) for p in self.parts)

    @property
    def offsets(self) -> frozenset[int]:
        """The days (relative to the run date) this location names."""
        return frozenset(p.offset_days for p in self.parts if isinstance(p, Placeholder))

    @property
    def static_prefix(self) -> str:
        """The literal text before the first placeholder: what every resolution starts with
        (the CDK app grants reads on `<static_prefix>*`)."""
        prefix = []
        for part in self.parts:
            if isinstance(part, Placeholder):
                break
            prefix.append(part)
        return "".join(prefix)

    def render(self, run_date: date) -> str:
        return "".join(p if isinstance(p, str) else p.render(run_date) for p in self.parts)


def _config_error(option: str, text: str, problem: str) -> DiffError:
    return DiffError(
        ErrorClass.CONFIG_ERROR,
        f"{option} {text!r}: {problem} (placeholders: {{run_date}}, {{yesterday}}, "
        "optionally with a date format such as {run_date:%Y/%m/%d}; {{ and }} for literal braces)",
    )


def _check_format(option: str, text: str, field: str, fmt: str) -> None:
    directives = _DIRECTIVE.findall(fmt)
    bad = [d for d in directives if d not in DATE_DIRECTIVES and d != "%"]
    if bad:
        raise _config_error(
            option,
            text,
            f"placeholder {{{field}}}: format directive %{bad[0]} is not one of "
            + ", ".join(f"%{d}" for d in sorted(DATE_DIRECTIVES)),
        )
    if not any(d in DATE_DIRECTIVES for d in directives):
        raise _config_error(
            option, text, f"placeholder {{{field}}}: the format names no date field"
        )


def _placeholder(option: str, text: str, field: str) -> Placeholder:
    name, colon, fmt = field.partition(":")
    if not name:
        raise _config_error(option, text, f"empty placeholder {{{field}}}")
    if name not in PLACEHOLDERS:
        raise _config_error(option, text, f"unknown placeholder {{{name}}}")
    if colon:
        _check_format(option, text, field, fmt)
        return Placeholder(name, fmt)
    return Placeholder(name)


def parse(text: str, option: str = "location") -> LocationTemplate:
    """Parse a location; `option` names it in errors (`--before`, `BEFORE`, `before_prefix`).

    Raises `DiffError(config_error)` for anything in braces that is not a placeholder."""
    parts: list[str | Placeholder] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "{}" and text[i : i + 2] == ch * 2:  # an escaped brace
            literal.append(ch)
            i += 2
        elif ch == "}":
            raise _config_error(option, text, f"unbalanced '}}' at position {i}")
        elif ch == "{":
            end = text.find("}", i + 1)
            inner_open = text.find("{", i + 1)
            if end < 0 or (0 <= inner_open < end):
                raise _config_error(option, text, f"unbalanced '{{' at position {i}")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_placeholder(option, text, text[i + 1 : end]))
            i = end + 1
        else:
            literal.append(ch)
            i += 1
    if literal:
        parts.append("".join(literal))
    return LocationTemplate(text, tuple(parts))


def _as_date(run_date: date | str) -> date:
    if isinstance(run_date, date):
        return run_date
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", run_date):
            raise ValueError
        return date.fromisoformat(run_date)
    except ValueError:
        raise DiffError(
            ErrorClass.CONFIG_ERROR, f"run date must be YYYY-MM-DD, got {run_date!r}"
        ) from None


def check_pair(
    before: LocationTemplate,
    after: LocationTemplate,
    options: tuple[str, str] = ("before", "after"),
) -> None:
    """Refuse a pair whose before side names a later date than its after side (swapped)."""
    if before.offsets and after.offsets and max(before.offsets) > min(after.offsets):
        raise DiffError(
            ErrorClass.CONFIG_ERROR,
            f"{options[0]} {before.text!r} names a later date than {options[1]} "
            f"{after.text!r}: the before snapshot is the older one (e.g. {options[0]} "
            f"'.../{{yesterday}}/', {options[1]} '.../{{run_date}}/')",
        )


def resolve(text: str, run_date: date | str, option: str = "location") -> str:
    """One location with its placeholders replaced for `run_date` (`YYYY-MM-DD` or a date)."""
    return parse(text, option).render(_as_date(run_date))


def resolve_pair(
    before: str,
    after: str,
    run_date: date | str,
    options: tuple[str, str] = ("before", "after"),
) -> tuple[str, str]:
    """Both snapshot locations resolved for `run_date`, after the pair checks (`check_pair`, and
    templates that resolve to one location). Plain locations come back unchanged."""
    templates = parse(before, options[0]), parse(after, options[1])
    if not any(t.is_template for t in templates):
        return before, after
    check_pair(*templates, options=options)
    day = _as_date(run_date)
    resolved = templates[0].render(day), templates[1].render(day)
    if resolved[0] == resolved[1]:
        raise DiffError(
            ErrorClass.CONFIG_ERROR,
            f"{options[0]} {before!r} and {options[1]} {after!r} both resolve to "
            f"{resolved[0]!r} for {day.isoformat()}: a snapshot diffed against itself",
        )
    return resolved
