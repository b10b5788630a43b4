"""The linescan wheel (a CPython extension): built by Pants (`python_distribution` in BUILD)
and, for the dev venv, by `pip install -e libs/linescan`."""

from setuptools import Extension, setup  # pants: no-infer-dep (Pants builds with its own)

setup(
    name="linescan",
    version="0.1.0",
    description="NDJSON line, key and validity scanner for diffcore's Polars engine",
    python_requires=">=3.11",
    packages=["linescan"],
    ext_modules=[
        Extension(
            "linescan._scan",
            ["linescan/_scan.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ],
)
