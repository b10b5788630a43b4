"""A tiny launcher: `python -m bench.common.launch REPORT -- CMD ARGS...`.

Runs CMD as its child, waits for it with `os.wait4`, writes the child's exact rusage (peak RSS
`ru_maxrss`, CPU times) and wall time as JSON to REPORT, and exits with the child's status.

Why: Linux carries a process's RSS high-water mark across fork + exec (exec records the old
memory's peak into the new image's `ru_maxrss`), so a tool started directly by a large parent
(the bench) would report at least the parent's RSS. Started from this small launcher (~10 MB),
the tool's `ru_maxrss` is its own. Imports only the standard library, on purpose.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    report, sep, *cmd = sys.argv[1:]
    if sep != "--" or not cmd:
        print("usage: python -m bench.common.launch REPORT -- CMD ARGS...", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    pid = os.posix_spawnp(cmd[0], cmd, os.environ)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    with open(report, "w") as f:
        json.dump(
            {
                "wall_s": wall,
                "maxrss_kb": ru.ru_maxrss,
                "user_s": ru.ru_utime,
                "sys_s": ru.ru_stime,
                "exit": code,
            },
            f,
        )
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
