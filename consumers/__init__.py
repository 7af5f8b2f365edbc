"""Kafka consumers: split, normalise, deduplicate, enrich and load notifications into ClickHouse."""
