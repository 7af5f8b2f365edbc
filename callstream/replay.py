"""``callstream replay {dead,failed,raw}``: re-drive notifications through the pipeline after a fix.

* ``dead``   — dead-letter records on ``settings.dead_topic``;
* ``failed`` — ``failed_events`` rows in ClickHouse (one replay per notification, not per row);
* ``raw``    — a range of the raw topic (partition + offsets, or a time range via offsets_for_times).

Every replayed record is a ``raw_envelope`` with the ORIGINAL notification id, receipt time and body, the
edge's CloudEvents headers and a ``replayed_at`` header. The consumers deduplicate by business keys, so
replaying the same notification twice never creates a second row.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core.errors import ConfigError, RejectedNotification
from core.kafka import consumer_kwargs, ensure_topics, producer_kwargs
from core.settings import Settings
from core.store import connect, query_rows
from ingest.notification import classify
from schemas.avro_codec import UnknownSchema
from schemas.cloudevents import KafkaHeaders, raw_headers, rfc3339
from schemas.serde import Serializer

Headers = KafkaHeaders


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    app: str | None = None
    reason: str | None = None
    id: str | None = None

    def accepts(self, received_at: datetime, app_key: str, reason: str, notification_id: str) -> bool:
        return not (
            (self.since is not None and received_at < self.since)
            or (self.until is not None and received_at > self.until)
            or (self.app is not None and app_key != self.app)
            or (self.reason is not None and reason != self.reason)
            or (self.id is not None and notification_id != self.id)
        )


@dataclass
class Item:
    """One notification to re-drive: the envelope fields, or (raw replays) the record as it was."""

    id: str
    received_at: datetime
    reason: str
    origin: str
    envelope: dict[str, Any] | None = None
    value: bytes | None = None
    key: bytes | None = None
    headers: Headers = field(default_factory=list)


def parse_time(text: str | None) -> datetime | None:
    """ISO 8601; a time without zone is UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"cannot read time {text!r}: use ISO 8601, e.g. 2024-03-12T02:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def envelope_from(
    serializer: Serializer, *, id: str, received_at: datetime, service: str, path: str,  # noqa: A002
    app_key: str, body: bytes, content_type: str = "",
) -> dict[str, Any]:
    """The raw envelope of a quarantined notification: ``body`` is either the pushed bytes or the
    raw_envelope record itself (consumer-side failures keep the record). Raises when it still does not
    classify (``RejectedNotification``) — the fix has not landed yet."""
    try:
        name, record = serializer.decode(body)
    except (UnknownSchema, ValueError, EOFError):
        name, record = "", {}
    if name == "raw_envelope":
        return record
    if not service:
        raise RejectedNotification("no service recorded: cannot tell /notify/voice from /notify/privacy",
                                   reason="unreplayable")
    classified = classify(service, body)
    return {
        "id": id,
        "received_at": _utc(received_at),
        "service": service,
        "path": path or f"/notify/{service}",
        "event_type": classified.event_type,
        "app_key": app_key,
        "auth_scheme": "replay",
        "content_type": content_type,
        "remote_addr": "",
        "body": body,
    }


