"""Diff stage: the Glue 5.0 job, its arguments, its role (positive and negative), its schedule."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from pipeline_infra.diff_stage import (
    GLUE_START_JOB_RUN_TARGET,
    SCHEDULED_TIME,
    stage_wheel_as_zip,
    zip_python_package,
)
from pipeline_infra.testing import Synth, as_list, default_synth, imports_synth, render

WRITE_ACTIONS = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}


@pytest.fixture(scope="module")
def synth() -> Synth:
    return default_synth()


def _job(synth: Synth) -> dict:
    return synth.one("AWS::Glue::Job")[1]["Properties"]


def test_glue_5_python_job_with_bookmarks_off_and_continuous_logs(synth: Synth) -> None:
    job = _job(synth)
    assert job["GlueVersion"] == "5.0"
    assert job["Command"]["Name"] == "glueetl"
    assert job["Command"]["PythonVersion"] == "3"
    assert job["Name"] == "diffs-pipeline-diff"
    assert job["Timeout"] == 70  # 90 min to 02:00, minus Scheduler's 15 late, minus 5
    assert job["MaxRetries"] == 0
    assert job["ExecutionProperty"] == {"MaxConcurrentRuns": 1}
    args = job["DefaultArguments"]
    assert args["--job-bookmark-option"] == "job-bookmark-disable"
    assert args["--enable-continuous-cloudwatch-log"] == "true"
    assert args["--enable-metrics"] == "true"
    assert args["--job-language"] == "python"


def test_job_arguments_use_the_fixed_names(synth: Synth) -> None:
    args = _job(synth)["DefaultArguments"]
    storage = synth.stack.storage
    assert render(args["--before"]) == f"s3://${{{synth.logical_id(storage.before_bucket)}}}/"
    assert render(args["--after"]) == f"s3://${{{synth.logical_id(storage.after_bucket)}}}/"
    assert render(args["--diffs"]) == "s3://diffs-pipeline-diffs-${AWS::AccountId}-${AWS::Region}"
    assert args["--key"] == "id"
    assert args["--ignore"] == ""
    assert args["--bad_records"] == "fail"
    assert args["--allow_empty"] == "none"
    assert args["--timezone"] == "UTC"
    assert "--run_date" not in args  # always explicit: the schedule or the operator passes it
    # --TempDir lives in its own bucket, never in the notified diffs bucket
    temp = render(args["--TempDir"])
    assert temp == f"s3://${{{synth.logical_id(storage.glue_temp_bucket)}}}/glue-temp/"
    assert "diffs-pipeline-diffs" not in temp


def test_script_and_diffcore_are_assets(synth: Synth) -> None:
    job = _job(synth)
    script = render(job["Command"]["ScriptLocation"])
    extra = render(job["DefaultArguments"]["--extra-py-files"])
    assert script.startswith("s3://cdk-") and script.endswith(".py")
    assert extra.startswith("s3://cdk-") and extra.endswith(".zip")
    assert synth.stack.diff.diffcore_source == "source"  # no wheel in a fresh clone
    assert "--additional-python-modules" not in job["DefaultArguments"]


def test_a_built_wheel_is_used_when_present() -> None:
    variant = imports_synth()
    assert variant.stack.diff.diffcore_source == "wheel"
    args = _job(variant)["DefaultArguments"]
    assert args["--key"] == "tenant,customer.id"
    assert args["--ignore"] == "updated_at,etl.loaded_at"
    assert args["--bad_records"] == "quarantine"
    assert args["--allow_empty"] == "before"
    assert args["--timezone"] == "America/Sao_Paulo"
    assert _job(variant)["Timeout"] == 55  # 00:45 -> 02:00 minus 15 minus 5 minutes


def test_security_configuration_encrypts_logs_and_bookmarks(synth: Synth) -> None:
    sc_id, sc = synth.one("AWS::Glue::SecurityConfiguration")
    enc = sc["Properties"]["EncryptionConfiguration"]
    key_arn = {"Fn::GetAtt": [synth.logical_id(synth.stack.key), "Arn"]}
    assert enc["CloudWatchEncryption"] == {
        "CloudWatchEncryptionMode": "SSE-KMS",
        "KmsKeyArn": key_arn,
    }
    assert enc["JobBookmarksEncryption"] == {
        "JobBookmarksEncryptionMode": "CSE-KMS",
        "KmsKeyArn": key_arn,
    }
    assert enc["S3Encryptions"] == [{"S3EncryptionMode": "SSE-S3"}]
    assert _job(synth)["SecurityConfiguration"] == {"Ref": sc_id}


def test_role_reads_only_the_inputs_and_writes_only_diff_dates_and_temp(synth: Synth) -> None:
    storage = synth.stack.storage
    before = synth.logical_id(storage.before_bucket)
    after = synth.logical_id(storage.after_bucket)
    temp = synth.logical_id(storage.glue_temp_bucket)
    diffs_arn = "arn:${AWS::Partition}:s3:::diffs-pipeline-diffs-${AWS::AccountId}-${AWS::Region}"
    grants = synth.grants(synth.stack.diff.role)

    assert ("s3:GetObject", f"${{{before}.Arn}}/*") in grants
    assert ("s3:ListBucket", f"${{{before}.Arn}}") in grants
    assert ("s3:GetObject", f"${{{after}.Arn}}/*") in grants
    assert ("s3:PutObject", f"{diffs_arn}/????-??-??/*") in grants
    assert ("s3:DeleteObject", f"{diffs_arn}/????-??-??/*") in grants
    assert ("s3:ListBucket", diffs_arn) in grants
    assert ("s3:PutObject", f"${{{temp}.Arn}}/glue-temp/*") in grants

    # negatives: nothing but Get/List on the inputs, writes only in date folders and temp
    for action, resource in grants:
        if before in resource or after in resource:
            assert action in ("s3:GetObject", "s3:ListBucket"), (action, resource)
        if action in WRITE_ACTIONS:
            assert resource in (f"{diffs_arn}/????-??-??/*", f"${{{temp}.Arn}}/glue-temp/*"), (
                action,
                resource,
            )
        if action.startswith("s3:"):
            assert "*" not in action, action  # no wildcard S3 actions (s3:*, s3:Put*, ...)
    assert not any("_published" in r for _, r in grants)
    s3_resources = {r for a, r in grants if a.startswith("s3:")}
    assert all(
        before in r or after in r or diffs_arn in r or temp in r or "cdk-" in r
        for r in s3_resources
    ), s3_resources


def test_role_reads_only_its_own_code_assets(synth: Synth) -> None:
    code = [r for a, r in synth.grants(synth.stack.diff.role) if "cdk-hnb659fds-assets" in r]
    assert len(code) == 2 and all(r.endswith((".py", ".zip")) for r in code)
    assert all(
        a == "s3:GetObject"
        for a, r in synth.grants(synth.stack.diff.role)
        if "cdk-hnb659fds-assets" in r
    )


def test_role_logs_metrics_and_key(synth: Synth) -> None:
    statements = {st.get("Sid"): st for st in synth.statements(synth.stack.diff.role)}
    assert render(statements["WriteLogs"]["Resource"]).endswith(":log-group:/aws-glue/*")
    assert "logs:AssociateKmsKey" in statements["WriteLogs"]["Action"]
    assert statements["PutGlueMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "Glue"}
    }
    kms = [
        st
        for st in synth.statements(synth.stack.diff.role)
        if any(a.startswith("kms:") for a in as_list(st["Action"]))
    ]
    assert [render(st["Resource"]) for st in kms] == [
        f"${{{synth.logical_id(synth.stack.key)}.Arn}}"
    ]
    role = synth.raw["Resources"][synth.logical_id(synth.stack.diff.role)]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "glue.amazonaws.com"
    }


def test_daily_schedule_passes_the_run_date(synth: Synth) -> None:
    schedule = synth.raw["Resources"][synth.logical_id(synth.stack.diff.schedule)]["Properties"]
    assert schedule["ScheduleExpression"] == "cron(30 0 * * ? *)"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = schedule["Target"]
    assert (
        target["Arn"] == GLUE_START_JOB_RUN_TARGET == "arn:aws:scheduler:::aws-sdk:glue:startJobRun"
    )
    assert json.loads(target["Input"]) == {
        "JobName": "diffs-pipeline-diff",
        "Arguments": {"--run_date": SCHEDULED_TIME},
    }
    assert SCHEDULED_TIME == "<aws.scheduler.scheduled-time>"
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    assert target["DeadLetterConfig"]["Arn"] == {
        "Fn::GetAtt": [synth.logical_id(synth.stack.scheduler_dlq), "Arn"]
    }
    grants = synth.grants(synth.stack.scheduler_role)
    assert (
        "glue:StartJobRun",
        "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:job/diffs-pipeline-diff",
    ) in grants


def test_schedule_in_another_time_zone() -> None:
    variant = imports_synth()
    schedule = variant.raw["Resources"][variant.logical_id(variant.stack.diff.schedule)]
    assert schedule["Properties"]["ScheduleExpression"] == "cron(45 0 * * ? *)"
    assert schedule["Properties"]["ScheduleExpressionTimezone"] == "America/Sao_Paulo"


def test_package_zip_is_deterministic_and_importable(tmp_path: Path) -> None:
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n")
    (package / "mod_test.py").write_text("raise SystemExit\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.pyc").write_bytes(b"\0")
    first = zip_python_package(package, tmp_path / "a")
    second = zip_python_package(package, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    assert first.name == "pkg.zip"
    assert zipfile.ZipFile(first).namelist() == ["pkg/__init__.py"]


def test_wheel_is_staged_as_a_zip(tmp_path: Path) -> None:
    wheel = tmp_path / "diffcore-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("diffcore/__init__.py", "")
    staged = stage_wheel_as_zip(wheel, tmp_path / "out")
    assert staged.name == "diffcore.zip" and staged.read_bytes() == wheel.read_bytes()
