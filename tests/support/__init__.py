"""Shared test services (moto S3 server, Tansu Kafka broker) for tests and benches."""
