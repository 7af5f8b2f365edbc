"""Single-node DDL -> cluster DDL: Replicated ``<table>_local`` tables plus ``Distributed`` ``<table>``.

``cluster_statements(statements, cluster, db)`` is a pure text transformation of the statements that
``schemas/migrate.py`` renders for one node:

* ``CREATE TABLE db.t (...) ENGINE = XMergeTree(args)`` becomes
  ``CREATE TABLE db.t_local ON CLUSTER c (...) ENGINE = ReplicatedXMergeTree('/clickhouse/tables/{shard}/
  {database}/{table}', '{replica}', args)`` and ``CREATE TABLE db.t ON CLUSTER c AS db.t_local ENGINE =
  Distributed(c, db, t_local, <sharding key>)``. Readers and the loader keep using ``db.t``.
* The sharding key keeps every row of one call on one shard (``cityHash64(session_id)``); tables without a
  session use ``cityHash64(dedup_key)``, so a duplicate always meets its twin and ReplacingMergeTree can
  collapse it. A retried insert of the same block is dropped by ``replicated_deduplication_window``
  (the single-node ``non_replicated_deduplication_window`` setting is renamed to it).
* Views, dictionaries, databases, ALTER/DROP/TRUNCATE/OPTIMIZE/RENAME get ``ON CLUSTER``. Plain views keep
  reading ``db.t`` (the Distributed table); materialized views fire on inserts into the local tables,
  so their ``FROM``/``TO`` tables are rewritten to ``*_local``.
"""

from __future__ import annotations

import re

__all__ = ["REPLICA_PATH", "cluster_statements", "merge_tree_tables", "sharding_key"]

REPLICA_PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"

_IDENT = r"`?[A-Za-z_][A-Za-z0-9_]*`?"
_NAME = rf"(?:(?P<db>{_IDENT})\.)?(?P<name>{_IDENT})"
_CREATE_RE = re.compile(
    r"^\s*CREATE\s+(?P<or_replace>OR\s+REPLACE\s+)?"
    r"(?P<kind>TABLE|DATABASE|VIEW|MATERIALIZED\s+VIEW|DICTIONARY|LIVE\s+VIEW|WINDOW\s+VIEW)\s+"
    rf"(?P<ine>IF\s+NOT\s+EXISTS\s+)?{_NAME}",
    re.IGNORECASE,
)
_ALTERLIKE_RE = re.compile(
    rf"^\s*(?P<verb>ALTER\s+TABLE|DROP\s+(?:TABLE|VIEW|DICTIONARY|DATABASE)|TRUNCATE\s+TABLE|OPTIMIZE\s+TABLE)\s+"
    rf"(?P<ie>IF\s+(?:NOT\s+)?EXISTS\s+)?{_NAME}",
    re.IGNORECASE,
)
_RENAME_RE = re.compile(r"^\s*RENAME\s+(?:TABLE|DICTIONARY|DATABASE)\s+.+$", re.IGNORECASE | re.DOTALL)
_ENGINE_RE = re.compile(r"ENGINE\s*=\s*(?P<family>[A-Za-z]*)MergeTree\s*(?:\((?P<args>[^()]*(?:\([^()]*\)[^()]*)*)\))?",
                        re.IGNORECASE)
_ON_CLUSTER_RE = re.compile(r"\bON\s+CLUSTER\b", re.IGNORECASE)
_COLUMN_OP_RE = re.compile(
    r"^\s*(ADD|DROP|MODIFY|RENAME|COMMENT|CLEAR)\s+COLUMN\b", re.IGNORECASE
)


def _bare(identifier: str | None) -> str:
    return (identifier or "").strip("`")


def _columns(statement: str) -> set[str]:
    """Column names declared in a ``CREATE TABLE (...)`` body (first word of each top-level item)."""
    start = statement.find("(")
    if start < 0:
        return set()
    depth, item, items = 0, list[str](), list[str]()
    for char in statement[start + 1:]:
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                break
            depth -= 1
        if char == "," and depth == 0:
            items.append("".join(item))
            item = []
        else:
            item.append(char)
    items.append("".join(item))
    names = set()
    for text in items:
        words = text.split()
        if words and words[0].upper() not in {"INDEX", "PROJECTION", "CONSTRAINT", "PRIMARY"}:
            names.add(_bare(words[0]))
    return names


def sharding_key(columns: set[str]) -> str:
    """Rows of one call on one shard; otherwise duplicates by business key on one shard."""
    if "session_id" in columns:
        return "cityHash64(session_id)"
    if "dedup_key" in columns:
        return "cityHash64(dedup_key)"
    if "version" in columns:
        return "version"
    return "rand()"


def _replicated_engine(match: re.Match[str]) -> str:
    family = match.group("family") or ""
    if family.lower().startswith("replicated"):
        return match.group(0)
    args = (match.group("args") or "").strip()
    return f"ENGINE = Replicated{family}MergeTree({REPLICA_PATH}{', ' + args if args else ''})"


def _insert_on_cluster(statement: str, end: int, cluster: str) -> str:
    return f"{statement[:end]} ON CLUSTER {cluster}{statement[end:]}"


