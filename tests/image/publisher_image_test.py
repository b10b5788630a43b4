"""The publisher's container image, built and run with the OCI tools from Debian's packages
(buildah, podman): the context the CDK app stages for `ContainerImage.from_asset` (the Dockerfile
plus the Fargate PEX, `publish_stage.stage_docker_context`), built, then run as ECS runs it
(read-only root filesystem, a scratch /tmp, PEX_ROOT=/tmp/pex) against a Tansu broker on the
host's loopback: every event of the day reaches the topic.

What these machines need (see apps/kafka_publisher/README.md, "Image"): Docker Hub is
unreachable, so the Dockerfile's `FROM python:3.11-slim-bookworm` is replaced (`--from`) by a
Debian 12 base with python3.11 made by `tools/oci-base-image` (debootstrap); crun refuses the
host's hybrid cgroups, so runc runs the containers; the default RLIMIT_NOFILE/NPROC exceed the
hard limits, so the process' own limits are passed.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from pathlib import Path

import pytest

from diffcore import layout
from pipeline_infra.publish_stage import stage_docker_context
from tests.support.diffs import make_events, write_day
from tests.support.services import consume_all, create_topics, tansu_broker

REPO = Path(__file__).resolve().parents[2]
PATH = os.environ.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = {
    name: shutil.which(name, path=f"{PATH}:/usr/sbin:/usr/bin") for name in ("buildah", "podman")
}
RUNC = shutil.which("runc", path=f"{PATH}:/usr/sbin:/usr/bin")
TAG = f"localhost/diffs-pipeline/kafka-publisher:test-{os.getpid()}"
RUN_DATE = "2026-11-25"

pytestmark = pytest.mark.skipif(
    not all(TOOLS.values()),
    reason="buildah/podman not installed (apt-get install -y buildah podman runc debootstrap)",
)


def _limits() -> list[str]:
    """Limits the runtime may set: the OCI defaults (1048576 open files) exceed this process'
    hard limit (setrlimit: Operation not permitted), and runc is refused an nproc limit of
    65536 here (4096 is accepted): at most the hard limit, and nproc at most 4096."""
    out = []
    for name, which, cap in (
        ("nofile", resource.RLIMIT_NOFILE, 1 << 20),
        ("nproc", resource.RLIMIT_NPROC, 4096),
    ):
        hard = resource.getrlimit(which)[1]
        value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        out += ["--ulimit", f"{name}={value}:{value}"]
    return out


def _runtime() -> list[str]:
    return ["--runtime", RUNC] if RUNC else []


def _run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PATH": f"{PATH}:/usr/sbin:/usr/bin"},
    )


def _pex() -> Path:
    """The Fargate PEX: Pants puts it at the sandbox's root (runtime_package_dependencies);
    outside Pants, `./pants package apps/kafka_publisher` writes it under dist/."""
    for folder in (Path.cwd(), REPO / "dist"):
        pex = folder / "apps.kafka_publisher" / "kafka_publisher.pex"
        if pex.is_file():
            return pex
    pytest.fail("no publisher PEX: run `./pants package apps/kafka_publisher` first")


def test_publisher_image_builds_and_publishes_a_day(tmp_path: Path) -> None:
    context = stage_docker_context(
        REPO / "apps" / "kafka_publisher" / "Dockerfile", _pex(), tmp_path
    )
    base = _run([str(REPO / "tools" / "oci-base-image")])
    assert base.returncode == 0, base.stderr[-3000:]
    build = _run(
        [TOOLS["buildah"], "bud", *_runtime(), *_limits(), "--from", base.stdout.strip()]
        + ["-t", TAG, str(context)]
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    try:
        diffs = tmp_path / "diffs"
        manifest = write_day(str(diffs), RUN_DATE, make_events(RUN_DATE, 500), records_per_file=200)
        for folder, dirs, files in os.walk(diffs):  # the image's user 10001 reads and checkpoints
            for name in [*dirs, *files]:
                os.chmod(os.path.join(folder, name), 0o777)
        diffs.chmod(0o777)
        with tansu_broker() as bootstrap:
            create_topics(bootstrap, {"changes": 2})
            run = _run(
                [TOOLS["podman"], *_runtime(), "run", "--rm", "--network", "host", *_limits()]
                + ["--read-only", "--tmpfs", "/tmp", "-e", "PEX_ROOT=/tmp/pex", "-e", "TMPDIR=/tmp"]
                + ["-v", f"{diffs}:/data", "-e", "DIFFS_LOCATION=/data"]
                + ["-e", f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}", "-e", "KAFKA_TOPIC=changes"]
                + [TAG, "--run-date", RUN_DATE],
                timeout=300,
            )
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
            messages = consume_all(bootstrap, "changes", expected=500)
        assert len(messages) == 500
        assert {dict(m.headers())["run_date"] for m in messages} == {RUN_DATE.encode()}
        checkpoints = sorted(p.name for p in (diffs / layout.PUBLISHED_PREFIX / RUN_DATE).iterdir())
        assert checkpoints == sorted(f"{f.name}.json" for f in manifest.files)
        # The MSK IAM signer (KAFKA_AUTH=iam) is in the image's PEX, for the image's Python.
        signer = _run(
            [TOOLS["podman"], *_runtime(), "run", "--rm", "--network", "none", *_limits()]
            + [
                "--read-only",
                "--tmpfs",
                "/tmp",
                "-e",
                "PEX_ROOT=/tmp/pex",
                "-e",
                "PEX_INTERPRETER=1",
            ]
            + [TAG, "-c", "import aws_msk_iam_sasl_signer, confluent_kafka; print('ok')"],
            timeout=300,
        )
        assert (signer.returncode, signer.stdout.strip()) == (0, "ok"), signer.stderr[-3000:]
    finally:
        _run([TOOLS["podman"], "rmi", "--force", TAG], timeout=120)
