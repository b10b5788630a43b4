"""Start-up bench: how long the CLI takes to answer, by the ways a user starts it.

    PYTHONPATH=libs/diffcore:. .venv/bin/python -m bench.startup.run [--repeat 10] [--readme]

Needs `./pants package libs/diffcore:cli` (the PEX) and the dev venv (`.venv`). Rows: `--help`
and the README's main job (the bundled samples, Polars engine) from the dev venv, the packaged
PEX as a user runs it (its shebang, `python3.11` on PATH), the PEX on the interpreter that
`python3.11` resolves to (a pyenv shim on PATH costs ~0.2 s by itself), and `./pants run` (with
pantsd warm). Warm: the median of `--repeat` runs after one unmeasured run. Cold: the PEX's first
run with an empty PEX_ROOT (it installs its virtualenv), once.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEX = REPO / "dist/libs.diffcore/cli.pex"
VENV_PYTHON = REPO / ".venv/bin/python"
SAMPLES = REPO / "libs/diffcore/samples"
README = REPO / "bench/README.md"
BEGIN, END = "<!-- startup-table:begin -->", "<!-- startup-table:end -->"


@dataclass(frozen=True)
class Case:
    label: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


def main_job(out: str) -> tuple[str, ...]:
    """The README's main command's arguments (after the program)."""
    return (
        "diff",
        str(SAMPLES / "yesterday"),
        str(SAMPLES / "today"),
        "--key",
        "id",
        "--out",
        out,
        "--run-date",
        "2026-11-25",
        "--quiet",
    )


def real_python311() -> str | None:
    """The interpreter `python3.11` on PATH really is (through a pyenv shim, if any)."""
    if shutil.which("python3.11") is None:
        return None
    proc = subprocess.run(
        ["python3.11", "-c", "import sys; print(sys.executable)"], capture_output=True, text=True
    )
    return proc.stdout.strip() or None


def cases(out: str) -> list[Case]:
    python = real_python311()
    on_path = shutil.which("python3.11") or "python3.11"
    shim = python is not None and os.path.realpath(on_path) != os.path.realpath(python)
    rows: list[Case] = []
    for what, args in (("--help", ("--help",)), ("main job", main_job(out))):
        rows.append(
            Case(
                f"dev venv: python -m diffcore {what}",
                (str(VENV_PYTHON), "-m", "diffcore", *args),
                (("PYTHONPATH", f"{REPO}/libs/diffcore"),),
            )
        )
        rows.append(
            Case(
                f"cli.pex {what}" + (" (python3.11 = pyenv shim)" if shim else ""),
                (str(PEX), *args),
            )
        )
        if shim and python:
            label = f"python3.11 (the interpreter, no shim) cli.pex {what}"
            rows.append(Case(label, (python, str(PEX), *args)))
        rows.append(
            Case(
                f"./pants run libs/diffcore:cli -- {what}",
                ("./pants", "run", "libs/diffcore:cli", "--", *args),
            )
        )
    return rows


def timed(argv: Sequence[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(list(argv), cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return elapsed


def cold_pex_first_run() -> float:
    """The PEX's very first run (`--help`): it installs its virtualenv into an empty PEX_ROOT."""
    with tempfile.TemporaryDirectory(prefix="pex-root-") as root:
        return timed((str(PEX), "--help"), {**os.environ, "PEX_ROOT": root})


def render(rows: list[tuple[str, float, float]], cold: float, repeat: int) -> str:
    load = os.getloadavg()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {stamp} on {platform.node()} ({os.cpu_count()} cores, Linux "
        f"{platform.release()}, Python {platform.python_version()}), load average "
        f"{load[0]:.2f}; warm = median (min) of {repeat} runs after one unmeasured run.",
        "",
        "| command | warm median | warm min |",
        "|---|---:|---:|",
    ]
    lines += [f"| `{label}` | {med:.2f} s | {low:.2f} s |" for label, med, low in rows]
    lines += [
        "",
        f"Cold: the PEX's first run with an empty `PEX_ROOT` (installs its venv): {cold:.1f} s.",
    ]
    return "\n".join(lines)


def put_into_readme(table: str) -> None:
    text = README.read_text()
    if BEGIN not in text:
        text = text.rstrip() + f"\n\n## Start-up (the CLI)\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--readme", action="store_true", help="put the table into bench/README.md")
    args = ap.parse_args(argv)
    for need in (PEX, VENV_PYTHON):
        if not need.exists():
            raise SystemExit(f"{need} missing: see this module's docstring")
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="startup-out-") as out:
        for case in cases(out):
            env = {**os.environ, **dict(case.env)}
            timed(case.argv, env)  # warm-up: caches, pyc files, the PEX's venv, pantsd
            times = [timed(case.argv, env) for _ in range(args.repeat)]
            rows.append((case.label, statistics.median(times), min(times)))
            print(f"{case.label:70} {rows[-1][1]:6.2f} s", file=sys.stderr, flush=True)
    cold = cold_pex_first_run()
    table = render(rows, cold, args.repeat)
    print(table)
    if args.readme:
        put_into_readme(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
