"""The diffs publisher: publishes a run date's change events (contract section 8) to Kafka."""

__version__ = "0.1.0"
