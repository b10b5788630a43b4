"""Publish stage: the Fargate task that sends `<diffs>/<D>/` to Kafka, scheduled daily.

* Network: a created VPC (2 AZs, public subnets, no NAT gateway, a free S3 gateway endpoint, flow
  logs to the log bucket; the task gets a public IP and a security group with no ingress) or, with
  `nat_gateways` 1-2, private subnets behind NAT; or an imported VPC (`vpc_id`, looked up: needs
  credentials and an account/region) with `subnet_ids` or its private subnets. See README.
* Security group: no ingress; egress only to 443 (AWS APIs: S3, ECR, Secrets Manager, CloudWatch
  Logs) and to the Kafka ports (`kafka_ports`) of `kafka_broker_cidr`.
* Task role: reads the diffs bucket, writes only `_published/*` (the publisher's checkpoints),
  nothing else. The Kafka credentials are ECS secrets (`KAFKA_USERNAME` / `KAFKA_PASSWORD` from the
  secret's JSON fields `username` / `password`), resolved by ECS with the *execution* role, which
  may read that one secret: the container never holds an AWS permission on any secret.
* Schedule: EventBridge Scheduler at `publisher_time` in `timezone`, ECS RunTask target (Fargate,
  awsvpc), retries and the scheduler's dead-letter queue. The publisher finds its run date itself
  (today in TIMEZONE) unless RUN_DATE is set (backfills: `aws ecs run-task --overrides`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, RemovalPolicy, Stack, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from diffcore.layout import PUBLISHED_PREFIX
from pipeline_infra.config import SCHEDULER_MAX_EVENT_AGE_SECONDS, ConfigError, PipelineConfig
from pipeline_infra.diff_stage import role_policy, staging_dir
from pipeline_infra.msk_access import container_environment, task_role_statements
from pipeline_infra.storage import FLOW_LOG_PREFIX, Storage

CONTAINER_NAME = "publisher"
# The non-root user of apps/kafka_publisher/Dockerfile (USER 10001:10001), stated again in the
# task definition so the task never runs as root whatever image it is given.
PUBLISHER_USER = "10001:10001"
# The task's one writable path (read-only root filesystem): a scratch volume on /tmp.
SCRATCH_VOLUME = "scratch"
SCRATCH_PATH = "/tmp"
ISOLATED_NETWORK_WARNING = "diffs-pipeline:isolated-task-network"
AWS_API_PORT = 443


class PublishStage(Construct):
    """Attributes: vpc, subnets, security_group, cluster, task_definition, container, task_role,
    execution_role, secret, log_group, schedule, family."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        storage: Storage,
        key: kms.IKey,
        scheduler_role: iam.Role,
        scheduler_dlq: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.family = f"{config.name_prefix}-publisher"

        self.endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}  # created VPC only
        self.vpc, self.subnets = self._network(storage)
        self.security_group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="Kafka publisher task: no ingress; egress to AWS APIs and the brokers",
        )
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(),
            ec2.Port.tcp(AWS_API_PORT),
            "HTTPS to AWS APIs (S3, ECR, Secrets Manager, CloudWatch Logs)",
        )
        for port in config.kafka_ports:
            self.security_group.add_egress_rule(
                ec2.Peer.ipv4(config.kafka_broker_cidr),
                ec2.Port.tcp(port),
                f"Kafka brokers, port {port}",
            )
        if config.kafka_broker_security_group_id:
            self._broker_security_group(config)

        if config.creates_vpc:
            self.endpoints = self._interface_endpoints(self.vpc)  # type: ignore[arg-type]
            if not (config.nat_gateways or config.public_ip):
                # Said at synth: the default network reaches AWS only (endpoints), no broker.
                Annotations.of(self).add_warning_v2(
                    ISOLATED_NETWORK_WARNING,
                    "the created VPC has private isolated subnets (no NAT, no public IP): the "
                    "task reaches AWS through VPC endpoints only, and the Kafka brokers at "
                    f"{config.kafka_broker_cidr} only through routes you add (peering, transit "
                    "gateway). Brokers on the internet: -c nat_gateways=1 or "
                    "-c assign_public_ip=true; brokers in your VPC: -c vpc_id=...",
                )

        if config.cluster_name:
            self.cluster: ecs.ICluster = ecs.Cluster.from_cluster_attributes(
                self,
                "Cluster",
                cluster_name=config.cluster_name,
                vpc=self.vpc,
                security_groups=[],
            )
        else:
            self.cluster = ecs.Cluster(
                self,
                "Cluster",
                vpc=self.vpc,
                container_insights_v2=ecs.ContainerInsights.ENABLED,
            )

        self.secret: secretsmanager.ISecret | None = None
        if not config.uses_sasl:
            pass  # no credentials: PLAINTEXT / SSL brokers
        elif config.kafka_secret_arn:
            self.secret = secretsmanager.Secret.from_secret_complete_arn(
                self, "KafkaSecret", config.kafka_secret_arn
            )
        else:
            self.secret = secretsmanager.Secret(
                self,
                "KafkaSecret",
                description="Kafka SASL credentials of the diffs publisher: JSON with 'username' "
                "and 'password' (replace the generated values with the real ones)",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    secret_string_template='{"username": "diffs-publisher"}',
                    generate_string_key="password",
                    exclude_punctuation=True,
                ),
                # The stack's key (not aws/secretsmanager): its policy is the stack's to keep
                # tight. Retained: the real credentials put in it outlive a stack deletion.
                encryption_key=key,
                removal_policy=RemovalPolicy.RETAIN,
            )

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            retention=retention_days(config.log_retention_days),
            encryption_key=key,
        )

        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="Kafka publisher: reads the diffs bucket, writes only its checkpoints",
        )
        self.task_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadDiffs",
                actions=["s3:GetObject"],
                resources=[f"{storage.diffs_bucket_arn}/*"],
            )
        )
        self.task_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ListDiffs",
                actions=["s3:ListBucket"],
                resources=[storage.diffs_bucket_arn],
            )
        )
        self.task_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteCheckpoints",
                actions=["s3:PutObject"],
                resources=[f"{storage.diffs_bucket_arn}/{PUBLISHED_PREFIX}/*"],
            )
        )
        for statement in task_role_statements(config):  # kafka_auth=iam only
            self.task_role.add_to_principal_policy(statement)

        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            family=self.family,
            cpu=config.publisher_cpu,
            memory_limit_mib=config.publisher_memory_mib,
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
                cpu_architecture=ecs.CpuArchitecture.X86_64,
            ),
        )
        self.container = self.task_definition.add_container(
            "Publisher",
            container_name=CONTAINER_NAME,
            image=self._image(),
            essential=True,
            # Nothing in the image is writable; the publisher runs as the Dockerfile's user.
            readonly_root_filesystem=True,
            user=PUBLISHER_USER,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="publisher", log_group=self.log_group),
            environment={
                # The only writable place: the task's scratch volume (the verified spool copies,
                # tempfile's TMPDIR; the PEX unpacks itself under PEX_ROOT at start).
                "TMPDIR": SCRATCH_PATH,
                "PEX_ROOT": f"{SCRATCH_PATH}/pex",
                "DIFFS_LOCATION": storage.diffs_location,
                "KAFKA_BOOTSTRAP_SERVERS": config.kafka_bootstrap_servers,
                "KAFKA_TOPIC": config.kafka_topic,
                "KAFKA_SECURITY_PROTOCOL": config.kafka_security_protocol,
                "KAFKA_SASL_MECHANISM": config.kafka_sasl_mechanism,
                "TIMEZONE": config.timezone,
                "PUBLISH_WORKERS": str(config.publisher_workers),
                "ACCEPT_UNREADABLE_KEYS": str(config.publisher_accept_unreadable_keys).lower(),
                **container_environment(config),
            },
            secrets=(
                {
                    "KAFKA_USERNAME": ecs.Secret.from_secrets_manager(self.secret, "username"),
                    "KAFKA_PASSWORD": ecs.Secret.from_secrets_manager(self.secret, "password"),
                }
                if self.secret is not None
                else None
            ),
        )
        # Fargate ephemeral storage (a bind mount, emptied when the task stops). ECS copies the
        # image's /tmp (mode 1777, the Dockerfile's VOLUME) into it, so user 10001 may write.
        self.task_definition.add_volume(name=SCRATCH_VOLUME)
        self.container.add_mount_points(
            ecs.MountPoint(
                container_path=SCRATCH_PATH, source_volume=SCRATCH_VOLUME, read_only=False
            )
        )
        self.execution_role = self.task_definition.obtain_execution_role()
        if config.kafka_secret_kms_key_arn:
            # ECS reads the imported secret with the execution role: decrypting needs its key.
            self.execution_role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="DecryptKafkaSecret",
                    actions=["kms:Decrypt"],
                    resources=[config.kafka_secret_kms_key_arn],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": f"secretsmanager.{Stack.of(self).region}.amazonaws.com"
                        }
                    },
                )
            )

        # ---- schedule ----------------------------------------------------------------------
        self.grant_run_task(scheduler_role)
        self.schedule = scheduler.CfnSchedule(
            self,
            "Schedule",
            description=f"Daily Kafka publish at {config.publisher_time} {config.timezone}",
            schedule_expression=config.cron(config.publisher_time),
            schedule_expression_timezone=config.timezone,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self.cluster.cluster_arn,
                role_arn=scheduler_role.role_arn,
                ecs_parameters=scheduler.CfnSchedule.EcsParametersProperty(
                    task_definition_arn=self.task_definition.task_definition_arn,
                    task_count=1,
                    launch_type="FARGATE",
                    platform_version="LATEST",
                    network_configuration=scheduler.CfnSchedule.NetworkConfigurationProperty(
                        awsvpc_configuration=scheduler.CfnSchedule.AwsVpcConfigurationProperty(
                            **self.task_network(config)
                        )
                    ),
                ),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_retry_attempts=config.schedule_retry_attempts,
                    maximum_event_age_in_seconds=SCHEDULER_MAX_EVENT_AGE_SECONDS,
                ),
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                    arn=scheduler_dlq.queue_arn
                ),
            ),
        )
        # The role is ordered by its GetAtt already; its policy (RunTask, PassRole) is not.
        self.schedule.node.add_dependency(role_policy(scheduler_role))

    def grant_run_task(self, role: iam.Role) -> None:
        """What a trigger's role needs to start the publisher task (the 02:00 schedule, the
        chained rule): RunTask of this task definition in this cluster, and passing its two
        roles to ECS tasks only."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="RunPublisherTask",
                actions=["ecs:RunTask"],
                resources=[self.task_definition.task_definition_arn],
                conditions={"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}},
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PassPublisherRoles",
                actions=["iam:PassRole"],
                resources=[self.task_role.role_arn, self.execution_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            )
        )

    def task_network(self, config: PipelineConfig) -> dict[str, Any]:
        """The task's awsvpc settings, the same for every trigger (the 02:00 schedule and the
        chained rule): subnets, security group, a public IP only when asked."""
        return {
            "subnets": [s.subnet_id for s in self.subnets],
            "security_groups": [self.security_group.security_group_id],
            "assign_public_ip": "ENABLED" if config.public_ip else "DISABLED",
        }

    @property
    def task_definition_arn_prefix(self) -> str:
        """`arn:...:task-definition/<family>:` - matches every revision (EventBridge prefix)."""
        stack = Stack.of(self)
        return (
            f"arn:{stack.partition}:ecs:{stack.region}:{stack.account}:"
            f"task-definition/{self.family}:"
        )

    # ---- helpers ----------------------------------------------------------------------------
    def _broker_security_group(self, config: PipelineConfig) -> None:
        """The brokers' security group lets the task in on the Kafka ports, and the task may
        reach it (an AWS::EC2::SecurityGroupIngress in this stack; the group is not changed
        otherwise)."""
        brokers = ec2.SecurityGroup.from_security_group_id(
            self, "BrokerSecurityGroup", config.kafka_broker_security_group_id, mutable=True
        )
        for port in config.kafka_ports:
            self.security_group.add_egress_rule(
                brokers, ec2.Port.tcp(port), f"Kafka brokers' security group, port {port}"
            )
            brokers.add_ingress_rule(
                self.security_group, ec2.Port.tcp(port), f"diffs publisher task, port {port}"
            )

    def _network(self, storage: Storage) -> tuple[ec2.IVpc, list[ec2.ISubnet]]:
        config = self.config
        if config.creates_vpc:
            # Private subnets always (isolated without NAT: AWS only through the endpoints);
            # public subnets only for a NAT gateway or a task that asked for a public IP.
            private_type = (
                ec2.SubnetType.PRIVATE_WITH_EGRESS
                if config.nat_gateways
                else ec2.SubnetType.PRIVATE_ISOLATED
            )
            subnet_configuration = [
                ec2.SubnetConfiguration(name="private", subnet_type=private_type, cidr_mask=24)
            ]
            if config.nat_gateways or config.public_ip:
                subnet_configuration.append(
                    ec2.SubnetConfiguration(
                        name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                    )
                )
            vpc = ec2.Vpc(
                self,
                "Vpc",
                ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
                max_azs=2,
                nat_gateways=config.nat_gateways,
                subnet_configuration=subnet_configuration,
                restrict_default_security_group=False,
                gateway_endpoints={
                    "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
                },
                flow_logs={
                    "FlowLogs": ec2.FlowLogOptions(
                        destination=ec2.FlowLogDestination.to_s3(
                            storage.log_bucket, f"{FLOW_LOG_PREFIX}/"
                        ),
                        traffic_type=ec2.FlowLogTrafficType.ALL,
                    )
                },
            )
            subnet_type = ec2.SubnetType.PUBLIC if config.public_ip else private_type
            return vpc, list(vpc.select_subnets(subnet_type=subnet_type).subnets)

        stack = Stack.of(self)
        if Token.is_unresolved(stack.account) or Token.is_unresolved(stack.region):
            raise ConfigError(
                "vpc_id needs a stack with a concrete account and region (a VPC lookup): run "
                "the CDK CLI with credentials, or set CDK_DEFAULT_ACCOUNT and CDK_DEFAULT_REGION"
            )
        vpc = ec2.Vpc.from_lookup(self, "Vpc", vpc_id=config.vpc_id)
        if config.subnet_ids:
            subnets = [
                ec2.Subnet.from_subnet_id(self, f"Subnet{i}", subnet_id)
                for i, subnet_id in enumerate(config.subnet_ids)
            ]
        else:
            subnet_type = (
                ec2.SubnetType.PUBLIC if config.public_ip else ec2.SubnetType.PRIVATE_WITH_EGRESS
            )
            subnets = list(vpc.select_subnets(subnet_type=subnet_type).subnets)
        return vpc, subnets

    def _interface_endpoints(self, vpc: ec2.Vpc) -> dict[str, ec2.InterfaceVpcEndpoint]:
        """What the task reaches without NAT or a public IP: the image (ECR API, ECR registry;
        the layers come from S3 through the gateway endpoint), its logs, and its secret. Each
        endpoint: private DNS, in the private subnets, 443 open to the task's security group only.
        """
        services = {
            "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
            "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
            "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
        }
        if self.config.uses_sasl:
            services["SecretsManager"] = ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER
        private = ec2.SubnetSelection(
            subnet_type=(
                ec2.SubnetType.PRIVATE_WITH_EGRESS
                if self.config.nat_gateways
                else ec2.SubnetType.PRIVATE_ISOLATED
            )
        )
        endpoint_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=vpc,
            allow_all_outbound=False,
            description="VPC interface endpoints: HTTPS from the publisher task only",
        )
        endpoint_group.add_ingress_rule(
            self.security_group, ec2.Port.tcp(AWS_API_PORT), "HTTPS from the publisher task"
        )
        return {
            name: vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=private,
                private_dns_enabled=True,
                security_groups=[endpoint_group],
                open=False,
            )
            for name, service in services.items()
        }

    def _image(self) -> ecs.ContainerImage:
        config = self.config
        ecr_image = config.ecr_image
        if ecr_image:
            stack = Stack.of(self)
            repository = ecr.Repository.from_repository_attributes(
                self,
                "PublisherRepository",
                repository_name=ecr_image.repository,
                repository_arn=(
                    f"arn:{stack.partition}:ecr:{ecr_image.region}:"
                    f"{ecr_image.account}:repository/{ecr_image.repository}"
                ),
            )
            return ecs.ContainerImage.from_ecr_repository(repository, ecr_image.tag_or_digest)
        if config.publisher_image_uri:
            return ecs.ContainerImage.from_registry(config.publisher_image_uri)
        dockerfile = config.resolve(config.publisher_dockerfile)
        if not dockerfile.is_file():
            raise ConfigError(
                f"publisher_dockerfile: {dockerfile} does not exist; pass "
                "-c publisher_image_uri=<image> to use an existing image instead"
            )
        pex = config.resolve(config.publisher_pex_path)
        if not pex.is_file():
            Annotations.of(self).add_warning_v2(
                "diffs-pipeline:no-publisher-pex",
                f"publisher_pex_path: {pex} is missing: build it (./pants package "
                "apps/kafka_publisher) before `cdk deploy`, or the image build fails at COPY",
            )
        context = stage_docker_context(dockerfile, pex if pex.is_file() else None, staging_dir())
        return ecs.ContainerImage.from_asset(str(context), platform=ecr_assets.Platform.LINUX_AMD64)


def stage_docker_context(dockerfile: Path, pex: Path | None, out_dir: Path) -> Path:
    """The publisher's Docker build context, laid out as Pants lays out its own: the Dockerfile at
    the root and the PEX at `<dist folder>/<name>.pex` (apps.kafka_publisher/kafka_publisher.pex),
    the path the Dockerfile COPYs. Staged by content hash, so the asset hash is stable."""
    digest = hashlib.sha256(dockerfile.read_bytes())
    files = {"Dockerfile": dockerfile}
    if pex is not None:
        relative = f"{pex.parent.name}/{pex.name}"
        files[relative] = pex
        digest.update(relative.encode())
        with pex.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    target = out_dir / f"publisher-context-{digest.hexdigest()[:16]}"
    if not target.exists():
        partial = out_dir / f"{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        for relative, source in files.items():
            (partial / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, partial / relative)
        try:
            partial.rename(target)
        except OSError:  # staged concurrently by another process: same content
            shutil.rmtree(partial, ignore_errors=True)
    return target


_RETENTION_NAMES = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}


def retention_days(days: int) -> logs.RetentionDays:
    """CloudWatch Logs retention for a number of days (config.py validates the number)."""
    return logs.RetentionDays[_RETENTION_NAMES[days]]
