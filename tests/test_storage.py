"""A CDR's ids and numbers stored once, in ``raw`` (schemas/clickhouse/0012_storage.sql, and session_id since
0019_cdr_session_alias.sql), on the real engine.

* Every ALIAS column reads, for every simulated CDR, the value the loader had in its row (the value it
  wrote before the migration), and so it does for odd values: JSON numbers, null, escapes, unicode,
  X numbers, under the keep, mask and hash policies.
* The migration on a store with rows: every column reads what it read before, the stored copies are
  gone once the parts merge, the KPI views and rollups are unchanged, and the loader goes on loading.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from bench.storage import raw_records
from consumers.load import ClickHouseSink
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from core import store
from core.settings import Settings
from schemas.avro_codec import encode
from schemas.migrate import apply_migrations, discover
from tests.test_rollups import counts, view_rows

ALIASED = {"icid": "icid", "caller_num": "callerNum", "callee_num": "calleeNum", "fwd_dst_num": "fwdDstNum",
           "subscription_id": "subscriptionId", "mpty_id": "mptyId", "session_id": "sessionId"}  # 0012, 0019
COLUMNS = ", ".join(ALIASED)


def pipeline(settings: Settings, client: Any) -> Pipeline:
    return Pipeline(settings, ClickHouseSink(client, settings.clickhouse_database), None,
                    ConsumerMetrics(CollectorRegistry()))


def load(settings: Settings, client: Any, records: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
    """Prepare and store ``records``; returns the CDR rows the loader had (protected, as inserted)."""
    loader = pipeline(settings, client)
    batch = loader.prepare(records)
    rows = list(batch.tables["cdrs"])  # delivery empties the batch table by table
    asyncio.run(loader.deliver(batch))
    return rows


def stored(client: Any, db: str) -> dict[int, tuple[Any, ...]]:
    rows = store.query_rows(client, f"SELECT dedup_key, {COLUMNS} FROM {db}.cdrs FINAL")
    return {int(r[0]): tuple(r[1:]) for r in rows}


def expected(rows: list[dict[str, Any]]) -> dict[int, tuple[Any, ...]]:
    return {int(r["dedup_key"]): tuple(r[c] for c in ALIASED) for r in rows}


def fee_record(info: dict[str, Any], offset: int, app: str = "app-odd") -> ConsumerRecord[bytes, bytes]:
    body = orjson.dumps({"eventType": "fee", "feeLst": [info]})
    value = encode("raw_envelope", {
        "id": uuid.uuid4().hex, "received_at": int(datetime(2024, 3, 13, tzinfo=UTC).timestamp() * 1_000_000),
        "service": "voice", "path": "/notify/voice", "event_type": "fee", "app_key": app,
        "auth_scheme": "aksk", "content_type": "application/json", "remote_addr": "127.0.0.1", "body": body,
    })
    return ConsumerRecord("raw", 0, offset, 0, 0, None, value, None, 0, len(value), [])


ODD = [
    {"icid": 12345, "callerNum": 8613800000021, "calleeNum": "+8613800000022", "subscriptionId": 77},
    {"icid": "a.b", "callerNum": "+8617000000001", "bindNum": "+8617000000001", "calleeNum": "8613800000022",
     "fwdDstNum": "", "subscriptionId": "x", "mptyId": None},
    {"icid": "é\"\\x\u2028", "callerNum": "+86 138 0000 0021", "calleeNum": None,
     "fwdDstNum": "h:0123456789abcdef0123456789abcdef", "mptyId": "m-\u4e2d"},
    {"callerNum": "+8613800000021_+8617000000001", "fwdDstNum": "+8617000000009", "fwdDisplayNum": "+8617000000009"},
    {"sessionId": "1201_+8613800000021_4294967295@callenabler.example", "callerNum": "+8613800000021"},
    {"sessionId": 987654321, "bindNum": "+8617000000001"},
    {"sessionId": "s-\u4e2d \"quoted\" +8617000000001", "bindNum": "+8617000000001"},
]


def test_alias_columns_read_what_the_loader_had_for_every_simulated_cdr(make_settings: Any) -> None:
    settings = make_settings(auth="off")  # the simulator's app keys
    client = store.connect(settings)
    apply_migrations(settings, client)
    records, _ = raw_records(400, seed=11)
    rows = load(settings, client, records)
    assert len(rows) >= 400 and any(r["subscription_id"] for r in rows) and any(r["mpty_id"] for r in rows)
    assert stored(client, settings.clickhouse_database) == expected(rows)


@pytest.mark.parametrize("policy", [
    "",  # the default: caller, callee and forward numbers keyed-hashed, X numbers kept
    "caller_num=keep,callee_num=keep,fwd_dst_num=keep,embedded=keep",
    "caller_num=mask,callee_num=mask,fwd_dst_num=mask,bind_num=mask,embedded=mask",
])
def test_alias_columns_read_odd_values_as_the_loader_wrote_them(make_settings: Any, policy: str) -> None:
    settings = make_settings(auth="off", **({"number_protection": policy} if policy else {}))
    client = store.connect(settings)
    apply_migrations(settings, client)
    base = {"appKey": "app-odd", "callOutStartTime": "2024-03-12 10:00:00", "callEndTime": "2024-03-12 10:00:09"}
    rows = load(settings, client, [fee_record({**base, "sessionId": f"s-{i}", **odd}, i) for i, odd in enumerate(ODD)])
    assert len(rows) == len(ODD)
    assert stored(client, settings.clickhouse_database) == expected(rows)
    if not policy:  # a number sent as a JSON number is hashed in raw as in its column
        clear = store.query_rows(client, f"SELECT count() FROM {settings.clickhouse_database}.cdrs "
                                         "WHERE position(raw, '8613800000021') > 0")
        assert clear == [(0,)]


def test_migration_keeps_every_value_of_a_store_with_rows(make_settings: Any) -> None:
    settings = make_settings(auth="off")
    client = store.connect(settings)
    db = settings.clickhouse_database
    storage = next(m for m in discover() if m.name == "storage")
    apply_migrations(settings, client, upto=storage.version - 1)
    records, _ = raw_records(300, seed=5)
    rows = load(settings, client, records[: len(records) // 2])
    before = stored(client, db)
    assert before == expected(rows)
    views = {v: view_rows(client, db, v) for v in ("kpi_daily", "kpi_by_binding", "kpi_by_number")}

    assert storage.label in apply_migrations(settings, client)
    assert stored(client, db) == before  # read from raw at once, parts not merged yet
    with store.locked(client):
        client.command(f"OPTIMIZE TABLE {db}.cdrs FINAL")
    assert stored(client, db) == before
    kinds = dict(store.query_rows(
        client, "SELECT name, default_kind FROM system.columns WHERE database = {db:String} AND table = 'cdrs' "
        "AND name IN {names:Array(String)}", {"db": db, "names": list(ALIASED)}))
    assert kinds == dict.fromkeys(ALIASED, "ALIAS")
    files = store.query_rows(client, "SELECT sum(data_compressed_bytes) FROM system.columns WHERE database = "
                             "{db:String} AND table = 'cdrs' AND name IN {names:Array(String)}",
                             {"db": db, "names": list(ALIASED)})
    assert files == [(0,)]  # nothing stored for them after the merge
    assert {v: view_rows(client, db, v) for v in views} == views

    more = load(settings, client, records[len(records) // 2:])  # a loader started after the migration
    assert stored(client, db) == {**before, **expected(more)}
    assert all(got == want for got, want in counts(client, db).values()), counts(client, db)