async def _read_range(
    settings: Settings, topic: str, partitions: list[int] | None, start: dict[int, int] | None,
    stop: dict[int, int] | None, since: datetime | None,
) -> list[Any]:
    """Records of ``topic`` from ``start`` (or ``since``, or the beginning) up to the end offsets seen
    when the read began (so records we append meanwhile are not read again)."""
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings, group_id=None, client_id="callstream-replay"))
    await consumer.start()
    try:
        known = consumer.partitions_for_topic(topic) or set()
        if not known:
            await consumer.topics()
            known = consumer.partitions_for_topic(topic) or set()
        if not known:
            raise ConfigError(f"topic {topic} does not exist on {settings.kafka_bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(known) if partitions is None or p in partitions]
        if not tps:
            raise ConfigError(f"topic {topic} has no partition {partitions}: it has {sorted(known)}")
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        firsts = await consumer.beginning_offsets(tps)
        by_time: dict[TopicPartition, Any] = {}
        if since is not None:
            by_time = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        wanted: dict[TopicPartition, tuple[int, int, int | None]] = {}
        for tp in tps:
            begin = firsts[tp]
            if start is not None and tp.partition in start:
                begin = max(begin, start[tp.partition])
            elif since is not None:
                found = by_time.get(tp)
                begin = found.offset if found is not None else ends[tp]
            last = stop[tp.partition] + 1 if stop is not None and tp.partition in stop else None
            end = ends[tp] if last is None else min(ends[tp], last)
            if begin < end:
                wanted[tp] = (begin, end, last)
        if not wanted:
            return []
        consumer.assign(list(wanted))
        for tp, (begin, _, _) in wanted.items():
            consumer.seek(tp, begin)
        out: list[Any] = []
        pending = dict(wanted)
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=5000)
            for tp, messages in batches.items():
                last = pending[tp][2] if tp in pending else None
                # only an explicit --to-offset cuts a batch: brokers that under-report the end offset of
                # a multi-record batch (Tansu) would otherwise hide its tail
                out += [m for m in messages if last is None or m.offset < last]
            for tp in list(pending):
                if await consumer.position(tp) >= pending[tp][1]:
                    del pending[tp]
        return out
    finally:
        await consumer.stop()


Collected = tuple[list[Item], Counter[str]]


async def collect_dead(settings: Settings, serializer: Serializer, filters: Filters) -> Collected:
    skipped: Counter[str] = Counter()
    items = []
    for message in await _read_range(settings, settings.dead_topic, None, None, None, None):
        try:
            _, dead = serializer.decode(message.value)
        except (UnknownSchema, ValueError, EOFError):
            skipped["undecodable"] += 1
            continue
        if not filters.accepts(_utc(dead["received_at"]), dead["app_key"], dead["reason"], dead["id"]):
            continue
        origin = f"{message.topic}/{message.partition}@{message.offset}"
        if dead.get("body_truncated"):
            skipped["body_truncated"] += 1
            continue
        try:
            envelope = envelope_from(
                serializer, id=dead["id"], received_at=dead["received_at"], service=dead["service"],
                path=dead["path"], app_key=dead["app_key"], body=dead["body"],
                content_type=dead.get("headers", {}).get("content-type", ""),
            )
        except RejectedNotification as exc:
            skipped[f"still_refused:{exc.reason}"] += 1
            continue
        items.append(Item(envelope["id"], envelope["received_at"], dead["reason"], origin, envelope=envelope))
    return items, skipped


def collect_failed(settings: Settings, serializer: Serializer, filters: Filters) -> Collected:
    database = settings.clickhouse_database
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", database):
        raise ConfigError(f"CALLSTREAM_CLICKHOUSE_DATABASE={database!r} is not a plain identifier")
    where: list[str] = ["1"]
    params: dict[str, Any] = {}
    for column, op, value in [
        ("received_at", ">=", filters.since), ("received_at", "<=", filters.until),
        ("app_key", "=", filters.app), ("reason", "=", filters.reason), ("notification_id", "=", filters.id),
    ]:
        if value is not None:
            name = f"p{len(params)}"
            kind = "DateTime64(6, 'UTC')" if column == "received_at" else "String"
            where.append(f"{column} {op} {{{name}:{kind}}}")
            params[name] = value
    sql = (
        "SELECT notification_id, any(received_at), any(reason), any(service), any(path), any(app_key), "
        f"any(body), min(stage) FROM {database}.failed_events FINAL WHERE {' AND '.join(where)} "
        "GROUP BY notification_id ORDER BY any(received_at)"
    )
    items, skipped = [], Counter[str]()
    rows = query_rows(connect(settings), sql, params)
    for nid, received_at, reason, service, path, app_key, body, stage in rows:
        raw = body if isinstance(body, bytes) else str(body).encode("utf-8", "surrogateescape")
        try:
            envelope = envelope_from(serializer, id=nid, received_at=received_at, service=service, path=path,
                                     app_key=app_key, body=raw)
        except RejectedNotification as exc:
            skipped[f"still_refused:{exc.reason}"] += 1
            continue
        items.append(Item(envelope["id"], envelope["received_at"], reason, f"failed_events/{stage}",
                          envelope=envelope))
    return items, skipped


