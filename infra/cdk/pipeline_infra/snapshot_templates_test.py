"""Date-templated snapshot prefixes (`before_prefix=exports/{yesterday}/`): validated at synth with
diffcore.locations (the function the Glue job resolves them with), passed to the job as templates,
and read by the job's role up to the first placeholder."""

from __future__ import annotations

import pytest

from diffcore import locations
from pipeline_infra.config import ConfigError, PipelineConfig
from pipeline_infra.testing import imports_synth


def test_templates_are_accepted_and_read_up_to_their_first_placeholder() -> None:
    config = PipelineConfig.from_mapping(
        {"before_prefix": "exports/{yesterday:%Y/%m/%d}/", "after_prefix": "exports/{run_date}/"}
    )
    assert (config.read_prefix("before"), config.read_prefix("after")) == ("exports/", "exports/")
    plain = PipelineConfig.from_mapping({"before_prefix": "ontem/", "after_prefix": ""})
    assert (plain.read_prefix("before"), plain.read_prefix("after")) == ("ontem/", "")


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {"before_prefix": "exports/{today}/"},
            "before_prefix 'exports/{today}/': unknown placeholder {today}",
        ),
        (
            {"after_prefix": "exports/{run_date/"},
            "after_prefix 'exports/{run_date/': unbalanced '{' at position 8",
        ),
        (
            {"after_prefix": "exports/{run_date:%H}/"},
            "after_prefix 'exports/{run_date:%H}/': placeholder {run_date:%H}: format directive %H",
        ),
        (
            {"before_prefix": "e/{run_date}/", "after_prefix": "e/{yesterday}/"},
            "before_prefix 'e/{run_date}/' names a later date than after_prefix",
        ),
    ],
)
def test_bad_templates_stop_the_synth_naming_the_key(context: dict, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        PipelineConfig.from_mapping(context)
    assert message in str(excinfo.value)


def test_the_templates_reach_the_glue_job_and_the_role_reads_their_fixed_part() -> None:
    synth = imports_synth()  # before_prefix exports/{yesterday}/, after_prefix exports/{run_date}/
    args = synth.one("AWS::Glue::Job")[1]["Properties"]["DefaultArguments"]
    assert args["--before"] == "s3://acme-exports-ontem/exports/{yesterday}/"
    assert args["--after"] == "s3://acme-exports-hoje/exports/{run_date}/"
    # what the job will read on 2026-11-25, resolved by the job's own function
    assert locations.resolve_pair(args["--before"], args["--after"], "2026-11-25") == (
        "s3://acme-exports-ontem/exports/2026-11-24/",
        "s3://acme-exports-hoje/exports/2026-11-25/",
    )
    reads = {r for a, r in synth.grants(synth.stack.diff.role) if a == "s3:GetObject"}
    assert "arn:${AWS::Partition}:s3:::acme-exports-ontem/exports/*" in reads
    assert "arn:${AWS::Partition}:s3:::acme-exports-hoje/exports/*" in reads
    # no placeholder text in an IAM resource
    assert not any(f"{{{name}" in r for r in reads for name in locations.PLACEHOLDERS)
