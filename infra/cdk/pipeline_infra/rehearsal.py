"""A deploy rehearsal on emulated AWS (moto_server), from the synthesized template itself.

The template `cdk synth` writes is created as a stack in moto's CloudFormation. moto 5.2.5 falls
short on it in known ways; each gap gets one small named function below that adapts a COPY of the
template (`adapt_for_moto`) or reports what moto did not do:

* it crashes on a flow log whose S3 destination has a subfolder (`flow_log_at_bucket_root`);
* it has no `AWS::SecretsManager::Secret` (`secrets_made_outside`);
* it silently skips bucket and queue policies, the Glue job, the schedules, the alarms (and more)
  while reporting CREATE_COMPLETE (`skipped_resources` lists them from describe_stack_resources);
* it creates buckets without their `NotificationConfiguration`, versioning or lifecycle
  (`dropped_bucket_settings` reads them back through the S3 API);
* it does not evaluate the template's `Rules` (CDK's bootstrap-version check).

The wiring moto skipped is then applied FROM THE TEMPLATE'S OWN PROPERTIES: the diffs bucket's
notification (`queue_notification`, `s3_notification_configuration`) and the queue policies
(`queue_policies`), with CloudFormation intrinsics resolved against the deployed stack
(`resolve`). S3 checks on a real account that the queue policy lets the bucket send when the
notification is written; moto does not, so `s3_may_send` does that check here.

Only pure functions: the test (rehearsal_test.py) does the I/O against moto_server with boto3.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# What `cdk bootstrap` writes to SSM (the default qualifier); the template's BootstrapVersion
# parameter reads it. The rehearsal writes it to moto, as bootstrapping an account would.
BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
BOOTSTRAP_VERSION = "21"

Template = dict[str, Any]


class RehearsalError(ValueError):
    """The template (or the emulated stack) lacks what the rehearsal needs, named."""


@dataclass(frozen=True)
class Adaptation:
    """One change made on the copy of the template for moto: which gap, which resources."""

    name: str
    gap: str
    logical_ids: tuple[str, ...]


# ---------------------------------------------------------------------------- adaptations


def flow_log_at_bucket_root(template: Template) -> tuple[Template, tuple[str, ...]]:
    """moto 5.2.5 crashes (HTTP 500, IndexError in its flow-log model) on an EC2 flow log whose
    S3 destination has a subfolder (`arn:aws:s3:::bucket/vpc-flow-logs/`), which AWS accepts: it
    takes everything after the ARN's fifth colon as the bucket name, finds no such bucket and
    indexes an empty list. The copy logs to the bucket's root."""
    out = copy.deepcopy(template)
    changed = []
    for logical_id, resource in _of_type(out, "AWS::EC2::FlowLog"):
        props = resource.get("Properties", {})
        if props.get("LogDestinationType") != "s3":
            continue
        root = _bucket_root(props.get("LogDestination"))
        if root is not None and root != props["LogDestination"]:
            props["LogDestination"] = root
            changed.append(logical_id)
    return out, tuple(changed)


def _bucket_root(destination: Any) -> Any:
    """`arn:...:bucket/sub/` -> `arn:...:bucket`; `Fn::Join ["", [<bucket Arn>, "/sub/"]]` -> the
    bucket's Arn; anything else unchanged (None if absent)."""
    if isinstance(destination, str):
        head, _, _ = destination.partition("/")
        return head
    if isinstance(destination, dict) and "Fn::Join" in destination:
        sep, parts = destination["Fn::Join"]
        rest = parts[1:]
        if sep == "" and rest and all(isinstance(p, str) and p.startswith("/") for p in rest):
            return parts[0]
    return destination


def secret_resources(template: Template) -> dict[str, dict[str, Any]]:
    """The template's `AWS::SecretsManager::Secret` resources: logical id -> properties."""
    return {
        k: r.get("Properties", {}) for k, r in _of_type(template, "AWS::SecretsManager::Secret")
    }


