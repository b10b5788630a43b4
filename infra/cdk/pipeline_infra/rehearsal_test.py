"""The deploy rehearsal: the synthesized template created in moto_server's CloudFormation, the
announce wiring moto skipped applied from the template's own properties, then S3 -> SQS shown
end to end on that stack (pipeline_infra/rehearsal.py says what moto lacks and why).

moto_server runs on 127.0.0.1 as a subprocess of this test, stopped by its PID
(tests/support/services.py).
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import boto3
import pytest

from diffcore import layout, s3events
from pipeline_infra import announce_spec
from pipeline_infra.rehearsal import (
    BOOTSTRAP_VERSION,
    BOOTSTRAP_VERSION_PARAMETER,
    Deployed,
    RehearsalError,
    adapt_for_moto,
    deployed_from,
    dropped_bucket_settings,
    filter_rules,
    flow_log_at_bucket_root,
    queue_notification,
    queue_policies,
    resolve,
    s3_may_send,
    s3_notification_configuration,
    secret_resources,
    secrets_made_outside,
    skipped_resources,
    unevaluated_rules,
)
from pipeline_infra.testing import default_synth
from tests.support.services import FAKE_AWS, moto_process

ACCOUNT = "123456789012"  # moto's default account
REGION = FAKE_AWS["region_name"]
RUN_DATE = "2026-11-25"


# ---------------------------------------------------------------------------- the rehearsal


def test_rehearsal_of_the_synthesized_template_on_moto() -> None:
    synth = default_synth()
    template = synth.raw
    original = copy.deepcopy(template)
    stack_name = synth.stack.stack_name

    with moto_process() as (proc, endpoint):
        assert proc.alive()
        client = _clients(endpoint)

        # What `cdk bootstrap` leaves in an account, read by the template's BootstrapVersion.
        client["ssm"].put_parameter(
            Name=BOOTSTRAP_VERSION_PARAMETER, Value=BOOTSTRAP_VERSION, Type="String"
        )
        secret_arns = {
            logical_id: _create_secret(client["secretsmanager"], f"{stack_name}-{logical_id}", p)
            for logical_id, p in secret_resources(template).items()
        }
        adapted, adaptations = adapt_for_moto(template, secret_arns)
        assert template == original, "the adaptations must work on a copy"

        client["cloudformation"].create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(adapted),
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        )
        status = _wait_for_stack(client["cloudformation"], stack_name)
        assert status == "CREATE_COMPLETE"
        described = client["cloudformation"].describe_stack_resources(StackName=stack_name)[
            "StackResources"
        ]
        skipped = skipped_resources(adapted, described)
        deployed = deployed_from(adapted, described, ACCOUNT, REGION, stack_name)

        # ---- what moto did not do ----------------------------------------------------------
        bucket_id, cfn_queue_configs = queue_notification(template)
        diffs_bucket = deployed.refs[bucket_id]
        dropped = dropped_bucket_settings(
            template["Resources"][bucket_id]["Properties"],
            _read_bucket_settings(client["s3"], diffs_bucket),
        )
        print(f"\nrehearsal of {stack_name} on moto_server (pid {proc.pid}):")
        for a in adaptations:
            print(f"  adapted on the copy: {a.name} ({', '.join(a.logical_ids)}): {a.gap}")
        print(f"  rules moto does not evaluate: {', '.join(unevaluated_rules(template)) or '-'}")
        print("  resource types moto skipped while reporting CREATE_COMPLETE:")
        for type_, ids in skipped.items():
            print(f"    {type_}: {len(ids)} ({', '.join(ids)})")
        print(f"  diffs bucket settings moto did not apply: {', '.join(dropped) or '-'}")
        # The template's buckets, queues, roles and task definition are there for real.
        present = {d["ResourceType"] for d in described if d.get("PhysicalResourceId")}
        assert {"AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::ECS::TaskDefinition"} <= present

        # ---- the wiring moto skipped, from the template's own properties ---------------------
        for _, queue_url, document in queue_policies(template, deployed):
            client["sqs"].set_queue_attributes(
                QueueUrl=queue_url, Attributes={"Policy": json.dumps(document)}
            )
        notification = s3_notification_configuration(cfn_queue_configs, deployed)
        for queue_arn in {qc["QueueArn"] for qc in notification["QueueConfigurations"]}:
            policy = json.loads(
                client["sqs"].get_queue_attributes(
                    QueueUrl=_queue_url(client["sqs"], queue_arn), AttributeNames=["Policy"]
                )["Attributes"]["Policy"]
            )
            # S3's own check on a real account (moto does not make it).
            assert s3_may_send(
                policy, queue_arn, deployed.arns[bucket_id], ACCOUNT
            ), f"the queue policy of {queue_arn} does not let {diffs_bucket} send"
        client["s3"].put_bucket_notification_configuration(
            Bucket=diffs_bucket, NotificationConfiguration=notification
        )
        read_back = client["s3"].get_bucket_notification_configuration(Bucket=diffs_bucket)
        # The rules S3 now holds are the template's, which are the announce spec's.
        assert filter_rules(read_back) == filter_rules(notification)
        (queue_arn,) = {qc["QueueArn"] for qc in notification["QueueConfigurations"]}
        assert filter_rules(notification) == filter_rules(
            announce_spec.notification_configuration(queue_arn)
        )
        assert queue_arn.endswith(f":{synth.stack.config.queue_name}")
        queue_url = _queue_url(client["sqs"], queue_arn)
        for body in _drain(client["sqs"], queue_url):
            assert s3events.parse_message(body) == []  # the s3:TestEvent

        # ---- what the pipeline writes, and what is announced --------------------------------
        data_file = layout.data_file_name(0)
        not_announced = [
            f"{RUN_DATE}/{layout.MANIFEST_NAME}",
            f"{RUN_DATE}/{layout.BAD_RECORDS_NAME}",
            f"{RUN_DATE}/{layout.LOCK_NAME}",
            layout.checkpoint_key(RUN_DATE, data_file),
            f"{RUN_DATE}/{layout.temp_name(data_file, 'a1b2c3')}",
            f"{RUN_DATE}/{layout.temp_name(layout.MANIFEST_NAME, 'a1b2c3')}",
            f"{RUN_DATE}/{layout.temp_name(layout.data_file_name(1, gzip=True), 'a1b2c3')}",
        ]
        for key in not_announced:
            client["s3"].put_object(Bucket=diffs_bucket, Key=key, Body=b"{}\n")
        assert _drain(client["sqs"], queue_url) == [], "a non-data object was announced"

        for data_key in (
            f"{RUN_DATE}/{data_file}",
            f"{RUN_DATE}/{layout.data_file_name(1, gzip=True)}",
        ):
            client["s3"].put_object(Bucket=diffs_bucket, Key=data_key, Body=b'{"op":"c"}\n')
            bodies = _drain(client["sqs"], queue_url)
            assert len(bodies) == 1, f"{data_key}: {len(bodies)} messages, expected one"
            (event,) = s3events.parse_message(bodies[0])
            assert (event.bucket, event.run_date, event.key) == (diffs_bucket, RUN_DATE, data_key)
            print(f"  {data_key} -> one message on {queue_arn}: ({event.run_date}, {event.key})")
        print(f"  not announced: {', '.join(not_announced)}")
        # The dead-letter queue stays empty.
        dlq_url = _queue_url(client["sqs"], f"{queue_arn}{announce_spec.DEAD_LETTER_SUFFIX}")
        assert _drain(client["sqs"], dlq_url) == []
    assert not proc.alive()


# ---------------------------------------------------------------------------- without moto


def test_a_template_without_the_announce_wiring_is_refused() -> None:
    template = copy.deepcopy(default_synth().raw)
    bucket_id, _ = queue_notification(template)
    del template["Resources"][bucket_id]["Properties"]["NotificationConfiguration"]
    with pytest.raises(RehearsalError, match="exactly one bucket with queue notifications"):
        queue_notification(template)
    with pytest.raises(RehearsalError, match="found 0"):
        queue_notification({"Resources": {}})


def test_s3_may_send_only_for_the_bucket_and_account_the_policy_names() -> None:
    synth = default_synth()
    deployed = _fake_deployed(synth.raw)
    ((_, queue_url, policy),) = (
        p for p in queue_policies(synth.raw, deployed) if p[1].endswith("/diffs-events-queue")
    )
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:diffs-events-queue"
    bucket_arn = f"arn:aws:s3:::diffs-pipeline-diffs-{ACCOUNT}-{REGION}"
    assert s3_may_send(policy, queue_arn, bucket_arn, ACCOUNT)
    assert not s3_may_send(policy, queue_arn, "arn:aws:s3:::another-bucket", ACCOUNT)
    assert not s3_may_send(policy, queue_arn, bucket_arn, "210987654321")
    assert not s3_may_send({"Statement": []}, queue_arn, bucket_arn, ACCOUNT)
    deny_all = {"Statement": [*policy["Statement"], {**policy["Statement"][0], "Effect": "Deny"}]}
    assert not s3_may_send(deny_all, queue_arn, bucket_arn, ACCOUNT)


def test_adaptations_change_a_copy_only_where_moto_falls_short() -> None:
    template = default_synth().raw
    original = copy.deepcopy(template)
    (flow_log_id,) = (
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::EC2::FlowLog"
    )
    adapted, changed = flow_log_at_bucket_root(template)
    assert changed == (flow_log_id,)
    destination = adapted["Resources"][flow_log_id]["Properties"]["LogDestination"]
    assert destination.get("Fn::GetAtt", [None, None])[1] == "Arn"
    arns = {
        k: f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{k}-x"
        for k in secret_resources(template)
    }
    adapted, removed = secrets_made_outside(template, arns)
    assert set(removed) == set(arns) and removed
    text = json.dumps(adapted)
    assert all(f'"{k}"' not in text for k in arns) and all(a in text for a in arns.values())
    with pytest.raises(RehearsalError, match="no ARN given"):
        secrets_made_outside(template, {})
    assert template == original
    assert resolve(
        {"Fn::Join": ["-", [{"Ref": "AWS::Region"}, "x"]]}, _fake_deployed(template)
    ) == (f"{REGION}-x")
    with pytest.raises(RehearsalError, match="Fn::Sub"):
        resolve({"Fn::Sub": "${AWS::Region}"}, _fake_deployed(template))


# ---------------------------------------------------------------------------- helpers


def _clients(endpoint: str) -> dict[str, Any]:
    return {
        name: boto3.client(name, endpoint_url=endpoint, **FAKE_AWS)
        for name in ("cloudformation", "s3", "sqs", "ssm", "secretsmanager")
    }


def _create_secret(secretsmanager: Any, name: str, props: dict[str, Any]) -> str:
    """The secret as CloudFormation would create it from GenerateSecretString (never printed)."""
    generate = props.get("GenerateSecretString", {})
    value = json.loads(generate.get("SecretStringTemplate", "{}"))
    if generate.get("GenerateStringKey"):
        value[generate["GenerateStringKey"]] = secretsmanager.get_random_password(
            ExcludePunctuation=bool(generate.get("ExcludePunctuation"))
        )["RandomPassword"]
    return secretsmanager.create_secret(
        Name=name, Description=props.get("Description", ""), SecretString=json.dumps(value)
    )["ARN"]


def _wait_for_stack(cloudformation: Any, name: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS") or time.monotonic() > deadline:
            return stack["StackStatus"]
        time.sleep(0.2)


def _read_bucket_settings(s3: Any, bucket: str) -> dict[str, Any]:
    notification = s3.get_bucket_notification_configuration(Bucket=bucket)
    try:
        lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except s3.exceptions.ClientError:
        lifecycle = []
    return {
        "NotificationConfiguration": notification.get("QueueConfigurations", []),
        "VersioningConfiguration": s3.get_bucket_versioning(Bucket=bucket).get("Status"),
        "LifecycleConfiguration": lifecycle,
    }


def _queue_url(sqs: Any, queue_arn: str) -> str:
    return sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[1])["QueueUrl"]


def _drain(sqs: Any, queue_url: str) -> list[str]:
    """Every message now on the queue (deleted as read), until two empty polls. moto delivers
    an S3 notification within the PutObject call, so short polls suffice."""
    bodies: list[str] = []
    empty = 0
    while empty < 2:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        empty = 0 if got else empty + 1
        for message in got:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if not got:
            time.sleep(0.1)
    return bodies


def _fake_deployed(template: dict[str, Any]) -> Deployed:
    """Physical ids as moto would give them, without moto (for the pure checks)."""
    described = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::SQS::Queue":
            name = resource["Properties"].get("QueueName", logical_id)
            physical = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        elif resource["Type"] == "AWS::S3::Bucket":
            physical = f"{logical_id.lower()}-bucket"
        else:
            physical = f"{logical_id}-physical"
        described.append({"LogicalResourceId": logical_id, "PhysicalResourceId": physical})
    return deployed_from(template, described, ACCOUNT, REGION, "DiffsPipeline")
