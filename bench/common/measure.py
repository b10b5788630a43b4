"""Run a command and measure its wall time and peak memory (RSS) over its whole process tree.

The command is started through `bench.common.launch` (a ~10 MB stdlib-only launcher) that
spawns it, reaps it with `os.wait4` and reports its exact rusage and wall time.

Peak RSS, two measurements, the larger is reported:

* `tree`: psutil samples, every `interval` (20 ms), the RSS of the command and of all its
  descendants (the launcher excluded), summed; the peak of that sum. It sees a tool that forks
  workers (their memory adds up), but can miss a spike shorter than the interval.
* `kernel`: `ru_maxrss` of the command from `os.wait4` in the launcher: the kernel's exact
  high-water mark of the largest single process of the command's subtree (Linux reports
  max(own, reaped children)). It never misses a spike but does not add up concurrent
  processes.

Not `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` of the bench itself: that is the largest
child ever waited for by the bench, across every run so far, not one run's peak. And not
`wait4` of a child spawned straight from the bench: Linux carries the RSS high-water mark
across fork + exec, so every tool would report at least the bench's own RSS (hence the
launcher; see bench/common/launch.py).

Wall time is the launcher's (spawn to reap of the command; the launcher's own ~30 ms start-up
is not counted).

Shared pages (the interpreter, libraries) are counted once per process in the tree sum, so a
tree of several Python processes is slightly over-counted; every tool here is one process
(with threads), for which both measures agree to within the sampling.

A run can be limited: `timeout` (seconds) and `mem_limit` (bytes of tree RSS); when exceeded
the process group is killed and the run is reported as `timeout` or `oom` (also `oom` when the
kernel's OOM killer sends SIGKILL). Progress goes to stderr: one line when a run starts, a
ticker every few seconds for long runs, and one line with the result.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

GB = 1024**3  # bytes per GiB: RSS is reported in GiB (what ps and free show)


@dataclass
class RunResult:
    status: str  # "ok", "failed" (exit code != 0), "timeout", "oom"
    wall_s: float
    peak_rss_bytes: int
    peak_rss_tree_bytes: int
    peak_rss_kernel_bytes: int
    user_s: float
    sys_s: float
    returncode: int | None
    stdout: str = field(repr=False, default="")
    stderr: str = field(repr=False, default="")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """The measurements, without the command's output."""
        return {k: v for k, v in asdict(self).items() if k not in ("stdout", "stderr")}