async def collect_raw(settings: Settings, serializer: Serializer, args: argparse.Namespace,
                      filters: Filters) -> Collected:
    partitions = [args.partition] if args.partition is not None else None
    if (args.from_offset is not None or args.to_offset is not None) and args.partition is None:
        raise ConfigError("--from-offset/--to-offset need --partition (offsets are per partition)")
    start = {args.partition: args.from_offset} if args.from_offset is not None else None
    stop = {args.partition: args.to_offset} if args.to_offset is not None else None
    items, skipped = [], Counter[str]()
    for m in await _read_range(settings, settings.raw_topic, partitions, start, stop, filters.since):
        try:
            _, env = serializer.decode(m.value)
        except (UnknownSchema, ValueError, EOFError):
            skipped["undecodable"] += 1
            continue
        if not filters.accepts(_utc(env["received_at"]), env["app_key"], "raw", env["id"]):
            continue
        headers = [(k, v) for k, v in (m.headers or ()) if k not in ("replayed_at", "replay_source")]
        items.append(Item(env["id"], env["received_at"], "raw", f"{m.topic}/{m.partition}@{m.offset}",
                          value=m.value, key=m.key, headers=headers))
    return items, skipped


async def publish(settings: Settings, serializer: Serializer, items: list[Item], source: str) -> None:
    """Write every item to the raw topic and wait for all acknowledgements."""
    await ensure_topics(settings)
    replayed_at = rfc3339(datetime.now(UTC)).encode()
    producer = AIOKafkaProducer(**producer_kwargs(settings, client_id="callstream-replay"))
    await producer.start()
    try:
        futures = []
        for item in items:
            if item.envelope is not None:
                env = item.envelope
                key = classify(env["service"], env["body"]).key
                value = serializer.encode("raw_envelope", env, settings.raw_topic)
                headers = raw_headers(env["id"], _utc(env["received_at"]), env["service"], env["event_type"],
                                      env["app_key"], key)
                key_bytes = key.encode() if key else None
            else:
                value, key_bytes, headers = item.value or b"", item.key, item.headers
            headers = [*headers, ("replayed_at", replayed_at), ("replay_source", source.encode())]
            futures.append(await producer.send(settings.raw_topic, value, key=key_bytes, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def replay(args: argparse.Namespace, settings: Settings, out: Any = None) -> Counter[str]:
    """Collect, print and (unless ``--dry-run``) publish; returns the count by reason."""
    out = out if out is not None else sys.stdout
    if args.source == "raw" and args.reason is not None:
        raise ConfigError("--reason filters dead letters and failed_events rows; raw records have no reason")
    if args.source != "raw" and any(
        value is not None for value in (args.partition, args.from_offset, args.to_offset)
    ):
        raise ConfigError("--partition/--from-offset/--to-offset select a raw-topic range: use `replay raw`")
    filters = Filters(parse_time(args.since), parse_time(args.until), args.app, args.reason, args.id)
    serializer = Serializer(settings)
    try:
        if args.source == "dead":
            items, skipped = await collect_dead(settings, serializer, filters)
        elif args.source == "failed":
            items, skipped = collect_failed(settings, serializer, filters)
        else:
            items, skipped = await collect_raw(settings, serializer, args, filters)
        verb = "would replay" if args.dry_run else "replaying"
        for item in items:
            print(f"{verb} {item.id} received_at={rfc3339(_utc(item.received_at))} reason={item.reason} "
                  f"from {item.origin}", file=out)
        if items and not args.dry_run:
            await publish(settings, serializer, items, args.source)
    finally:
        serializer.close()
    counts = Counter(item.reason for item in items)
    done = "would replay" if args.dry_run else "replayed"
    summary = ", ".join(f"{reason}={n}" for reason, n in sorted(counts.items())) or "nothing matched"
    print(f"{done} {sum(counts.values())} from {args.source} into {settings.raw_topic}: {summary}", file=out)
    for reason, n in sorted(skipped.items()):
        print(f"skipped {n}: {reason}", file=out)
    return counts


def main(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(replay(args, settings))
    return 0