def secrets_made_outside(
    template: Template, arns: Mapping[str, str]
) -> tuple[Template, tuple[str, ...]]:
    """moto 5.2.5's CloudFormation has no `AWS::SecretsManager::Secret` (it skips it, and a policy
    statement naming the secret then has no resource: create_stack fails with
    MalformedPolicyDocument). The rehearsal creates each secret through the Secrets Manager API;
    the copy drops the resource and puts that secret's ARN wherever the template refers to it
    (Ref, or Fn::GetAtt Id)."""
    out = copy.deepcopy(template)
    secrets = secret_resources(out)
    missing = sorted(set(secrets) - set(arns))
    if missing:
        raise RehearsalError(f"no ARN given for the secret(s) {', '.join(missing)}")
    for logical_id in secrets:
        del out["Resources"][logical_id]

    def replace(value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                ((fn, arg),) = value.items()
                if fn == "Ref" and arg in secrets:
                    return arns[arg]
                if fn == "Fn::GetAtt" and _getatt(arg)[0] in secrets:
                    return arns[_getatt(arg)[0]]
            return {k: replace(v) for k, v in value.items()}
        if isinstance(value, list):
            return [replace(v) for v in value]
        return value

    return replace(out), tuple(sorted(secrets))


def adapt_for_moto(
    template: Template, secret_arns: Mapping[str, str]
) -> tuple[Template, tuple[Adaptation, ...]]:
    """The copy moto can create, and what was changed on it (the original is left untouched)."""
    out = copy.deepcopy(template)
    done = []
    gaps: tuple[tuple[Callable[..., Any], Callable[[Template], Any]], ...] = (
        (flow_log_at_bucket_root, flow_log_at_bucket_root),
        (secrets_made_outside, lambda t: secrets_made_outside(t, secret_arns)),
    )
    for gap, run in gaps:
        out, changed = run(out)
        if changed:
            done.append(Adaptation(gap.__name__, _first_line(gap.__doc__), changed))
    return out, tuple(done)


def _first_line(doc: str | None) -> str:
    """A docstring's first sentence, on one line."""
    return " ".join((doc or "").split(". ")[0].split())


def unevaluated_rules(template: Template) -> tuple[str, ...]:
    """moto does not evaluate a template's `Rules` (CDK's CheckBootstrapVersion): their names."""
    return tuple(sorted(template.get("Rules", {})))


# ---------------------------------------------------------------------------- what moto skipped


def skipped_resources(
    template: Template, described: list[Mapping[str, Any]]
) -> dict[str, tuple[str, ...]]:
    """Resource type -> logical ids of the template's resources that moto reported
    CREATE_COMPLETE without creating: describe_stack_resources lists them with no
    LogicalResourceId / PhysicalResourceId."""
    present = {d["LogicalResourceId"] for d in described if d.get("PhysicalResourceId")}
    out: dict[str, list[str]] = {}
    for logical_id, resource in template["Resources"].items():
        if logical_id not in present:
            out.setdefault(resource["Type"], []).append(logical_id)
    return {t: tuple(sorted(ids)) for t, ids in sorted(out.items())}


def dropped_bucket_settings(
    bucket_props: Mapping[str, Any], read_back: Mapping[str, Any]
) -> list[str]:
    """The template's bucket settings that the S3 API does not show on the created bucket.

    `read_back`: {"NotificationConfiguration": <GetBucketNotificationConfiguration's queue
    configurations or []>, "VersioningConfiguration": <GetBucketVersioning's Status or None>,
    "LifecycleConfiguration": <GetBucketLifecycleConfiguration's rules or []>}."""
    return [
        name
        for name in (
            "NotificationConfiguration",
            "VersioningConfiguration",
            "LifecycleConfiguration",
        )
        if bucket_props.get(name) and not read_back.get(name)
    ]


# ---------------------------------------------------------------------------- intrinsics


@dataclass(frozen=True)
class Deployed:
    """What the emulated stack resolved: `refs` (logical id or pseudo parameter -> Ref value)
    and `arns` (logical id -> its Arn attribute)."""

    refs: Mapping[str, str]
    arns: Mapping[str, str]


def pseudo_parameters(account: str, region: str, stack_name: str) -> dict[str, str]:
    return {
        "AWS::AccountId": account,
        "AWS::Region": region,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackName": stack_name,
    }


# How a resource's Arn follows from its physical id (what describe_stack_resources gives), for
# the types the template's policies name.
_ARNS: dict[str, str] = {
    "AWS::SQS::Queue": "arn:aws:sqs:{region}:{account}:{last}",  # physical id: the queue URL
    "AWS::S3::Bucket": "arn:aws:s3:::{id}",
    "AWS::Events::Rule": "arn:aws:events:{region}:{account}:rule/{id}",
    "AWS::SNS::Topic": "{id}",
    "AWS::IAM::Role": "arn:aws:iam::{account}:role/{id}",
    "AWS::ECS::Cluster": "arn:aws:ecs:{region}:{account}:cluster/{id}",
    "AWS::ECS::TaskDefinition": "{id}",
    "AWS::KMS::Key": "arn:aws:kms:{region}:{account}:key/{id}",
    "AWS::Logs::LogGroup": "arn:aws:logs:{region}:{account}:log-group:{id}:*",
}


def deployed_from(
    template: Template,
    described: list[Mapping[str, Any]],
    account: str,
    region: str,
    stack_name: str,
) -> Deployed:
    """Ref values and Arns of the created resources, from describe_stack_resources' physical
    ids (`_ARNS` says how an Arn follows from one, per type)."""
    refs = pseudo_parameters(account, region, stack_name)
    arns: dict[str, str] = {}
    types = {k: r["Type"] for k, r in template["Resources"].items()}
    for d in described:
        logical_id, physical = d.get("LogicalResourceId"), d.get("PhysicalResourceId")
        if not logical_id or not physical:
            continue
        refs[logical_id] = physical
        form = _ARNS.get(types.get(logical_id, ""))
        if form:
            last = physical.rstrip("/").rsplit("/", 1)[-1]
            arns[logical_id] = form.format(region=region, account=account, id=physical, last=last)
    return Deployed(refs=refs, arns=arns)


def resolve(value: Any, deployed: Deployed) -> Any:
    """A template value with Ref, Fn::GetAtt (Arn) and Fn::Join resolved; anything else it can't
    resolve raises RehearsalError naming it (a rehearsal must not guess)."""
    if isinstance(value, list):
        return [resolve(v, deployed) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            if arg not in deployed.refs:
                raise RehearsalError(f"Ref {arg}: not created by the emulated stack")
            return deployed.refs[arg]
        if fn == "Fn::GetAtt":
            logical_id, attribute = _getatt(arg)
            if attribute != "Arn" or logical_id not in deployed.arns:
                raise RehearsalError(f"Fn::GetAtt {logical_id}.{attribute}: not resolvable here")
            return deployed.arns[logical_id]
        if fn == "Fn::Join":
            sep, parts = arg
            return sep.join(str(resolve(p, deployed)) for p in parts)
        if fn.startswith("Fn::"):
            raise RehearsalError(f"{fn}: not resolvable here")
    return {k: resolve(v, deployed) for k, v in value.items()}


def _getatt(arg: Any) -> tuple[str, str]:
    if isinstance(arg, str):
        logical_id, _, attribute = arg.partition(".")
        return logical_id, attribute
    return arg[0], arg[1]


# ---------------------------------------------------------------------------- announce wiring


def queue_notification(template: Template) -> tuple[str, list[dict[str, Any]]]:
    """The one bucket with queue notifications: (its logical id, its CloudFormation
    `QueueConfigurations`). A template without one is not the pipeline's: RehearsalError."""
    found = [
        (logical_id, resource["Properties"]["NotificationConfiguration"]["QueueConfigurations"])
        for logical_id, resource in _of_type(template, "AWS::S3::Bucket")
        if resource.get("Properties", {})
        .get("NotificationConfiguration", {})
        .get("QueueConfigurations")
    ]
    if len(found) != 1:
        raise RehearsalError(
            f"expected exactly one bucket with queue notifications in the template, found "
            f"{len(found)} ({', '.join(k for k, _ in found) or 'none'})"
        )
    return found[0]


def s3_notification_configuration(
    queue_configurations: list[dict[str, Any]], deployed: Deployed
) -> dict[str, Any]:
    """CloudFormation's `QueueConfigurations` (Event, Filter.S3Key.Rules, Queue) in the S3 API's
    `PutBucketNotificationConfiguration` shape, intrinsics resolved."""
    out = []
    for rule in queue_configurations:
        api: dict[str, Any] = {
            "QueueArn": resolve(rule["Queue"], deployed),
            "Events": [rule["Event"]],
        }
        rules = rule.get("Filter", {}).get("S3Key", {}).get("Rules")
        if rules:
            api["Filter"] = {
                "Key": {
                    "FilterRules": [
                        {"Name": r["Name"], "Value": resolve(r["Value"], deployed)} for r in rules
                    ]
                }
            }
        out.append(api)
    return {"QueueConfigurations": out}


def filter_rules(configuration: Mapping[str, Any]) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """(queue ARN, ((name, value), ...)) per queue configuration, sorted: to compare what was
    applied, what S3 reads back and what the template says. Names compare lowercased (S3 answers
    `Suffix` to a `suffix` rule)."""
    return sorted(
        (
            qc["QueueArn"],
            tuple(
                sorted(
                    (r["Name"].lower(), r["Value"])
                    for r in qc.get("Filter", {}).get("Key", {}).get("FilterRules", [])
                )
            ),
        )
        for qc in configuration.get("QueueConfigurations", [])
    )


def queue_policies(template: Template, deployed: Deployed) -> list[tuple[str, str, dict[str, Any]]]:
    """(policy logical id, queue URL, resolved policy document) for every `AWS::SQS::QueuePolicy`
    and every queue it names."""
    out = []
    for logical_id, resource in _of_type(template, "AWS::SQS::QueuePolicy"):
        props = resource["Properties"]
        document = resolve(props["PolicyDocument"], deployed)
        for queue in props["Queues"]:
            out.append((logical_id, resolve(queue, deployed), document))
    return out


def s3_may_send(policy: Mapping[str, Any], queue_arn: str, bucket_arn: str, account: str) -> bool:
    """What S3 checks on a real account when a bucket's notification is written (moto does not):
    the queue's policy allows `s3.amazonaws.com` `sqs:SendMessage` on the queue for this bucket
    and account (aws:SourceArn / aws:SourceAccount conditions, the operators this stack uses)
    and no statement denies it (a TLS-only deny does not apply: S3 sends over TLS)."""
    context = {
        "aws:SourceArn": bucket_arn,
        "aws:SourceAccount": account,
        "aws:SecureTransport": "true",
    }
    allowed = False
    for st in _as_list(policy.get("Statement", [])):
        principal = st.get("Principal", {})
        services = _as_list(principal.get("Service", [])) if isinstance(principal, dict) else []
        everyone = principal == "*" or (
            isinstance(principal, dict) and "*" in _as_list(principal.get("AWS", []))
        )
        if "s3.amazonaws.com" not in services and not everyone:
            continue
        if not any(_action_matches(a, "sqs:SendMessage") for a in _as_list(st.get("Action", []))):
            continue
        if queue_arn not in _as_list(st.get("Resource", [])) and "*" not in _as_list(
            st.get("Resource", [])
        ):
            continue
        if not _conditions_hold(st.get("Condition", {}), context):
            continue
        if st.get("Effect") == "Deny":
            return False
        allowed = allowed or st.get("Effect") == "Allow"
    return allowed


def _action_matches(pattern: str, action: str) -> bool:
    if pattern in ("*", action):
        return True
    return pattern.endswith("*") and action.lower().startswith(pattern[:-1].lower())


def _conditions_hold(conditions: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, pairs in conditions.items():
        for key, expected in pairs.items():
            actual = context.get(key)
            values = [str(v).lower() if operator == "Bool" else v for v in _as_list(expected)]
            if operator in ("ArnEquals", "StringEquals", "ArnLike", "StringLike", "Bool"):
                if actual is None or actual not in values:
                    return False
            else:  # an operator this check does not know: don't claim it holds
                return False
    return True


# ---------------------------------------------------------------------------- helpers


def _of_type(template: Template, type_: str) -> list[tuple[str, dict[str, Any]]]:
    return [(k, r) for k, r in template.get("Resources", {}).items() if r.get("Type") == type_]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


__all__ = [
    "Adaptation",
    "BOOTSTRAP_VERSION",
    "BOOTSTRAP_VERSION_PARAMETER",
    "Deployed",
    "RehearsalError",
    "adapt_for_moto",
    "deployed_from",
    "dropped_bucket_settings",
    "filter_rules",
    "flow_log_at_bucket_root",
    "pseudo_parameters",
    "queue_notification",
    "queue_policies",
    "resolve",
    "s3_may_send",
    "s3_notification_configuration",
    "secret_resources",
    "secrets_made_outside",
    "skipped_resources",
    "unevaluated_rules",
]
