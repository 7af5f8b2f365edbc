"""The ``raw_envelope`` record written and read by hand: the edge writes one per accepted push and the
consumer reads one per Kafka record, so both are on the hot path.

The hand-written code knows one writer schema, named by its CRC-64-AVRO fingerprint
(``FAST_FINGERPRINT``): id (string), received_at (timestamp-micros), service, path, event_type, app_key,
auth_scheme, content_type, remote_addr (strings) and body (bytes). The writer takes its fast path only
while the shipped ``raw_envelope.avsc`` has that fingerprint, the reader only for records that carry it;
anything else goes through fastavro (``schemas.avro_codec``). The bytes are fastavro's (tested), and
``bench/avro.py`` shows each path beats fastavro in the same run. The reader is also written in C
(``schemas/_avro_rows.c``, when built) for the records it can read whole; every other record, a corrupt
one included, is read here (``read_raw_envelope_py``, the reference: tests compare both).

    payload = encode_raw_envelope(id, received_at, "voice", "/notify/voice", "answer", app_key, "aksk",
                                  content_type, remote_addr, body)
    fields = read_raw_envelope(payload)   # None: not written with FAST_FINGERPRINT
"""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.avro_codec import MARKER, encode, encode_long, schema_fingerprint

try:
    from schemas._avro_rows import read_envelope as _read_envelope_c  # built by setup.py with a C compiler
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _read_envelope_c = None  # type: ignore[assignment]

FAST_FINGERPRINT = bytes.fromhex("b68d07bf0c2ab000")
_PREFIX = MARKER + FAST_FINGERPRINT
_FAST_WRITE = schema_fingerprint("raw_envelope") == FAST_FINGERPRINT
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TEXT_CACHE: dict[str, bytes] = {}

RawEnvelopeFields = tuple[str, int, str, str, str, str, str, str, str, bytes]


def _text(value: str) -> bytes:
    data = value.encode()
    return encode_long(len(data)) + data


def _long8(value: int) -> bytes:
    """``encode_long`` unrolled for the 8-byte range (microsecond timestamps from 1987 to 2541)."""
    n = value << 1
    if (1 << 49) <= n < (1 << 56):
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21 & 0x7F | 0x80,
                      n >> 28 & 0x7F | 0x80, n >> 35 & 0x7F | 0x80, n >> 42 & 0x7F | 0x80, n >> 49))
    return encode_long(value)


def _known_text(value: str) -> bytes:
    """``_text`` for the few values that repeat (service, path, event type, app key, client address)."""
    encoded = _TEXT_CACHE.get(value)
    if encoded is None:
        if len(_TEXT_CACHE) > 4096:
            _TEXT_CACHE.clear()
        encoded = _TEXT_CACHE[value] = _text(value)
    return encoded


def encode_raw_envelope(
    id: str, received_at: datetime, service: str, path: str, event_type: str, app_key: str,
    auth_scheme: str, content_type: str, remote_addr: str, body: bytes,
) -> bytes:
    """``schemas.avro_codec.encode("raw_envelope", {...})`` of these fields, written by hand while the
    shipped schema is the one this code knows (``FAST_FINGERPRINT``); ``received_at`` is timezone-aware."""
    if _FAST_WRITE:
        moment = received_at - _EPOCH
        micros = (moment.days * 86_400 + moment.seconds) * 1_000_000 + moment.microseconds
        return b"".join((
            _PREFIX, _text(id), _long8(micros), _known_text(service), _known_text(path),
            _known_text(event_type), _known_text(app_key), _known_text(auth_scheme),
            _known_text(content_type), _known_text(remote_addr), encode_long(len(body)), body,
        ))
    return encode("raw_envelope", {
        "id": id, "received_at": received_at, "service": service, "path": path, "event_type": event_type,
        "app_key": app_key, "auth_scheme": auth_scheme, "content_type": content_type,
        "remote_addr": remote_addr, "body": body,
    })


def _long(buf: bytes, pos: int) -> tuple[int, int]:
    """Avro ``long`` at ``pos``: (value, next position)."""
    byte = buf[pos]
    pos += 1
    n = byte & 0x7F
    shift = 7
    while byte & 0x80:
        byte = buf[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise ValueError("Avro long longer than 10 bytes")
    return (n >> 1) ^ -(n & 1), pos


def read_raw_envelope(payload: bytes) -> RawEnvelopeFields | None:
    """The fields of a single-object ``raw_envelope`` record written with ``FAST_FINGERPRINT``, in schema
    order, ``received_at`` as epoch microseconds; None for any other record (read it with fastavro).
    Raises ``ValueError``, ``EOFError`` or ``IndexError`` for a truncated or corrupt body."""
    if _read_envelope_c is not None:
        fields = _read_envelope_c(payload, _PREFIX)
        if fields is not None:
            return fields
    return read_raw_envelope_py(payload)


def read_raw_envelope_py(payload: bytes) -> RawEnvelopeFields | None:
    """``read_raw_envelope`` in Python: the reference, and the reader of what the C reader leaves."""
    if payload[:10] != _PREFIX:
        return None
    end = len(payload)
    values: list[object] = []
    append = values.append
    pos = 10
    for index in range(10):
        if index == 1:  # received_at
            micros, pos = _long(payload, pos)
            append(micros)
            continue
        size = payload[pos]
        if size < 0x80 and not size & 1:  # a length below 64: one byte
            size >>= 1
            pos += 1
        else:
            size, pos = _long(payload, pos)
        stop = pos + size
        if size < 0 or stop > end:
            raise EOFError(f"Avro string or bytes of {size} bytes at {pos} runs past the record ({end} bytes)")
        append(payload[pos:stop] if index == 9 else payload[pos:stop].decode())
        pos = stop
    return tuple(values)  # type: ignore[return-value]
