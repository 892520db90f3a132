"""Kafka plumbing: topic catalog, embedded broker, admin, producer and the stage runner."""
