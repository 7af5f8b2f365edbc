"""Confluent schema registry access for the wire format ``00 <4-byte id> <Avro body>``.

Built on the maintained ``confluent_kafka.schema_registry.SchemaRegistryClient`` (it caches ids and
schemas per process, so the registry is asked once per subject/schema and once per unknown id).
Schemas are registered under topic-name subjects: ``<topic>-value``.

    registry = Registry("http://registry:8081")
    schema_id = registry.register("callstream.raw", "raw_envelope")
    writer = registry.schema(schema_id)          # parsed JSON of the writer schema
"""

from __future__ import annotations

import json
import threading
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core.errors import RegistryError, UnknownSchema
from schemas.avro_codec import schema_json


def subject_for(topic: str) -> str:
    """The TopicNameStrategy subject of a record value."""
    return f"{topic}-value"


def _server_side(exc: Exception) -> bool:
    """A registry answer of 5xx (or 408/429): the registry is failing or busy, so retry later."""
    status = getattr(exc, "http_status_code", None)
    return isinstance(status, int) and (status >= 500 or status in (408, 429))


class Registry:
    """Register and look up Avro schemas in a Confluent-compatible registry."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._client = SchemaRegistryClient({"url": self.url, "timeout": int(max(timeout_s, 1))})
        self._ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def register(self, topic: str, name: str) -> int:
        """The id of schema ``name`` under ``<topic>-value`` (registered on first use, then cached)."""
        key = (topic, name)
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        schema = Schema(json.dumps(schema_json(name), separators=(",", ":")), "AVRO")
        try:
            schema_id = int(self._client.register_schema(subject_for(topic), schema))
        except SchemaRegistryError as exc:
            if _server_side(exc):
                raise RegistryError(f"schema registry {self.url} is failing: {exc}", retriable=True) from exc
            raise RegistryError(
                f"schema registry {self.url} refused {name} under {subject_for(topic)}: {exc}. "
                "Check the subject's compatibility level or register the schema by hand"
            ) from exc
        except Exception as exc:  # httpx transport errors: connection refused, timeouts
            raise RegistryError(f"schema registry {self.url} is unreachable: {exc}", retriable=True) from exc
        with self._lock:
            self._ids[key] = schema_id
        return schema_id

    def schema(self, schema_id: int) -> dict[str, Any]:
        """The writer schema for ``schema_id`` as parsed JSON (cached)."""
        try:
            found = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if _server_side(exc):
                raise RegistryError(f"schema registry {self.url} is failing: {exc}", retriable=True) from exc
            if getattr(exc, "http_status_code", None) == 404:
                raise UnknownSchema(f"schema registry {self.url} has no schema id {schema_id}: {exc}") from exc
            raise RegistryError(f"schema registry {self.url} refused to return schema id {schema_id}: {exc}") from exc
        except Exception as exc:
            raise RegistryError(f"schema registry {self.url} is unreachable: {exc}", retriable=True) from exc
        if found.schema_str is None:
            raise UnknownSchema(f"schema registry {self.url} returned schema id {schema_id} without a schema")
        return dict(json.loads(found.schema_str))

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()
