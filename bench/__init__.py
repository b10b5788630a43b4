"""Benchmarks of the diffs pipeline (see bench/README.md). Never run by `pants test`."""
