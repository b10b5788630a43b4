"""Spark bench: diffcore's Spark engine against G-Research spark-extension's diff and the
Polars engine (see README.md)."""
