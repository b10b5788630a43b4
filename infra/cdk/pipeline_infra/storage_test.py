"""Storage: five buckets (or three plus two imported), all private, TLS-only, encrypted, logged;
the diffs bucket versioned with a lifecycle for old diffs."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from pipeline_infra.storage import ACCESS_LOG_PREFIX, GLUE_TEMP_PREFIX
from pipeline_infra.testing import Synth, default_synth, imports_synth, render

BLOCK_ALL = {
    "BlockPublicAcls": True,
    "BlockPublicPolicy": True,
    "IgnorePublicAcls": True,
    "RestrictPublicBuckets": True,
}


@pytest.fixture(scope="module")
def synth() -> Synth:
    return default_synth()


def _bucket(synth: Synth, construct) -> dict:
    return synth.raw["Resources"][synth.logical_id(construct)]["Properties"]


def test_five_buckets_with_valid_default_names(synth: Synth) -> None:
    buckets = synth.resources("AWS::S3::Bucket")
    assert len(buckets) == 5
    names = sorted(render(b["Properties"]["BucketName"]) for b in buckets.values())
    assert names == sorted(
        f"diffs-pipeline-{role}-${{AWS::AccountId}}-${{AWS::Region}}"
        for role in ("ontem", "hoje", "diffs", "logs", "glue-temp")
    )
    assert all(
        "_" not in name.replace("${AWS::AccountId}", "").replace("${AWS::Region}", "")
        for name in names
    )


def test_every_bucket_is_private_encrypted_and_tls_only(synth: Synth) -> None:
    for logical_id, bucket in synth.resources("AWS::S3::Bucket").items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == BLOCK_ALL, logical_id
        assert props["BucketEncryption"] == {
            "ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
            ]
        }, logical_id
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        assert bucket["DeletionPolicy"] == "Retain"
    policies = synth.resources("AWS::S3::BucketPolicy")
    secured = set()
    for policy in policies.values():
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            if (
                st["Effect"] == "Deny"
                and st["Action"] == "s3:*"
                and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            ):
                secured.add(policy["Properties"]["Bucket"]["Ref"])
    assert secured == set(synth.resources("AWS::S3::Bucket"))


def test_server_access_logs_go_to_the_log_bucket(synth: Synth) -> None:
    storage = synth.stack.storage
    log_bucket_id = synth.logical_id(storage.log_bucket)
    for construct, role in (
        (storage.before_bucket, "ontem"),
        (storage.after_bucket, "hoje"),
        (storage.diffs_bucket, "diffs"),
        (storage.glue_temp_bucket, "glue-temp"),
    ):
        assert _bucket(synth, construct)["LoggingConfiguration"] == {
            "DestinationBucketName": {"Ref": log_bucket_id},
            "LogFilePrefix": f"{ACCESS_LOG_PREFIX}/{role}/",
        }
    # the log bucket itself lets the logging service write (bucket policy, no ACL)
    synth.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": log_bucket_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "s3:PutObject",
                                "Effect": "Allow",
                                "Principal": {"Service": "logging.s3.amazonaws.com"},
                            }
                        )
                    ]
                )
            },
        },
    )
    assert "AccessControl" not in _bucket(synth, storage.log_bucket)


def test_diffs_bucket_is_versioned_and_expires_old_diffs(synth: Synth) -> None:
    props = _bucket(synth, synth.stack.storage.diffs_bucket)
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-old-diffs"]["ExpirationInDays"] == 90
    assert rules["expire-old-diffs"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert rules["expire-old-diffs"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert rules["remove-expired-delete-markers"]["ExpiredObjectDeleteMarker"] is True


def test_glue_temp_bucket_expires_its_objects(synth: Synth) -> None:
    props = _bucket(synth, synth.stack.storage.glue_temp_bucket)
    assert props["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 7
    assert synth.stack.storage.glue_temp_location.endswith(f"/{GLUE_TEMP_PREFIX}/")


def test_imported_input_buckets_are_referenced_not_created() -> None:
    synth = imports_synth()
    names = {
        render(b["Properties"]["BucketName"]) for b in synth.resources("AWS::S3::Bucket").values()
    }
    assert "acme-diffs" in names
    assert not {"acme-exports-ontem", "acme-exports-hoje"} & names
    assert len(names) == 3  # diffs, logs, glue temp
    job = synth.one("AWS::Glue::Job")[1]["Properties"]["DefaultArguments"]
    assert job["--before"] == "s3://acme-exports-ontem/exports/{yesterday}/"
    assert job["--after"] == "s3://acme-exports-hoje/exports/{run_date}/"
    assert job["--diffs"] == "s3://acme-diffs"
