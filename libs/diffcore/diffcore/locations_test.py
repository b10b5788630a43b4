from __future__ import annotations

import string
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcore import locations
from diffcore.errors import DiffError, ErrorClass


def _config_error(call, *args, **kwargs) -> str:
    with pytest.raises(DiffError) as info:
        call(*args, **kwargs)
    assert info.value.error_class is ErrorClass.CONFIG_ERROR
    assert info.value.exit_code == 2
    return info.value.message


def test_run_date_and_yesterday():
    assert locations.resolve("s3://exports/{run_date}/", "2026-11-25") == "s3://exports/2026-11-25/"
    assert (
        locations.resolve("s3://exports/{yesterday}/", "2026-11-25") == "s3://exports/2026-11-24/"
    )


def test_yesterday_crosses_months_years_and_leap_days():
    assert locations.resolve("{yesterday}", "2027-01-01") == "2026-12-31"
    assert locations.resolve("{yesterday}", "2028-03-01") == "2028-02-29"
    assert locations.resolve("{yesterday}", date(2026, 3, 1)) == "2026-02-28"


def test_formats():
    assert locations.resolve("s3://e/{run_date:%Y/%m/%d}/", "2026-11-05") == "s3://e/2026/11/05/"
    assert locations.resolve("e/dt={yesterday:%Y%m%d}/x", "2026-11-01") == "e/dt=20261031/x"
    assert locations.resolve("e/{run_date:%y-%j}%%", "2026-02-01") == "e/26-032%%"
    assert locations.resolve("e/{run_date:%Y%%}", "2026-02-01") == "e/2026%"


def test_plain_locations_are_unchanged():
    for text in ("s3://exports/2026-11-24/", "snap/*.jsonl.gz", "/data/a b/", "", "s3://b/%Y/"):
        assert locations.resolve(text, "2026-11-25") == text
        assert not locations.parse(text).is_template
    assert locations.resolve_pair("a/", "b/", "2026-11-25") == ("a/", "b/")


def test_escaped_braces_are_literal():
    t = locations.parse("s3://b/{{raw}}/{run_date}")
    assert t.is_template
    assert t.render(date(2026, 11, 25)) == "s3://b/{raw}/2026-11-25"
    assert locations.resolve("x{{y}}", "2026-11-25") == "x{y}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://e/{today}/", "unknown placeholder {today}"),
        ("s3://e/{Run_Date}/", "unknown placeholder {Run_Date}"),
        ("s3://e/{}/", "empty placeholder {}"),
        ("s3://e/{:%Y}/", "empty placeholder {:%Y}"),
        ("s3://e/{run_date/", "unbalanced '{' at position 7"),
        ("s3://e/run_date}/", "unbalanced '}' at position 15"),
        ("s3://e/{run_{date}}/", "unbalanced '{' at position 7"),
        ("s3://e/{run_date!r}/", "unknown placeholder {run_date!r}"),
        ("s3://e/{run_date.year}/", "unknown placeholder {run_date.year}"),
        ("s3://e/{0}/", "unknown placeholder {0}"),
        ("s3://e/{run_date:%H}/", "format directive %H is not one of"),
        ("s3://e/{run_date:%B}/", "format directive %B is not one of"),
        ("s3://e/{run_date:}/", "the format names no date field"),
        ("s3://e/{run_date:static}/", "the format names no date field"),
        ("s3://e/{run_date:%%}/", "the format names no date field"),
        ("s3://e/{run_date:%Y%}/", "format directive % is not one of"),
    ],
)
def test_bad_templates_name_the_option_and_the_placeholder(text: str, expected: str):
    message = _config_error(locations.resolve, text, "2026-11-25", option="--before")
    assert message.startswith(f"--before {text!r}: ")
    assert expected in message
    assert "{run_date}" in message  # the error says what is allowed


def test_bad_run_date():
    assert "YYYY-MM-DD" in _config_error(locations.resolve, "{run_date}", "2026-02-30")
    assert "YYYY-MM-DD" in _config_error(locations.resolve, "{run_date}", "26-2-3")


def test_swapped_sides_are_refused():
    message = _config_error(
        locations.resolve_pair,
        "s3://e/{run_date}/",
        "s3://e/{yesterday}/",
        "2026-11-25",
        options=("--before", "--after"),
    )
    assert "--before 's3://e/{run_date}/' names a later date than --after" in message


def test_same_location_on_both_sides_is_refused():
    message = _config_error(
        locations.resolve_pair, "s3://e/{run_date}/", "s3://e/{run_date:%Y-%m-%d}/", "2026-11-25"
    )
    assert "both resolve to 's3://e/2026-11-25/'" in message


def test_same_date_different_folders_and_a_fixed_first_day_side_are_fine():
    assert locations.resolve_pair("e/{run_date}/old/", "e/{run_date}/new/", "2026-11-25") == (
        "e/2026-11-25/old/",
        "e/2026-11-25/new/",
    )
    # the first day of a pipeline: an empty fixed before (with --allow-empty before)
    assert locations.resolve_pair("s3://e/none/", "s3://e/{run_date}/", "2026-11-25") == (
        "s3://e/none/",
        "s3://e/2026-11-25/",
    )


def test_static_prefix():
    assert locations.parse("exports/{yesterday}/").static_prefix == "exports/"
    assert locations.parse("exports/dt={run_date:%Y}/{run_date}").static_prefix == "exports/dt="
    assert locations.parse("{run_date}/x").static_prefix == ""
    assert locations.parse("exports/{{a}}/{run_date}").static_prefix == "exports/{a}/"
    assert locations.parse("exports/").static_prefix == "exports/"


# ---- properties ------------------------------------------------------------------------------

_days = st.dates(min_value=date(1900, 1, 2), max_value=date(9999, 12, 31))
_literal = st.text(
    alphabet=st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(_literal, _days)
def test_text_without_braces_is_unchanged(text: str, day: date):
    assert locations.resolve(text, day) == text
    assert locations.resolve(text, day.isoformat()) == text


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(_literal, st.sampled_from(sorted(locations.PLACEHOLDERS))), max_size=6),
    _days,
)
def test_placeholders_resolve_to_their_dates(pieces: list[str], day: date):
    """A template assembled from literal pieces and placeholders resolves piece by piece."""
    template = "".join(f"{{{p}}}" if p in locations.PLACEHOLDERS else p for p in pieces)
    expected = "".join(
        (
            (day + timedelta(days=locations.PLACEHOLDERS[p])).isoformat()
            if p in locations.PLACEHOLDERS
            else p
        )
        for p in pieces
    )
    assert locations.resolve(template, day) == expected
    assert locations.parse(template).render(day).startswith(locations.parse(template).static_prefix)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=string.ascii_letters + "{}:%/_-.!01", max_size=20))
def test_any_text_resolves_or_is_a_config_error(text: str):
    """Never a traceback: every text either resolves or is refused as config_error."""
    try:
        out = locations.resolve(text, "2026-11-25", option="AFTER")
    except DiffError as exc:
        assert exc.error_class is ErrorClass.CONFIG_ERROR
        assert exc.message.startswith(f"AFTER {text!r}")
    else:
        assert "{" not in text.replace("{{", "") or out != text
