"""Bench: the Kafka publisher vs a bare confluent-kafka loop (see README.md)."""
