"""The engines the conformance suite runs against: a registry `name -> how to build it`.

Plugging in an engine is one line in `ENGINES` below, e.g.

    "spark": EngineEntry("diffcore.engines.spark_engine", "SparkEngine", max_examples=15),

plus its module in the `TYPE_CHECKING` import (for Pants, which cannot see a module named in a
string; plain pytest does not need it).

Every registered engine becomes one parameter of the `engine` fixture (tests/conformance/
conftest.py), so every case and every property runs against it. An engine whose module does
not exist yet is reported as a SKIP with the reason (never silently left out); one that exists but
cannot be imported or built FAILS. Set `CONFORMANCE_REQUIRE=polars,spark` (or `all`) to turn the
skips into failures too, and
`CONFORMANCE_ENGINES=polars` to run a subset. `CONFORMANCE_EXTRA_ENGINES=name=module:Attribute`
adds an engine for one run without editing this file.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Never executed. The registry below loads engines by name; these imports let Pants'
    # dependency inference ship their modules with the tests. A new engine's module goes here too.
    from diffcore.engines import polars_engine, spark_engine  # noqa: F401


@dataclass(frozen=True)
class EngineEntry:
    module: str
    # A class or zero-argument factory in `module` that returns an object implementing
    # `diffcore.engine.Engine` (`name`, `run(spec) -> RunResult`).
    attribute: str
    # Hypothesis examples per property for this engine (a Spark run costs seconds, not ms).
    max_examples: int = 80

    def build(self) -> Any:
        factory: Callable[[], Any] = getattr(importlib.import_module(self.module), self.attribute)
        return factory()


ENGINES: dict[str, EngineEntry] = {
    "polars": EngineEntry("diffcore.engines.polars_engine", "PolarsEngine", max_examples=80),
    "spark": EngineEntry("diffcore.engines.spark_engine", "SparkEngine", max_examples=15),
}


def _extra() -> None:
    """CONFORMANCE_EXTRA_ENGINES="name=module:Attribute[,...]": try an engine before registering it."""
    for item in filter(
        None, (i.strip() for i in os.environ.get("CONFORMANCE_EXTRA_ENGINES", "").split(","))
    ):
        name, _, target = item.partition("=")
        module, _, attribute = target.partition(":")
        if not (name and module and attribute):
            raise ValueError(
                f"CONFORMANCE_EXTRA_ENGINES item {item!r} is not name=module:Attribute"
            )
        ENGINES.setdefault(name, EngineEntry(module, attribute, max_examples=20))


_extra()


def selected() -> list[str]:
    wanted = os.environ.get("CONFORMANCE_ENGINES", "").strip()
    if not wanted or wanted == "all":
        return list(ENGINES)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        raise ValueError(
            f"CONFORMANCE_ENGINES names unknown engines {unknown}; known: {list(ENGINES)}"
        )
    return names


def required(name: str) -> bool:
    wanted = os.environ.get("CONFORMANCE_REQUIRE", "").strip()
    return wanted == "all" or name in {n.strip() for n in wanted.split(",")}


_built: dict[str, Any] = {}


def get(name: str) -> Any:
    """The engine instance (built once per test session)."""
    if name not in _built:
        _built[name] = ENGINES[name].build()
    return _built[name]
