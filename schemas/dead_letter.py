"""The dead-letter record: something callstream refused (stage ``edge``) or could not process (stages
``decode``, ``normalise``, ``load``…), with the reason and the exact bytes, so it can be replayed.

    value, headers = dead_letter(id=..., received_at=..., stage="edge", reason="unauthenticated", ...)

``value`` is single-object encoded (``schemas/avro/dead_letter.avsc``); publishers reframe it for a
schema registry. ``headers`` are CloudEvents headers: ``ce_id`` the notification id (``<id>:<record
index>`` for one record of a merged push), ``ce_source`` ``callstream/<stage>/<service>``, ``ce_type``
``io.callstream.dead_letter``, ``ce_time`` the receipt time, ``ce_subject`` the reason.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.avro_codec import encode
from schemas.cloudevents import DEAD_LETTER_TYPE, KafkaHeaders, headers, rfc3339, stage_source

DETAIL_MAX_CHARS = 2000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def dead_letter(
    *,
    id: str,
    received_at: datetime | int,
    stage: str,
    reason: str,
    detail: str,
    service: str,
    path: str,
    app_key: str,
    body: bytes,
    http_status: int = 0,
    source: tuple[str, int, int] = ("", -1, -1),
    request_headers: dict[str, str] | None = None,
    body_truncated: bool = False,
    record_index: int | None = None,
) -> tuple[bytes, KafkaHeaders]:
    """``(Avro value, CloudEvents headers)`` of one dead letter. ``received_at`` is a timezone-aware
    datetime or epoch microseconds; ``source`` the (topic, partition, offset) it was read from;
    ``record_index`` the record of a merged push that failed, -1 the whole push (kept in the record's
    ``headers`` map)."""
    moment = received_at if isinstance(received_at, datetime) else _EPOCH + timedelta(microseconds=received_at)
    extra = dict(request_headers or {})
    if record_index is not None:
        extra["record_index"] = str(record_index)
    topic, partition, offset = source
    value = encode("dead_letter", {
        "id": id, "received_at": received_at, "stage": stage, "reason": reason,
        "detail": detail[:DETAIL_MAX_CHARS], "service": service, "path": path, "app_key": app_key,
        "http_status": http_status, "source_topic": topic, "source_partition": partition,
        "source_offset": offset, "headers": extra, "body": body, "body_truncated": body_truncated,
    })
    ce_id = id if record_index is None or record_index < 0 else f"{id}:{record_index}"
    return value, headers(ce_id.encode(), stage_source(stage, service), DEAD_LETTER_TYPE,
                          rfc3339(moment).encode(), reason.encode())
