"""Every case under cases/ against every engine: output read back from disk, checked by rule."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conformance import runner

CASES = runner.load_cases()


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(engine, case: runner.Case, tmp_path: Path) -> None:
    spec = runner.materialise(case, tmp_path)
    inputs_before = _tree_digest(tmp_path / "case")
    if case.expects_error:
        try:
            result = engine.run(spec)
        except Exception as exc:  # noqa: BLE001 - the class is what we check
            problems = runner.check_error(exc, case.expected["error"], tmp_path / "case")
        else:
            problems = [
                f"expected {case.expected['error']}, but the run succeeded: {result.manifest.counts}"
            ]
        problems += runner.check_failed_run_folder(spec)
    else:
        result = engine.run(spec)
        out = runner.check_run(result, spec, engine.name)
        problems = runner.compare_expected(out, case.expected)
    if _tree_digest(tmp_path / "case") != inputs_before:
        problems.append("the run modified its input files")
    assert not problems, f"{case.name}:\n  " + "\n  ".join(problems)
