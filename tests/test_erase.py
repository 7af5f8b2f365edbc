"""Right to erasure on chDB: rows inserted through the real DDL, protected as the consumer does."""

from __future__ import annotations

import argparse
import fcntl
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from callstream.erase import erase_number, main
from consumers.numbers import keyed_hash, policy_from_settings
from consumers.protect import protect_record
from core import store
from core.errors import ConfigError
from core.settings import Settings
from schemas.migrate import apply_migrations
from tests.conftest import sample_bytes

PEPPER = "erase-test-pepper-0123456789"
A, OTHER, B, X = "+8613800000021", "+86138000000210", "+8613866000021", "+8617000000001"


def _insert(settings: Settings, table: str, rows: list[dict[str, Any]]) -> None:
    client = store.connect(settings)
    policy = policy_from_settings(settings)
    protected = [protect_record(table, row, policy) for row in rows]
    stored = {r[0] for r in store.query_rows(  # not the ALIAS columns (cdrs reads its numbers from raw)
        client, "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} "
        "AND default_kind != 'ALIAS'", {"db": settings.clickhouse_database, "t": table})}
    columns = sorted({c for row in protected for c in row} & stored)
    with store.locked(client):
        client.insert(
            f"{settings.clickhouse_database}.{table}",
            [[row.get(c, "") for c in columns] for row in protected],
            column_names=columns,
        )


def _base(key: int) -> dict[str, Any]:
    return {"dedup_key": key, "notification_id": f"n{key}", "received_at": 1_700_000_000_000_000 + key}


def _load(settings: Settings) -> None:
    apply_migrations(settings)
    fee = orjson.loads(sample_bytes("privacy_axb_cdr_single.json"))["feeLst"][0]
    cdr = {
        **_base(1),
        "caller_num": A,
        "callee_num": X,
        "bind_num": X,
        "fwd_display_num": X,
        "fwd_dst_num": B,
        "session_id": fee["sessionId"],
        "call_time": 1_700_000_000_000,
        "raw": orjson.dumps({**fee, "callerNum": A, "calleeNum": X, "bindNum": X, "fwdDisplayNum": X,
                             "fwdDstNum": B}).decode(),
    }
    other = {
        **_base(2),
        "caller_num": OTHER,
        "callee_num": X,
        "bind_num": X,
        "fwd_dst_num": B,
        "session_id": "s-2",
        "call_time": 1_700_000_000_000,
        "raw": orjson.dumps({"callerNum": OTHER, "calleeNum": X, "bindNum": X, "fwdDstNum": B}).decode(),
    }
    _insert(settings, "cdrs", [cdr, other])
    events = [
        {
            **_base(3),
            "event_type": "callin",
            "caller": A,
            "called": X,
            "event_time": 1_700_000_000_000,
            "raw": orjson.dumps({"caller": A, "called": X}).decode(),
        },
        {
            **_base(4),
            "event_type": "callout",
            "caller": X,
            "called": B,
            "event_time": 1_700_000_000_000,
            "raw": orjson.dumps({"caller": X, "called": B}).decode(),
        },
    ]
    _insert(settings, "call_events", events)
    _insert(settings, "number_status", [{**_base(5), "number": X, "receipt_day": 19000, "raw": "{}"}])
    body = b'{"eventType":"fee","feeLst":[{"callerNum":"' + A.encode() + b'"'
    _insert(
        settings,
        "failed_events",
        [
            {**_base(6), "stage": "normalise", "body": body.decode()},
            {**_base(7), "stage": "normalise", "body": "unrelated"},
        ],
    )


def _keys(settings: Settings, table: str) -> list[int]:
    client = store.connect(settings)
    return [
        r[0]
        for r in store.query_rows(
            client, f"SELECT dedup_key FROM {settings.clickhouse_database}.{table} ORDER BY dedup_key"
        )
    ]


def test_erase_deletes_clear_and_hashed_forms_everywhere(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(number_pepper=PEPPER)
    _load(settings)
    client = store.connect(settings)
    db = settings.clickhouse_database
    stored = store.query_rows(client, f"SELECT caller_num FROM {db}.cdrs WHERE dedup_key = 1")[0][0]
    assert stored == keyed_hash(A, PEPPER.encode())  # what the consumer stores

    report = erase_number(settings, A)
    # the KPI rollups keyed by X number are searched too; A is nobody's X number; and the callouts by
    # session (A's event here is no callout: tests/test_session_callouts.py erases one)
    assert report.deleted == {"call_events": 1, "cdrs": 1, "failed_events": 1, "number_status": 0, "cdr_conflicts": 0,
                              "rollup_by_binding": 0, "rollup_by_number": 0, "session_callouts": 0}
    assert _keys(settings, "cdrs") == [2]  # the longer look-alike number stays
    assert _keys(settings, "call_events") == [4]
    assert _keys(settings, "failed_events") == [7]
    assert _keys(settings, "number_status") == [5]
    assert erase_number(settings, A).deleted["cdrs"] == 0  # idempotent


def test_erase_in_clear_when_protection_is_off(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(number_protection="")
    _load(settings)
    assert (
        store.query_rows(
            store.connect(settings),
            f"SELECT count() FROM {settings.clickhouse_database}.cdrs WHERE caller_num = '{A}'",
        )[0][0]
        == 1
    )
    report = erase_number(settings, B)
    assert report.deleted["cdrs"] == 2 and report.deleted["call_events"] == 1


def test_masked_rows_are_counted_not_deleted(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(number_protection="caller_num=mask,caller=mask,embedded=mask")
    _load(settings)
    report = erase_number(settings, A)
    # A and the look-alike OTHER share the mask prefix but not the tail, so only row 1 matches it
    assert report.masked_not_deleted == {"cdrs": 1, "call_events": 1}
    assert report.deleted["cdrs"] == 0
    assert _keys(settings, "cdrs") == [1, 2]


def test_refuses_bad_numbers_and_a_running_up(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(number_pepper=PEPPER, clickhouse_url="")
    with pytest.raises(ConfigError, match="not a phone number"):
        main(argparse.Namespace(number="1; DROP TABLE x"), settings)
    settings.data_dir.mkdir(parents=True)
    with open(settings.data_dir / "up.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242")
        held.flush()
        with pytest.raises(ConfigError, match=r"pid 4242.*Stop it"):
            main(argparse.Namespace(number=A), settings)


def test_cli_reports_counts_without_printing_the_number(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(number_pepper=PEPPER)
    _load(settings)
    assert main(argparse.Namespace(number=A), settings) == 0
    out = capsys.readouterr().out
    assert "cdrs" in out and "1 row(s) deleted" in out and "raw topic" in out
    assert A not in out and "+86138****0021" in out
