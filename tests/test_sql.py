"""`callstream sql`: direct on the store when no stack runs, through the query endpoint when one does."""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import pytest
import uvicorn

from callstream.query_server import create_app
from callstream.sql import SqlError, main, query_url, run_sql
from core import store
from core.broker import free_port
from core.credentials import remove_stack_file, write_stack_file
from core.settings import Settings


def _table(settings: Settings) -> str:
    db = settings.clickhouse_database
    client = store.connect(settings)
    with store.locked(client):
        client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        client.command(f"CREATE TABLE {db}.t (n UInt32) ENGINE = MergeTree ORDER BY n")
        client.command(f"INSERT INTO {db}.t SELECT number FROM numbers(5)")
    return f"{db}.t"


def test_direct_when_no_stack(settings: Settings, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    table = _table(settings)
    assert query_url(settings.data_dir) is None
    assert run_sql(settings, f"SELECT sum(n) FROM {table}") == b"10\n"
    assert run_sql(settings, f"SELECT n FROM {table} ORDER BY n LIMIT 2 FORMAT JSONEachRow") == b'{"n":0}\n{"n":1}\n'
    assert main(argparse.Namespace(query=f"SELECT count() FROM {table}", format="TSV"), settings) == 0
    assert capsysbinary.readouterr().out == b"5\n"
    with pytest.raises(SqlError, match="Code: 81"):
        run_sql(settings, "SELECT * FROM no_db_here.no_table")
    _bound_values_arrive_intact(settings, table)


TRICKY = ["o'brien", "back\\slash", "tab\there", "') OR 1=1 --", "ü€"]


def _bound_values_arrive_intact(settings: Settings, table: str) -> None:
    sql = f"SELECT {{word:String}}, has({{words:Array(String)}}, {{word:String}}), count() FROM {table} " \
          "WHERE n IN {keys:Array(UInt64)} FORMAT JSONCompactEachRow"
    for word in TRICKY:
        out = run_sql(settings, sql, parameters={"word": word, "words": TRICKY, "keys": [1, 3, 2**64 - 1]})
        assert json.loads(out) == [word, 1, 2]


def test_through_running_stack(settings: Settings) -> None:
    table = _table(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    write_stack_file(settings.data_dir, {"pid": os.getpid(), "query_url": f"http://127.0.0.1:{port}/"})
    try:
        assert query_url(settings.data_dir) == f"http://127.0.0.1:{port}/"
        assert run_sql(settings, f"SELECT sum(n) FROM {table}") == b"10\n"
        assert run_sql(settings, "SELECT sum(n) FROM t", "TSV") == b"10\n"  # database of the settings
        with pytest.raises(SqlError, match="read-only"):
            run_sql(settings, f"INSERT INTO {table} VALUES (9)")
        _bound_values_arrive_intact(settings, table)
        many = [f"session-{n}" for n in range(20_000)]  # more than a URL holds
        out = run_sql(settings, "SELECT length({many:Array(String)})", parameters={"many": many})
        assert out == b"20000\n"
    finally:
        remove_stack_file(settings.data_dir)
        server.should_exit = True
        thread.join(10)
    assert query_url(settings.data_dir) is None
