"""Rollup quantiles from value -> calls histograms (schemas/clickhouse/0014_rollup_histograms.sql), on the
real engine: a store with rows keeps every view row, value for value, across the migration, and the
rollups hold histograms instead of quantile states afterwards. (Exactness against the CDRs, for rows
loaded after the migration, is tests/test_rollups.py.)"""

from __future__ import annotations

from typing import Any

from bench.analytics import ROLLUPS, VIEWS, generate
from core import store
from core.settings import Settings
from schemas.migrate import apply_migrations, discover
from tests.test_rollups import counts, same_row, view_rows


def rollup_columns(client: Any, db: str) -> set[tuple[str, str]]:
    rows = store.query_rows(client, "SELECT table, name FROM system.columns WHERE database = {db:String} "
                            "AND table IN {t:Array(String)} AND (name LIKE '%quantiles' OR name LIKE '%hist')",
                            {"db": db, "t": list(ROLLUPS)})
    return {(str(t), str(n)) for t, n in rows}


def test_migration_keeps_every_view_row_of_a_store_with_rows(settings: Settings) -> None:
    client = store.connect(settings)
    db = settings.clickhouse_database
    histograms = next(m for m in discover() if m.name == "rollup_histograms")
    apply_migrations(settings, client, upto=histograms.version - 1)
    generate(client, db, 20_000, days=3, apps=3, chunk=10_000)  # two inserts: unmerged rollup parts
    before = {view: view_rows(client, db, view) for view in VIEWS}
    assert ("rollup_by_binding", "pdd_quantiles") in rollup_columns(client, db)

    assert histograms.label in apply_migrations(settings, client)
    for view, (columns, rows) in before.items():
        columns_after, rows_after = view_rows(client, db, view)
        assert columns_after == columns, view
        assert len(rows_after) == len(rows) > 0, view
        wrong = [(a, b) for a, b in zip(rows_after, rows, strict=True) if not same_row(a, b)]
        assert not wrong, f"{view}: {len(wrong)} rows differ, first {wrong[0]}"
    with_quantiles = [r for r in before["kpi_by_binding"][1] if r[-1] is not None]
    assert with_quantiles  # there were quantiles to compare
    columns = rollup_columns(client, db)
    for rollup in ("rollup_hourly", "rollup_by_number", "rollup_by_binding"):
        assert {(rollup, "pdd_hist"), (rollup, "ring_hist")} <= columns, columns
        assert (rollup, "pdd_quantiles") not in columns and (rollup, "ring_quantiles") not in columns
    assert all(got == want for got, want in counts(client, db).values()), counts(client, db)

    generate(client, db, 5_000, days=3, apps=3, chunk=5_000, seed=9)  # the new views feed the new columns
    assert all(got == want for got, want in counts(client, db).values()), counts(client, db)
