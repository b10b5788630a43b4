"""The packaged CLI (`./pants package libs/diffcore:cli`) as a user starts it: on a base Python
that has none of the project's dependencies.

Spark's Python workers are started as `sys.executable`; in a zipapp PEX that is the bare base
interpreter, and every task died with `No module named 'pyarrow'` while the tests (whose own
interpreter has every dependency) passed. Here the base interpreter is a fresh virtualenv
without packages, checked to lack pyarrow before the PEX runs on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PEX = Path("libs.diffcore/cli.pex")  # where runtime_package_dependencies puts it
SAMPLES = Path("libs/diffcore/samples")


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv of the base interpreter, with no packages (not even pip)."""
    folder = tmp_path_factory.mktemp("bare") / "venv"
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    return folder / "bin" / "python"


def clean_env(pex_root: Path) -> dict[str, str]:
    """Only what a login shell has: no PYTHONPATH, no PEX_* of the test runner; a new PEX_ROOT,
    so the PEX installs its venv from the bare interpreter instead of reusing one."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PEX_ROOT": str(pex_root)}
    for name in ("HOME", "JAVA_HOME", "LANG", "TMPDIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def test_base_interpreter_lacks_the_dependencies(bare_python: Path, tmp_path: Path) -> None:
    for module in ("pyarrow", "pyspark", "polars", "diffcore"):
        probe = subprocess.run(
            [str(bare_python), "-c", f"import {module}"],
            env=clean_env(tmp_path / "pex_root"),
            capture_output=True,
            timeout=60,
        )
        assert probe.returncode != 0, f"{bare_python} imports {module}: the test proves nothing"


@pytest.mark.parametrize("engine", ["spark", "polars"])
def test_packaged_cli_diffs_the_samples(bare_python: Path, tmp_path: Path, engine: str) -> None:
    assert PEX.is_file(), f"{PEX} missing: runtime_package_dependencies should have built it"
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            str(bare_python),
            str(PEX),
            "diff",
            str(SAMPLES / "yesterday"),
            str(SAMPLES / "today"),
            "--key",
            "id",
            "--out",
            str(out),
            "--run-date",
            "2026-11-25",
            "--engine",
            engine,
            "--json",
        ],
        env=clean_env(tmp_path / "pex_root"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "ModuleNotFoundError" not in proc.stderr
    summary = json.loads(proc.stdout)
    counts = {op: summary["counts"][op] for op in ("c", "u", "d", "unchanged")}
    assert counts == {"c": 12, "u": 51, "d": 9, "unchanged": 240}
    assert (out / "2026-11-25" / "_manifest.json").is_file()
