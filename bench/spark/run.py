"""The Spark bench: diffcore's Spark engine vs G-Research spark-extension's diff vs the Polars engine.

    PYTHONPATH=libs/diffcore:. .venv/bin/python -m bench.spark.run --records 1000000 --repeat 3 [--readme]

Data: `bench.common.generate` (seeded, ~400-byte nested records, exact expected counts in
truth.json; reused when already generated). Every tool runs in its own process (a Spark tool
starts its own local[2] JVM), measured by `bench.common.measure` (wall, CPU, peak RSS of the
process tree), round-robin over `--repeat` rounds with the tool order rotated each round. Each
run's counts are checked against truth.json (a run with wrong counts fails the bench).
Reported: median wall time, and the in-process diff time (wall minus Spark session start).
Results go to `bench/spark/results/<date>-<records>.json`; `--readme` writes the table into
bench/spark/README.md between the RESULTS markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import psutil

from bench.common import generate
from bench.common.measure import GB, run_once

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TOOLS = ["spark_engine", "gresearch", "polars_engine"]
WHAT = {
    "spark_engine": "diffcore Spark engine: events with changed paths + event ids, parts + manifest",
    "gresearch": 'spark-extension `df1.diff(df2, "id")` over spark.read.json; counts + changed rows as JSON',
    "polars_engine": "diffcore Polars engine (same output as the Spark engine)",
}
BEGIN, END = "<!-- RESULTS:BEGIN -->", "<!-- RESULTS:END -->"


def machine() -> str:
    mem = psutil.virtual_memory().total / GB
    os_name = (
        "Debian " + Path("/etc/debian_version").read_text().strip()
        if Path("/etc/debian_version").exists()
        else platform.platform()
    )
    return (
        f"{psutil.cpu_count()} cores / {mem:.0f} GB, {os_name}, Python {platform.python_version()}"
    )


def available(tool: str) -> bool:
    if tool == "polars_engine":
        return (REPO / "libs/diffcore/diffcore/engines/polars_engine.py").is_file()
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--work", default="/tmp/bench-spark-out")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--readme", action="store_true")
    a = ap.parse_args(argv)

    ds = generate.ensure(generate.Params(records=a.records))
    tools = [t for t in a.tools.split(",") if t and available(t)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "libs/diffcore"), str(REPO)])}
    runs: dict[str, list[dict]] = {t: [] for t in tools}
    for r in range(a.repeat):
        order = tools[r % len(tools) :] + tools[: r % len(tools)]
        for tool in order:
            cmd = [
                sys.executable,
                "-m",
                "bench.spark.tools",
                tool,
                "--before",
                str(ds.before),
                "--after",
                str(ds.after),
                "--out",
                str(Path(a.work) / tool),
            ]
            res = run_once(cmd, env=env, cwd=str(REPO), timeout=a.timeout, label=f"{tool} #{r + 1}")
            out = {}
            for line in res.stdout.splitlines():
                if line.startswith('{"tool"'):
                    out = json.loads(line)
            counts = {k: out.get(k) for k in ("inserted", "deleted", "updated", "unchanged")}
            ok = res.ok and counts == ds.expected
            if not ok:
                print(
                    f"[bench] {tool}: status {res.status}, counts {counts} != truth {ds.expected}\n{res.stderr[-3000:]}",
                    file=sys.stderr,
                )
            runs[tool].append(
                {
                    "ok": ok,
                    "wall_s": res.wall_s,
                    "cpu_s": res.user_s + res.sys_s,
                    "rss_gb": res.peak_rss_bytes / GB,
                    **out,
                }
            )
            print(
                f"[bench] {tool} #{r + 1}: {res.wall_s:.1f} s wall, diff {out.get('diff_s', 0):.1f} s, counts ok={ok}",
                file=sys.stderr,
            )

    today = dt.date.today().isoformat()
    rows = []
    for tool in tools:
        good = [x for x in runs[tool] if x["ok"]]
        if not good:
            rows.append(f"| {tool} | FAILED | | | | | {WHAT[tool]} |")  # noqa: E501
            continue

        def med(k: str, good: list[dict] = good) -> float:
            return statistics.median(x[k] for x in good)

        per_round = " / ".join(f"{x['wall_s']:.0f}" for x in runs[tool])
        rows.append(
            f"| {tool} | {med('wall_s'):.1f} | {med('diff_s'):.1f} | {per_round} | {med('rss_gb'):.2f} "
            f"| {len(good)}/{len(runs[tool])} | {WHAT[tool]} |"
        )
    table = "\n".join(
        [
            f"{a.records:,} records per side (`bench.common.generate`, seed 42: "
            + ", ".join(f"{k} {v:,}" for k, v in ds.expected.items())
            + f"), {today}, {machine()}, "
            f"median of {a.repeat} (round-robin, each run its own process; counts checked against truth.json).",
            "",
            "| tool | wall s (process) | diff s (wall − session start) | wall s per round | peak RSS GB | runs ok | what it computes |",
            "|---|---:|---:|---:|---:|---|---|",
            *rows,
        ]
    )
    print(table)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / f"{today}-{a.records}.json").write_text(
        json.dumps(
            {
                "date": today,
                "machine": machine(),
                "records": a.records,
                "expected": ds.expected,
                "runs": runs,
            },
            indent=2,
        )
    )
    if a.readme:
        readme = HERE / "README.md"
        text = readme.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            readme.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    return 0 if all(any(x["ok"] for x in runs[t]) for t in tools) else 1


if __name__ == "__main__":
    sys.exit(main())
