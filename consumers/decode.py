"""Raw Kafka record -> ``Notification`` (the envelope the edge published, plus where it came from).

Reads both framings the edge writes: Avro single-object encoding and, with a schema registry, the
Confluent wire format."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.errors import NormaliseError, RegistryError
from schemas.avro_envelope import read_raw_envelope
from schemas.serde import Serializer, UnknownSchema, decode  # also reads history versions

_RAW = "raw_envelope"


@dataclass(slots=True)
class Notification:
    """One push as received by the edge; ``received_at_us`` is epoch microseconds UTC."""

    id: str
    received_at_us: int
    service: str
    path: str
    event_type: str
    app_key: str
    body: bytes
    topic: str = ""
    partition: int = -1
    offset: int = -1
    auth_scheme: str = ""
    content_type: str = ""
    remote_addr: str = ""

    def __reduce__(self) -> tuple[type[Notification], tuple[str, int, str, str, str, str, bytes, str, int, int,
                                                            str, str, str]]:
        """Pickle as the class and its fields (a prepare worker sends every batch's notifications to the
        consumer): a third of the default slots pickling's time, which calls __getstate__ per object."""
        return (Notification, (self.id, self.received_at_us, self.service, self.path, self.event_type, self.app_key,
                               self.body, self.topic, self.partition, self.offset, self.auth_scheme,
                               self.content_type, self.remote_addr))


def _to_us(value: object) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp()) * 1_000_000 + value.microsecond
    if isinstance(value, int):
        return value
    raise NormaliseError(f"envelope received_at has type {type(value).__name__}", reason="bad_envelope")


def decode_envelope(
    payload: bytes | None, topic: str = "", partition: int = -1, offset: int = -1,
    serializer: Serializer | None = None,
) -> Notification:
    """Decode a ``raw_envelope`` record in either framing; ``NormaliseError(reason="bad_envelope")`` when it
    is not one. Confluent-framed records (the edge with a schema registry) need ``serializer`` with that
    registry; ``BrokerUnavailable`` while it is unreachable."""
    if not payload:
        raise NormaliseError("empty Kafka record value", reason="bad_envelope")
    try:
        fields = read_raw_envelope(payload)  # the hand-written reader, for the writer schema it knows
        if fields is not None:
            nid, received_us, service, path, event_type, app_key, scheme, ctype, addr, body = fields
            return Notification(nid, received_us, service, path, event_type, app_key, body, topic,
                                partition, offset, scheme, ctype, addr)
        if serializer is not None:
            name, record = serializer.decode(payload)
        else:
            name, record = decode(payload)
    except RegistryError as exc:
        if exc.retriable:
            raise  # the registry is down: nothing is wrong with the record
        raise NormaliseError(f"not a raw_envelope Avro record: {exc}", reason="bad_envelope") from exc
    except (UnknownSchema, ValueError, EOFError, IndexError, TypeError) as exc:  # UnicodeError too
        raise NormaliseError(f"not a raw_envelope Avro record: {exc}", reason="bad_envelope") from exc
    if name != "raw_envelope":
        raise NormaliseError(f"expected raw_envelope, got {name}", reason="bad_envelope")
    return Notification(
        id=record["id"],
        received_at_us=_to_us(record["received_at"]),
        service=record["service"],
        path=record["path"],
        event_type=record["event_type"],
        app_key=record.get("app_key", "") or "",
        body=record["body"],
        topic=topic,
        partition=partition,
        offset=offset,
        auth_scheme=record.get("auth_scheme", "") or "",
        content_type=record.get("content_type", "") or "",
        remote_addr=record.get("remote_addr", "") or "",
    )