def _localise_refs(statement: str, db: str, local: set[str]) -> str:
    """Point ``db.t`` (and ``FROM/JOIN/TO t``) at ``db.t_local`` for every localised table ``t``."""
    for table in sorted(local, key=len, reverse=True):
        name = rf"`?{re.escape(table)}`?(?![\w`])"
        statement = re.sub(rf"(?<![\w.`])`?{re.escape(db)}`?\.{name}", f"{db}.{table}_local", statement)
        statement = re.sub(rf"\b(FROM|JOIN|TO)(\s+){name}", rf"\1\g<2>{table}_local", statement, flags=re.I)
    return statement


def _create(statement: str, match: re.Match[str], cluster: str, db: str, local: set[str]) -> list[str]:
    kind = " ".join(match.group("kind").upper().split())
    name = _bare(match.group("name"))
    if kind == "DATABASE":
        return [_insert_on_cluster(statement, match.end(), cluster)]
    if kind == "MATERIALIZED VIEW":
        head, body = statement[: match.end()], statement[match.end():]
        body = _ENGINE_RE.sub(_replicated_engine, _localise_refs(body, db, local))
        return [_insert_on_cluster(head + body, match.end(), cluster)]
    if kind != "TABLE" or not _ENGINE_RE.search(statement) or re.search(r"\bAS\s+SELECT\b", statement, re.I):
        return [_insert_on_cluster(statement, match.end(), cluster)]
    table_db = _bare(match.group("db")) or db
    local_name = f"{name}_local"
    local_head = statement[: match.start("name")] + local_name
    local_stmt = local_head + statement[match.end():]
    local_stmt = _ENGINE_RE.sub(_replicated_engine, local_stmt, count=1)
    local_stmt = re.sub(r"\bnon_replicated_deduplication_window\b", "replicated_deduplication_window", local_stmt)
    local_stmt = _insert_on_cluster(local_stmt, len(local_head), cluster)
    ine = "IF NOT EXISTS " if match.group("ine") else ""
    replace = "OR REPLACE " if match.group("or_replace") else ""
    distributed = (
        f"CREATE {replace}TABLE {ine}{table_db}.{name} ON CLUSTER {cluster} AS {table_db}.{local_name} "
        f"ENGINE = Distributed({cluster}, {table_db}, {local_name}, {sharding_key(_columns(statement))})"
    )
    local.add(name)
    return [local_stmt, distributed]


def _alterlike(statement: str, match: re.Match[str], cluster: str, local: set[str]) -> list[str]:
    verb = " ".join(match.group("verb").upper().split())
    name = _bare(match.group("name"))
    if name not in local or verb == "DROP DATABASE":
        return [_insert_on_cluster(statement, match.end(), cluster)]
    head = statement[: match.start("name")]
    local_stmt = _insert_on_cluster(head + f"{name}_local" + statement[match.end():], len(head) + len(name) + 6, cluster)
    dist_stmt = _insert_on_cluster(statement, match.end(), cluster)
    if verb == "ALTER TABLE":
        rest = statement[match.end():]
        if _COLUMN_OP_RE.match(rest):
            return [local_stmt, dist_stmt]
        return [local_stmt]
    if verb == "DROP TABLE":
        return [dist_stmt, local_stmt]
    return [local_stmt]  # TRUNCATE / OPTIMIZE act on the data, which lives in the local tables


def merge_tree_tables(statements: list[str]) -> set[str]:
    """Names of the ``*MergeTree`` tables that ``statements`` create (those become ``<name>_local``)."""
    names = set()
    for statement in statements:
        match = _CREATE_RE.match(statement)
        if (match and match.group("kind").upper() == "TABLE" and _ENGINE_RE.search(statement)
                and not re.search(r"\bAS\s+SELECT\b", statement, re.I)):
            names.add(_bare(match.group("name")))
    return names


def cluster_statements(
    statements: list[str], cluster: str, db: str, local_tables: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """The cluster version of single-node DDL ``statements`` for cluster ``cluster`` and database ``db``;
    ``local_tables`` names tables an earlier migration created (an ALTER of them targets ``*_local``)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cluster):
        raise ValueError(f"cluster name {cluster!r} must be a plain identifier (letters, digits, _)")
    local: set[str] = set(local_tables)
    out: list[str] = []
    for raw in statements:
        statement = raw.strip().rstrip(";").strip()
        if not statement:
            continue
        if _ON_CLUSTER_RE.search(statement):
            out.append(statement)  # already cluster DDL: leave it as written
            continue
        create = _CREATE_RE.match(statement)
        if create:
            out.extend(_create(statement, create, cluster, db, local))
            continue
        alter = _ALTERLIKE_RE.match(statement)
        if alter:
            out.extend(_alterlike(statement, alter, cluster, local))
            continue
        if _RENAME_RE.match(statement):
            out.append(f"{statement} ON CLUSTER {cluster}")
            continue
        out.append(statement)  # INSERT / SELECT / SET: through the Distributed tables
    return out