def _tree_rss(proc: psutil.Process) -> int:
    """Summed RSS of the descendants of `proc` (the launcher, not counted itself)."""
    total = 0
    try:
        procs = proc.children(recursive=True)
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_once(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    mem_limit: int | None = None,
    interval: float = 0.02,
    label: str = "",
    log: IO[str] = sys.stderr,
    tick: float = 10.0,
) -> RunResult:
    """Run `cmd` once; stdout/stderr are captured to temporary files (no pipe back-pressure)."""
    import json
    import tempfile

    fd, report = tempfile.mkstemp(prefix="bench-rusage-", suffix=".json")
    os.close(fd)
    launcher = [sys.executable, str(Path(__file__).with_name("launch.py")), report, "--"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        popen = subprocess.Popen(
            [*launcher, *cmd],
            stdout=out,
            stderr=err,
            env=dict(env) if env else None,
            cwd=cwd,
            start_new_session=True,  # its own process group: a kill takes the whole tree
        )
        ps = psutil.Process(popen.pid)
        peak_tree = 0
        next_tick = t0 + tick
        killed_for: str | None = None
        while True:
            pid, wstatus, ru = os.wait4(popen.pid, os.WNOHANG)
            now = time.perf_counter()
            if pid:
                break
            rss = _tree_rss(ps)
            peak_tree = max(peak_tree, rss)
            if killed_for is None:
                if timeout and now - t0 > timeout:
                    killed_for = "timeout"
                elif mem_limit and rss > mem_limit:
                    killed_for = "oom"
                if killed_for:
                    try:
                        os.killpg(popen.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            if label and now >= next_tick:
                print(
                    f"    {label}: {now - t0:,.0f} s, RSS {rss / GB:.2f} GiB (peak "
                    f"{peak_tree / GB:.2f} GiB)",
                    file=log,
                    flush=True,
                )
                next_tick += tick
            time.sleep(interval)
        wall = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(wstatus)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    try:
        rep = json.loads(Path(report).read_text() or "null")
    except (OSError, ValueError):
        rep = None
    finally:
        Path(report).unlink(missing_ok=True)
    if rep:  # the command's own numbers, from the launcher
        rc, wall = rep["exit"], rep["wall_s"]
        kernel, user, sys_ = rep["maxrss_kb"] * 1024, rep["user_s"], rep["sys_s"]
    else:  # the launcher was killed (timeout, memory limit): only the sampled tree is known
        # (the launcher's own ru_maxrss would include the bench's RSS, see above)
        kernel, user, sys_ = 0, ru.ru_utime, ru.ru_stime
    if killed_for:
        status = killed_for
    elif rc == -signal.SIGKILL:
        status = "oom"  # killed by the kernel's OOM killer (we did not kill it)
    elif "MemoryError" in stderr[-500:]:
        status = "oom"
    elif rc != 0:
        status = "failed"
    else:
        status = "ok"
    return RunResult(
        status=status,
        wall_s=wall,
        peak_rss_bytes=max(peak_tree, kernel),
        peak_rss_tree_bytes=peak_tree,
        peak_rss_kernel_bytes=kernel,
        user_s=user,
        sys_s=sys_,
        returncode=rc,
        stdout=stdout,
        stderr=stderr,
    )


@dataclass
class Summary:
    """The median of the successful runs of one command (all runs kept)."""

    runs: list[RunResult]

    @property
    def ok_runs(self) -> list[RunResult]:
        return [r for r in self.runs if r.ok]

    @property
    def status(self) -> str:
        if self.ok_runs:
            return "ok"
        return self.runs[-1].status if self.runs else "skipped"

    @property
    def wall_s(self) -> float | None:
        ok = self.ok_runs
        return statistics.median(r.wall_s for r in ok) if ok else None

    @property
    def peak_rss_bytes(self) -> int | None:
        ok = self.ok_runs
        return int(statistics.median(r.peak_rss_bytes for r in ok)) if ok else None

    @property
    def cpu_s(self) -> float | None:
        ok = self.ok_runs
        return statistics.median(r.user_s + r.sys_s for r in ok) if ok else None


def describe(r: RunResult) -> str:
    if r.status in ("timeout", "oom") and not r.peak_rss_kernel_bytes:  # killed by us
        return (
            f"{r.status.upper()}: killed after {r.wall_s:.2f} s wall, process tree at "
            f"{r.peak_rss_tree_bytes / GB:.2f} GiB"
        )
    cpu = r.user_s + r.sys_s
    s = (
        f"{r.wall_s:7.2f} s wall, {cpu:7.2f} s cpu ({cpu / r.wall_s if r.wall_s else 0:.1f} cores), "
        f"peak RSS {r.peak_rss_bytes / GB:.2f} GiB"
    )
    return s if r.ok else f"{r.status.upper()} (exit {r.returncode}) after {s}"


def measure(
    cmd: Sequence[str],
    repeat: int = 3,
    *,
    label: str = "",
    log: IO[str] = sys.stderr,
    **kw: Any,
) -> Summary:
    """Run `cmd` `repeat` times (stopping after a timeout/oom) and return all runs."""
    runs = []
    for i in range(repeat):
        print(f"  {label} run {i + 1}/{repeat} ...", file=log, flush=True)
        r = run_once(cmd, label=label, log=log, **kw)
        print(f"  {label} run {i + 1}/{repeat}: {describe(r)}", file=log, flush=True)
        runs.append(r)
        if r.status in ("timeout", "oom"):
            break
    return Summary(runs)


if __name__ == "__main__":  # python -m bench.common.measure -- CMD ARGS...
    import argparse

    ap = argparse.ArgumentParser(description="Wall time and peak tree RSS of a command.")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    s = measure(cmd, a.repeat, label=os.path.basename(cmd[0]), timeout=a.timeout)
    print(f"median wall {s.wall_s} s, peak RSS {s.peak_rss_bytes} bytes, status {s.status}")
