"""The single source of truth for data shapes: Avro schemas, ClickHouse DDL and views, code tables.

    schemas/avro/*.avsc           records published to Kafka (``schemas.avro_codec``)
    schemas/clickhouse/*.sql      versioned migrations applied by ``callstream migrate``
    schemas/codes/*.csv           Huawei code tables used for enrichment (``schemas.codes``)
"""

from pathlib import Path

SCHEMAS_DIR = Path(__file__).parent
AVRO_DIR = SCHEMAS_DIR / "avro"
CLICKHOUSE_DIR = SCHEMAS_DIR / "clickhouse"
CODES_DIR = SCHEMAS_DIR / "codes"

#: the tables of loaded records, in the order of the flow (a push's CDRs, its events, number status)
ROW_TABLES = ("cdrs", "call_events", "number_status")
#: every table the consumer writes: the loaded records and the quarantine
TABLES = (*ROW_TABLES, "failed_events")
#: every stored callout sorted by session, fed from call_events (0018_session_callouts.sql): the legs' lookup
CALLOUTS_TABLE = "session_callouts"

__all__ = ["SCHEMAS_DIR", "AVRO_DIR", "CLICKHOUSE_DIR", "CODES_DIR", "ROW_TABLES", "TABLES", "CALLOUTS_TABLE"]
