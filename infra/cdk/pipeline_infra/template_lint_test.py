"""cfn-lint (the linter AWS users run on templates; in the lockfile through moto[server]) finds
no error and no warning in the synthesized templates, in the regions the docs deploy to.

checkov is run by hand (not a project dependency): its findings on the template are fixed or
acknowledged in nag.py's CHECKOV_SKIPS with a reason, and listed in infra/cdk/README.md.
"""

from __future__ import annotations

import json

import pytest
from cfnlint.api import ManualArgs, lint

from pipeline_infra.testing import Synth, default_synth, imported_vpc_synth, imports_synth

# us-east-1 (cfn-lint's default) and sa-east-1 (README's deploy example).
REGIONS = ["us-east-1", "sa-east-1"]


def _lint(synth: Synth) -> list[str]:
    text = json.dumps(synth.raw)
    if synth.stack.config.vpc_id:
        # Offline, CDK's VPC lookup answers with its dummy VPC "vpc-12345" (not a valid id);
        # with credentials the lookup gives the configured VPC.
        text = text.replace('"vpc-12345"', json.dumps(synth.stack.config.vpc_id))
    matches = lint(text, config=ManualArgs(regions=REGIONS))
    return [f"{m.rule.id} {m.message} at {'/'.join(map(str, m.path))}" for m in matches]


@pytest.mark.parametrize(
    "make", [default_synth, imports_synth, imported_vpc_synth], ids=["default", "imports", "vpc"]
)
def test_cfn_lint_reports_nothing(make) -> None:
    assert _lint(make()) == []


def test_cfn_lint_does_report_a_redundant_dependency() -> None:
    """The check is live: W3005 (what the stack had before) is reported on a copy of the
    template that gets a DependsOn already implied by a GetAtt."""
    synth = default_synth()
    raw = json.loads(json.dumps(synth.raw))
    job_id = synth.logical_id(synth.stack.diff.job)
    raw["Resources"][job_id]["DependsOn"] = [synth.logical_id(synth.stack.diff.role)]
    matches = lint(json.dumps(raw), config=ManualArgs(regions=REGIONS))
    assert [m.rule.id for m in matches] == ["W3005"]
