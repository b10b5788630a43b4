"""The publisher PEX is built for the Fargate task's platform (CPython 3.11, manylinux, x86_64:
`apps/kafka_publisher/fargate-linux-x86_64-cp311.json` through Pants' `complete_platforms`),
whatever the build machine: every wheel inside is pure Python or for that platform. Runs
without an OCI builder (the image test needs buildah and podman)."""

from __future__ import annotations

import json
import re
import zipfile

from tests.image.publisher_image_test import _pex

# name-version(-build)?-python-abi-platform.whl
_WHEEL = re.compile(
    r"^(?P<name>[^-]+)-[^-]+(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>.+)\.whl$"
)


def test_every_wheel_in_the_publisher_pex_runs_on_fargate() -> None:
    with zipfile.ZipFile(_pex()) as pex:
        info = json.loads(pex.read("PEX-INFO"))
    wheels = sorted(info["distributions"])
    assert any(w.startswith("confluent_kafka-") for w in wheels)  # the native one that matters
    for wheel in wheels:
        match = _WHEEL.match(wheel)
        assert match, wheel
        if match["plat"] == "any":
            continue  # pure Python
        tags = match["plat"].split(".")
        assert all(re.fullmatch(r"manylinux(1|2010|2014|_2_\d+)_x86_64", t) for t in tags), wheel
        assert match["py"] in ("cp311", "cp37", "cp38", "cp39", "cp310") and match["abi"] in (
            "cp311",
            "abi3",
        ), wheel
        # glibc no newer than the image's (Debian 12: 2.36)
        for t in tags:
            glibc = re.match(r"manylinux_2_(\d+)_", t)
            assert glibc is None or int(glibc[1]) <= 36, wheel
