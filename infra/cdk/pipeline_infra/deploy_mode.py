"""Deploy mode: the synth refuses a stack that would deploy a broken pipeline.

With `mode=deploy` (the default, and what `tools/deploy` passes) `build_app` stops before building
the stack when something the deployed pipeline needs is missing, naming every missing piece and
how to give it. Each of these would otherwise deploy "successfully" and fail later:

* the publisher PEX (unless `publisher_image_uri` names a built image): the image build's COPY
  fails during `cdk deploy`, after the rest of the stack is half created;
* `kafka_bootstrap_servers`: the publisher exits 11 (configuration) every night;
* the broker network: either the brokers' VPC (`vpc_id`) or where they are (`kafka_broker_cidr`,
  given explicitly): the default security group egress to 0.0.0.0/0 is a placeholder (a created
  VPC's task then reaches the brokers through routes the operator adds, or NAT / a public IP);
* a created VPC with no way out (no NAT gateway, no public IP): the task reaches AWS through
  the endpoints, but no broker;
* SASL credentials without `kafka_secret_arn`: the stack's own secret holds a generated
  password the brokers do not know;
* an alarm subscriber (`alarm_email`): alarms fire into a topic nobody reads.

`mode=placeholder` synthesizes without these checks (tests, reading the template); its stack is
not meant for `cdk deploy`.
"""

from __future__ import annotations

from collections.abc import Collection

from pipeline_infra.config import ConfigError, PipelineConfig


def deploy_problems(config: PipelineConfig, given: Collection[str]) -> list[str]:
    """What stops `config` from deploying a working pipeline (empty: nothing). `given` holds the
    context keys set explicitly (cdk.json, `-c`), to tell a chosen value from a default."""
    problems = []
    script = config.resolve(config.glue_script_path)
    if not script.is_file():
        problems.append(f"glue_script_path: {script} does not exist (the Glue job's script)")
    if not config.publisher_image_uri:
        pex = config.resolve(config.publisher_pex_path)
        if not pex.is_file():
            problems.append(
                f"publisher_pex_path: {pex} does not exist: build it first "
                "(`./pants package apps/kafka_publisher`; tools/deploy does), or pass "
                "-c publisher_image_uri=<an image already built>"
            )
    if not config.kafka_bootstrap_servers:
        problems.append(
            "kafka_bootstrap_servers is empty: the publisher would exit 11 every night; pass "
            "-c kafka_bootstrap_servers=b-1.kafka.example.com:9096,b-2.kafka.example.com:9096"
        )
    if not config.vpc_id and "kafka_broker_cidr" not in given:
        problems.append(
            "no broker network: pass -c vpc_id=vpc-... (the brokers' VPC; with "
            "-c subnet_ids=subnet-...,subnet-... for the task) or -c kafka_broker_cidr=<the "
            "brokers' CIDR> for the created VPC (reached through routes you add, or with "
            "-c nat_gateways=1 / -c assign_public_ip=true for brokers on the Internet)"
        )
    if not config.vpc_id and not config.nat_gateways and not config.public_ip:
        problems.append(
            "the created VPC is isolated (no NAT gateway, no public IP): the task reaches AWS "
            "through the VPC endpoints but no broker; pass -c vpc_id=vpc-... (the brokers' VPC, "
            "or one peered with it), or -c nat_gateways=1 / -c assign_public_ip=true for "
            "brokers on the Internet"
        )
    if config.uses_sasl and not config.kafka_secret_arn:
        problems.append(
            "SASL credentials but no kafka_secret_arn: the stack would create a secret holding a "
            "generated password the brokers do not know; pass -c kafka_secret_arn=<a secret with "
            "username and password>, or -c kafka_auth=iam (MSK IAM, no secret)"
        )
    if not config.alarm_email:
        problems.append(
            "alarm_email is empty: the alarm topic would have no subscriber; pass "
            "-c alarm_email=data-oncall@example.com"
        )
    return problems


def check_deployable(config: PipelineConfig, given: Collection[str]) -> None:
    """Raise ConfigError listing every problem when `config.mode` is `deploy`."""
    if config.mode != "deploy":
        return
    problems = deploy_problems(config, given)
    if problems:
        raise ConfigError(
            "not deployable (mode=deploy):\n  - "
            + "\n  - ".join(problems)
            + "\n(-c mode=placeholder synthesizes a template with placeholders, not for deploy)"
        )


__all__ = ["check_deployable", "deploy_problems"]
