"""A child Python process that imports what this one imports.

`sys.executable` started again (Spark's Python workers, `python -m moto.server`) is not always
this interpreter with this process's modules: a zipapp PEX runs on a *base* interpreter and puts
its dependencies on `sys.path` only at its own start-up, so the bare interpreter restarted by a
child has none of them (`ModuleNotFoundError: No module named 'pyarrow'` in every Spark task).
Handing the child this process's `sys.path` as `PYTHONPATH` gives it the same modules however
the parent was started: a PEX (zipapp or venv), `./pants run`, a virtualenv or a plain checkout.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Mapping


def import_path() -> list[str]:
    """This process's `sys.path` as a child needs it: absolute, existing, without the standard
    library (the child has its own), without duplicates, in order."""
    stdlib = {
        os.path.realpath(p)
        for p in (sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"))
        if p
    }
    seen: set[str] = set()
    entries: list[str] = []
    for entry in sys.path:
        if not entry or os.pathsep in entry:  # "" is the cwd; a ':' cannot go into PYTHONPATH
            continue
        path = os.path.abspath(entry)
        real = os.path.realpath(path)
        if path in seen or not os.path.exists(path):
            continue
        if any(real == lib or real.startswith(lib + os.sep) for lib in stdlib):
            continue
        seen.add(path)
        entries.append(path)
    return entries


def pythonpath(existing: str | None = None) -> str:
    """`PYTHONPATH` for a child: this process's import path, then `existing` entries not in it."""
    entries = import_path()
    for entry in (existing or "").split(os.pathsep):
        if entry and entry not in entries:
            entries.append(entry)
    return os.pathsep.join(entries)


def child_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """`base` (default: `os.environ`) plus `extra`, with a `PYTHONPATH` from `pythonpath`."""
    env = dict(os.environ if base is None else base)
    env.update(extra)
    env["PYTHONPATH"] = pythonpath(env.get("PYTHONPATH"))
    return env
