"""Helpers for the *_test.py modules: synthesize a configuration once per process and read the
synthesized template back (no second synth), render CloudFormation intrinsics as flat strings,
collect a role's policy statements.

Synth costs seconds (2 cores): `synth()` caches by context, so test modules share one synth per
configuration (Pants runs each test file in its own process: one synth per module and config).
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Environment
from aws_cdk.assertions import Template

from pipeline_infra.stack import DiffsPipelineStack, build_app

_WORK = Path(tempfile.mkdtemp(prefix="diffs-pipeline-cdk-test-"))


def fixture_paths() -> dict[str, str]:
    """A Glue script and a publisher Docker context that exist whatever the other apps' state:
    the CDK tests check the infrastructure, not those apps (their paths are only referenced);
    a diffcore wheel path that does not exist; and `mode=placeholder` (no deploy-mode checks:
    deploy_mode_test.py tests those)."""
    script = _WORK / "glue_main.py"
    if not script.exists():
        script.write_text("print('diff job placeholder for CDK tests')\n", encoding="utf-8")
    dockerfile = _WORK / "publisher" / "Dockerfile"
    pex = _WORK / "dist" / "apps.kafka_publisher" / "kafka_publisher.pex"
    if not dockerfile.exists():
        dockerfile.parent.mkdir(parents=True)
        dockerfile.write_text(
            "FROM scratch\nCOPY apps.kafka_publisher/kafka_publisher.pex /app/\n", encoding="utf-8"
        )
        pex.parent.mkdir(parents=True)
        pex.write_bytes(b"#!/usr/bin/env python3\n# placeholder PEX for CDK tests\n")
    return {
        "glue_script_path": str(script),
        "publisher_dockerfile": str(dockerfile),
        "publisher_pex_path": str(pex),
        # No wheel by default, whatever a developer's `dist/` holds (`imports_synth` adds one).
        "diffcore_wheel_path": str(_WORK / "no-dist" / "diffcore-0.1.0-py3-none-any.whl"),
        "mode": "placeholder",
    }


def fake_wheel() -> str:
    """A pure-Python wheel (a zip with the package at its root), as Pants would build it."""
    import zipfile

    wheel = _WORK / "dist" / "diffcore-0.1.0-py3-none-any.whl"
    if not wheel.exists():
        wheel.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr("diffcore/__init__.py", "")
            archive.writestr("diffcore/layout.py", "DATA_FILE_SUFFIX = '.jsonl'\n")
            archive.writestr("diffcore-0.1.0.dist-info/METADATA", "Name: diffcore\n")
    return str(wheel)


@dataclass(frozen=True)
class Synth:
    stack: DiffsPipelineStack
    template: Template
    raw: dict[str, Any]
    outdir: Path

    # ---- lookups --------------------------------------------------------------------------
    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.raw["Resources"].items() if v["Type"] == type_}

    def one(self, type_: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(type_)
        assert len(found) == 1, f"expected one {type_}, got {list(found)}"
        return next(iter(found.items()))

    def logical_id(self, construct: Any) -> str:
        child = construct.node.default_child or construct
        return self.stack.get_logical_id(child)

    def statements(self, role: Any) -> list[dict[str, Any]]:
        """Every statement of the IAM policies attached to a role (inline `AWS::IAM::Policy`)."""
        role_id = self.logical_id(role)
        out: list[dict[str, Any]] = []
        for policy in self.resources("AWS::IAM::Policy").values():
            if {"Ref": role_id} in policy["Properties"]["Roles"]:
                out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
        role_props = self.raw["Resources"][role_id]["Properties"]
        for inline in role_props.get("Policies", []):
            out.extend(inline["PolicyDocument"]["Statement"])
        assert not role_props.get("ManagedPolicyArns"), "no managed policies expected"
        return out

    def grants(self, role: Any) -> list[tuple[str, str]]:
        """(action, resource) pairs of a role's Allow statements, resources rendered as text."""
        pairs = []
        for st in self.statements(role):
            assert st["Effect"] == "Allow"
            for action in as_list(st["Action"]):
                for resource in as_list(st["Resource"]):
                    pairs.append((action, render(resource)))
        return pairs


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def render(value: Any) -> str:
    """A CloudFormation value as flat text: Ref X -> ${X}, GetAtt X.Arn -> ${X.Arn},
    Fn::Join / Fn::Sub concatenated. Lets tests compare ARNs as strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return "${" + arg + "}"
        if fn == "Fn::GetAtt":
            return "${" + ".".join(arg) + "}"
        if fn == "Fn::Join":
            return arg[0].join(render(v) for v in arg[1])
        if fn == "Fn::Sub":
            return arg if isinstance(arg, str) else arg[0]
        if fn == "Fn::Select":
            return f"select({arg[0]},{render(arg[1])})"
        if fn == "Fn::GetAZs":
            return "azs"
    return json.dumps(value, sort_keys=True)


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


@functools.cache
def _synth(context_json: str, env_json: str) -> Synth:
    context = {**fixture_paths(), **json.loads(context_json)}
    env_args = json.loads(env_json)
    env = Environment(**env_args) if env_args else None
    outdir = Path(tempfile.mkdtemp(prefix="cdk.out-", dir=_WORK))
    app, stack = build_app(context, outdir=str(outdir), env=env)
    assembly = app.synth()
    raw = assembly.get_stack_artifact(stack.artifact_id).template
    return Synth(stack=stack, template=Template.from_json(raw), raw=raw, outdir=outdir)


def synth(context: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Synth:
    """Synthesize (with cdk-nag) the app for this context, once per process."""
    return _synth(json.dumps(context or {}, sort_keys=True), json.dumps(env or {}, sort_keys=True))


# A configuration that flips every "import / existing / custom" switch at once (one synth).
IMPORTS_CONTEXT: dict[str, Any] = {
    "before_bucket_name": "acme-exports-ontem",
    "import_before_bucket": True,
    "before_prefix": "exports/{yesterday}/",  # date templates (diffcore.locations)
    "after_bucket_name": "acme-exports-hoje",
    "import_after_bucket": "true",  # strings, as `-c key=value` gives them
    "after_prefix": "exports/{run_date}/",
    "diffs_bucket_name": "acme-diffs",
    "key_fields": "tenant,customer.id",
    "ignore_fields": ["updated_at", "etl.loaded_at"],
    "bad_records": "quarantine",
    "allow_empty": "before",
    "timezone": "America/Sao_Paulo",
    "glue_time": "00:45",
    "publisher_time": "02:00",
    "kafka_bootstrap_servers": "b-1.kafka.example.com:9096,b-2.kafka.example.com:9096",
    "kafka_topic": "customers.diffs",
    "kafka_ports": "9096",
    "kafka_broker_cidr": "10.20.0.0/16",
    "kafka_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka/diffs-AbCdEf",
    # customer-managed keys of the inputs and of the imported secret (SSE-KMS)
    "before_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555",
    "after_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/66666666-7777-8888-9999-000000000000",
    "kafka_secret_kms_key_arn": (
        "arn:aws:kms:us-east-1:123456789012:key/mrk-0123456789abcdef0123456789abcdef"
    ),
    "publisher_image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/diffs/publisher:1.2.3",
    "cluster_name": "shared-batch",
    "publisher_cpu": "2048",
    "publisher_memory_mib": "4096",
    "publisher_workers": "2",
    "publisher_accept_unreadable_keys": "true",
    "alarm_email": "data-oncall@example.com",
    "queue_name": "acme-diffs-events",
}


def default_synth() -> Synth:
    """The defaults: every resource created (fresh clone, no context)."""
    return synth()


def imports_synth() -> Synth:
    """IMPORTS_CONTEXT plus a built diffcore wheel."""
    return synth({**IMPORTS_CONTEXT, "diffcore_wheel_path": fake_wheel()})


# An imported VPC needs a concrete environment (lookup); offline, CDK answers with its dummy VPC.
VPC_ENV = {"account": "123456789012", "region": "us-east-1"}


def imported_vpc_synth() -> Synth:
    return synth(
        {
            "vpc_id": "vpc-0123456789abcdef0",
            "subnet_ids": "subnet-0aaaaaaaaaaaaaaa1,subnet-0bbbbbbbbbbbbbbb2",
        },
        env=VPC_ENV,
    )
