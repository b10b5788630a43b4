"""The diff bench: the engine against the read floor and peer tools (`python -m bench.diff.run`)."""
