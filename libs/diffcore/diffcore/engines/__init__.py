"""Engines: implementations of `diffcore.engine.Engine`.

`polars` is the local/default engine; `spark` runs the same contract on PySpark (the Glue job).
Engines are imported lazily so that importing `diffcore.engines` pulls in neither Polars nor
Spark.
"""

from __future__ import annotations

from typing import Any

ENGINES = ("polars", "spark")


def get_engine(name: str = "polars", **options: Any) -> Any:
    """An engine instance by name; `options` go to its constructor."""
    if name == "polars":
        from diffcore.engines.polars_engine import PolarsEngine

        return PolarsEngine(**options)
    if name == "spark":
        from diffcore.engines.spark_engine import SparkEngine

        return SparkEngine(**options)
    raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
