"""The ClickHouse-compatible query endpoint, driven by clickhouse-connect itself and by plain HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from callstream.query_server import QueryRefused, check_read_only, create_app, first_keyword, split_format
from core import store
from core.settings import Settings
from tests.helpers import serve_in_thread


@pytest.fixture
def endpoint(settings: Settings) -> Iterator[str]:
    client = store.connect(settings)
    db = settings.clickhouse_database
    with store.locked(client):
        client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        client.command(
            f"CREATE TABLE {db}.calls (session_id String, service LowCardinality(String), talk_seconds UInt32, "
            "call_end_time DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY session_id"
        )
        client.command(
            f"INSERT INTO {db}.calls VALUES ('s1', 'voice', 12, '2024-03-12 02:15:40'), "
            "('s2', 'privacy', 0, '2024-03-12 02:16:05'), ('s3', 'voice', 95, '2024-03-12 02:31:40')"
        )
    try:
        with serve_in_thread(create_app(settings)) as url:
            yield url
    finally:
        with store.locked(client):
            client.command(f"DROP DATABASE IF EXISTS {db}")


def test_helpers() -> None:
    assert first_keyword("  -- hi\n /* x */ (SELECT 1)") == "SELECT"
    assert split_format("SELECT 1 FORMAT JSONEachRow;") == ("SELECT 1", "JSONEachRow")
    assert split_format("SELECT 'FORMAT' AS f") == ("SELECT 'FORMAT' AS f", None)
    check_read_only("WITH 1 AS a SELECT a")
    for bad in ("INSERT INTO t VALUES (1)", "DROP TABLE t", "ALTER TABLE t DELETE WHERE 1", "SET readonly=0", ""):
        with pytest.raises(QueryRefused):
            check_read_only(bad)


def test_clickhouse_connect_client(endpoint: str, settings: Settings) -> None:
    port = int(endpoint.rsplit(":", 1)[1])
    client = clickhouse_connect.get_client(host="127.0.0.1", port=port, database=settings.clickhouse_database)
    try:
        result = client.query("SELECT session_id, service, talk_seconds, call_end_time FROM calls ORDER BY session_id")
        rows = result.result_rows
        assert [r[:3] for r in rows] == [("s1", "voice", 12), ("s2", "privacy", 0), ("s3", "voice", 95)]
        assert rows[0][3].year == 2024 and rows[0][3].second == 40
        bound = client.query(
            "SELECT count() FROM calls WHERE service = {svc:String} AND talk_seconds > {t:UInt32}",
            parameters={"svc": "voice", "t": 10},
        )
        assert bound.result_rows == [(2,)]
        legacy = client.query("SELECT count() FROM calls WHERE service = %(svc)s", parameters={"svc": "privacy"})
        assert legacy.result_rows == [(1,)]
        assert client.command("SELECT sum(talk_seconds) FROM calls") == 107
        with pytest.raises(DatabaseError, match="read-only"):
            client.command("INSERT INTO calls VALUES ('s4', 'voice', 1, now())")
        with pytest.raises(DatabaseError, match="read-only"):
            client.command("DROP TABLE calls")
        with pytest.raises(DatabaseError, match="UNKNOWN_TABLE|does not exist"):
            client.query("SELECT * FROM no_such_table")
    finally:
        client.close()
    assert store.query_rows(store.connect(settings), f"SELECT count() FROM {settings.clickhouse_database}.calls") == [
        (3,)
    ]


def test_plain_http_formats_and_headers(endpoint: str, settings: Settings) -> None:
    db = settings.clickhouse_database
    with httpx.Client(base_url=endpoint, timeout=10) as http:
        assert http.get("/ping").text == "Ok.\n"
        r = http.get("/", params={"query": "SELECT 1"})
        assert r.status_code == 200 and r.text == "1\n"
        assert r.headers["X-ClickHouse-Format"] == "TabSeparated"
        assert r.headers["X-ClickHouse-Timezone"] == "UTC"
        assert r.headers["X-ClickHouse-Server-Display-Name"] == "callstream"
        assert r.headers["X-ClickHouse-Query-Id"]
        assert "read_rows" in json.loads(r.headers["X-ClickHouse-Summary"])
        r = http.post("/", params={"database": db}, content=b"SELECT session_id FROM calls ORDER BY 1 FORMAT JSON")
        assert r.headers["X-ClickHouse-Format"] == "JSON"
        assert [row["session_id"] for row in r.json()["data"]] == ["s1", "s2", "s3"]
        r = http.post("/", params={"database": db, "default_format": "JSONEachRow"}, content=b"SELECT count() AS n FROM calls")
        assert json.loads(r.text) == {"n": "3"} or json.loads(r.text) == {"n": 3}
        r = http.post("/?query=SELECT%20session_id%20FROM%20" + db + ".calls", content=b"WHERE talk_seconds = 0 FORMAT TSV")
        assert r.text == "s2\n"
        r = http.post("/", content=b"SELECT 1 AS x FORMAT RowBinaryWithNamesAndTypes")
        assert r.content == b"\x01\x01x\x05UInt8\x01"
        r = http.get("/", params={"query": "SELECT {n:UInt8} + 1", "param_n": "41", "max_threads": "2", "session_id": "z"})
        assert r.text == "42\n"
        r = http.post("/", content=f"TRUNCATE TABLE {db}.calls".encode())
        assert r.status_code == 403 and r.text.startswith("Code: 164. DB::Exception:")
        assert r.headers["X-ClickHouse-Exception-Code"] == "164"
        # the engine's own guard: a write hidden behind an allowed keyword is refused too
        r = http.post("/", content=f"WITH 1 AS a INSERT INTO {db}.calls SELECT 'x', 'voice', 1, now()".encode())
        assert r.status_code in (400, 403, 500) and r.text.startswith("Code:")
        r = http.get("/", params={"query": "SELECT nosuch()"})
        assert r.status_code == 400 and "Code: 46. DB::Exception" in r.text
