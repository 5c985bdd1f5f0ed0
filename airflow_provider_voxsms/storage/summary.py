"""A campaign's counts, stored once when its rows are complete, for the campaign page.

The page counts a send's rows by number head, outcome, variant, code and reason, and a delivery
report's by status and minutes, and delivered by number head (:data:`GROUPINGS`). Over the
rows themselves that is a scan that grows with the campaign (9-19 s at 4M rows). So the send
(``results.ResultsTable``) and the report (``delivery_status.DeliveryStatusTable``) run those
same ``GROUP BY`` s once, as ``INSERT ... SELECT``, into ``voxsms_campaign_summary`` on the
rows' own connection when they finish, and the page reads those instead (a few dozen rows for
a campaign to one country; at most a few thousand, whatever the campaign's size).

A summary exists only for rows that are complete: a try forgets its owner's summary in the
transaction that deletes its earlier rows (:func:`forget`), and writes the new one (in one
transaction, after every row is committed) only when it leaves without an error
(:func:`store`). A try that fails part-way leaves none, nor do runs from before this table:
the page then scans the rows as before. A ``rows`` marker (the rows counted) tells a summary
of no rows from no summary.

One count needs both tables: delivered per text variant (the variant is on the send's row, the
status on the report's). A report that followed a send's results table on its own connection
joins the two on the message id when it stores its counts, if the send had variants
(:data:`VARIANTS`, owned by the report, each row naming the results rows it joined:
:func:`joined_tag`). A send that rewrites its rows forgets those counts
(:func:`forget_joined`), so a stored join is always of the rows in place; without one the
page joins the tables itself.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from airflow_provider_voxsms.storage.key import CAMPAIGN_COLUMNS, TASK_COLUMNS
from airflow_provider_voxsms.storage.schema import SUMMARY
from airflow_provider_voxsms.storage.sql import check_table_name, transactional

log = logging.getLogger(__name__)

SUMMARY_TABLE = "voxsms_campaign_summary"
NO_CAMPAIGN = ""  # the campaign_id of a summary of rows a task instance owns (a report's)
OWNER_COLUMNS = SUMMARY.key  # dag_id, run_id, task_id, map_index, campaign_id

# The first three digits of a number (a leading "+" skipped): enough to name its calling code,
# as calling codes are prefix-free and at most three digits long. (No literal "%" in the SQL:
# psycopg reads it as a parameter mark.)
HEAD = (
    "CASE WHEN SUBSTR(destination_number, 1, 1) = '+' THEN SUBSTR(destination_number, 2, 3) "
    "ELSE SUBSTR(destination_number, 1, 3) END"
)
# Where the SQL differs: whole minutes from the history's processing_date to the report's row
# (checked_at), and the sum of the costs. PostgreSQL sums a large table's floats in parallel
# workers, in an order that changes from one query to the next (4M rows: the last digits of
# the total did); as NUMERIC the sum is exact, so every count of the same rows agrees.
DIALECT_SQL = {
    "sqlite": {
        "minutes": "CAST((julianday(checked_at) - julianday(processing_date)) * 1440 AS INTEGER)",
        "cost": "SUM(cost)",
    },
    "postgresql": {
        "minutes": (
            "CAST(FLOOR(EXTRACT(EPOCH FROM (checked_at - CAST(processing_date AS TIMESTAMP)))"
            " / 60) AS INTEGER)"
        ),
        "cost": "SUM(CAST(cost AS NUMERIC))",
    },
}


@dataclass(frozen=True)
class Grouping:
    """One ``GROUP BY`` the page runs: ``columns`` (the summary's names) computed by
    ``exprs`` (``{name}``: the dialect's :data:`DIALECT_SQL`), grouped by the first ``keys``
    of them, over the rows matching ``extra``."""

    columns: tuple[str, ...]
    exprs: tuple[str, ...]
    keys: int
    extra: str = ""

    def select_list(self, dialect: str) -> str:
        return ", ".join(self._sql(dialect))

    def group_by(self, dialect: str) -> str:
        exprs = self._sql(dialect)[: self.keys]
        return f"GROUP BY {', '.join(exprs)}" if exprs else ""

    def _sql(self, dialect: str) -> list[str]:
        return [e.format(**DIALECT_SQL[dialect]) if "{" in e else e for e in self.exprs]


GROUPINGS = {
    "rows": Grouping(("n",), ("COUNT(*)",), 0),
    "send": Grouping(
        ("head", "label", "variant", "error_code", "reason", "n"),
        (HEAD, "outcome", "variant", "error_code", "reason", "COUNT(*)"),
        5,
    ),
    "status": Grouping(
        ("label", "minute", "n", "fragments", "cost", "costed"),
        ("delivery_status", "{minutes}", "COUNT(*)", "SUM(fragments)", "{cost}", "COUNT(cost)"),
        2,
    ),
    "delivered": Grouping(
        ("head", "n"), (HEAD, "COUNT(*)"), 1, extra="delivery_status = 'DELIVERED'"
    ),
}
SEND_KINDS = ("rows", "send")
REPORT_KINDS = ("rows", "status", "delivered")
# Delivered per variant, from the join of a report's rows with a send's (:func:`store`'s
# ``joined``): per results location, a marker row (variant NULL, n 0: "joined, whatever it
# found") and one row per variant with a delivered message.
VARIANTS = "variants"
STORED_COLUMNS = {
    **{kind: grouping.columns for kind, grouping in GROUPINGS.items()},
    VARIANTS: ("joined", "variant", "n"),
}


def dialect(conn: Any) -> str:
    """``"sqlite"`` for a sqlite3 connection, else ``"postgresql"`` (the tables' other home)."""
    return "sqlite" if isinstance(conn, sqlite3.Connection) else "postgresql"


def owner_of(key: Mapping[str, Any]) -> dict[str, Any]:
    """The summary's key columns for rows owned by ``key``: a campaign's (with the run that
    wrote them) or a task instance's (campaign_id ``''``)."""
    return {column: key.get(column, NO_CAMPAIGN) for column in OWNER_COLUMNS}


def rows_key(key: Mapping[str, Any]) -> dict[str, Any]:
    """The columns that own the rows: a campaign's (they outlive the run that wrote them) or
    a task instance's."""
    columns = CAMPAIGN_COLUMNS if "campaign_id" in key else TASK_COLUMNS
    return {column: key[column] for column in columns}


def _matching(key: Mapping[str, Any]) -> dict[str, Any]:
    """The summary's columns that name the owner of rows keyed by ``key``."""
    owned = rows_key(key)
    return owned if "campaign_id" in owned else {**owned, "campaign_id": NO_CAMPAIGN}


def forget(cur: Any, placeholder: str, source: str, key: Mapping[str, Any]) -> None:
    """Delete the summary of ``source``'s rows owned by ``key`` (in the caller's transaction,
    the one that deletes those rows)."""
    match = _matching(key)
    conditions = " AND ".join(f"{c} = {placeholder}" for c in (*match, "source"))
    cur.execute(f"DELETE FROM {SUMMARY_TABLE} WHERE {conditions}", (*match.values(), source))


def ensure(conn: Any) -> None:
    """Create the summary table where absent."""
    SUMMARY.ensure(conn, SUMMARY_TABLE)


def joined_tag(table: str, key: Mapping[str, Any]) -> str:
    """The results rows a report joined, as the summary's ``joined`` text: their table and
    owner (:func:`rows_key` of a results location, or of the page's rows of it)."""
    return json.dumps({"table": table, **rows_key(key)}, sort_keys=True, separators=(",", ":"))


def forget_joined(cur: Any, placeholder: str, table: str, key: Mapping[str, Any]) -> None:
    """Delete every report's :data:`VARIANTS` joined with ``table``'s rows owned by ``key`` (in
    the transaction that deletes those rows: a join of rows no longer there is no count)."""
    cur.execute(
        f"DELETE FROM {SUMMARY_TABLE} WHERE kind = {placeholder} AND joined = {placeholder}",
        (VARIANTS, joined_tag(table, key)),
    )


def forget_now(hook: Any, source: str, key: Mapping[str, Any]) -> None:
    """:func:`forget` in a transaction of its own, before rows are replaced elsewhere."""
    with transactional(hook) as conn:
        ensure(conn)
        with closing(conn.cursor()) as cur:
            forget(cur, hook.placeholder, source, key)
        conn.commit()


def store(
    hook: Any,
    source: str,
    key: Mapping[str, Any],
    kinds: Sequence[str],
    joined: Sequence[Mapping[str, Any]] = (),
) -> bool:
    """Replace the summary of ``source``'s rows owned by ``key`` (a campaign's key with the
    ``run_id`` that wrote them, or a task instance's) with ``kinds`` of
    :data:`GROUPINGS`, counted by the database, in one transaction; and, for a report's rows,
    with :data:`VARIANTS` of their join with each results location in ``joined`` (tables on
    this connection). Returns whether it was written: a failure is logged, not raised (the
    rows are written; the page scans them)."""
    check_table_name(source)
    try:
        with transactional(hook) as conn:
            ensure(conn)
            with closing(conn.cursor()) as cur:
                forget(cur, hook.placeholder, source, key)
                for kind in kinds:
                    cur.execute(*_insert(hook.placeholder, dialect(conn), source, key, kind))
                for location in joined:
                    _store_variants(cur, hook.placeholder, source, key, location)
            conn.commit()
        return True
    except Exception as err:
        log.warning(
            "Could not store the counts of %s for the campaign page (it will count the rows "
            "instead): %s: %s",
            source,
            type(err).__name__,
            err,
        )
        return False


def _insert(mark: str, dialect_: str, source: str, key: Mapping[str, Any], kind: str):
    """``INSERT INTO summary ... SELECT <the page's GROUP BY>`` and its parameters."""
    grouping, owner, owned = GROUPINGS[kind], owner_of(key), rows_key(key)
    names = (*OWNER_COLUMNS, "source", "kind", *grouping.columns, "written_at")
    consts = [mark] * (len(OWNER_COLUMNS) + 2)
    where = " AND ".join(f"{column} = {mark}" for column in owned)
    if grouping.extra:
        where += f" AND ({grouping.extra})"
    sql = (
        f"INSERT INTO {SUMMARY_TABLE} ({', '.join(names)}) "
        f"SELECT {', '.join(consts)}, {grouping.select_list(dialect_)}, CURRENT_TIMESTAMP "
        f"FROM {source} WHERE {where} {grouping.group_by(dialect_)}"
    )
    params = (*owner.values(), source, kind, *owned.values())
    return sql.strip(), params


def _store_variants(cur: Any, mark: str, source: str, key: Mapping[str, Any], location: Mapping):
    """Insert the :data:`VARIANTS` of ``source``'s rows joined with ``location``'s, when the
    send had text variants (its own stored counts name one): a campaign without them costs
    the report no join (and, without the send's counts, the page joins as before)."""
    match = _matching(location)
    conditions = " AND ".join(f"{c} = {mark}" for c in (*match, "source", "kind"))
    cur.execute(
        f"SELECT 1 FROM {SUMMARY_TABLE} WHERE {conditions} AND variant IS NOT NULL LIMIT 1",
        (*match.values(), location["table"], "send"),
    )
    if cur.fetchone() is not None:
        for statement in _variants_inserts(mark, source, key, location):
            cur.execute(*statement)


def _variants_inserts(mark: str, source: str, key: Mapping[str, Any], location: Mapping):
    """The :data:`VARIANTS` of ``source``'s rows owned by ``key`` (a report's) joined with the
    accepted rows of a send's results ``location`` on the message id (the join the page ran):
    its marker row and ``INSERT ... SELECT``, with their parameters."""
    table, results, report = location["table"], rows_key(location), rows_key(key)
    check_table_name(table)
    names = ", ".join((*OWNER_COLUMNS, "source", "kind", "joined", "variant", "n", "written_at"))
    consts = ", ".join([mark] * (len(OWNER_COLUMNS) + 3))
    head = (*owner_of(key).values(), source, VARIANTS, joined_tag(table, location))
    marker = f"INSERT INTO {SUMMARY_TABLE} ({names}) VALUES ({consts}, NULL, 0, CURRENT_TIMESTAMP)"
    on_send = " AND ".join(f"o.{column} = {mark}" for column in results)
    on_report = " AND ".join(f"s.{column} = {mark}" for column in report)
    join = (
        f"INSERT INTO {SUMMARY_TABLE} ({names}) "
        f"SELECT {consts}, o.variant, COUNT(*), CURRENT_TIMESTAMP "
        f"FROM {table} o JOIN {source} s ON s.message_id = o.message_id "
        f"WHERE {on_send} AND o.variant IS NOT NULL AND o.outcome = 'accepted' "
        f"AND {on_report} AND s.delivery_status = 'DELIVERED' GROUP BY o.variant"
    )
    return [(marker, head), (join, (*head, *results.values(), *report.values()))]


def read(
    conn: Any, placeholder: str, source: str, key: Mapping[str, Any]
) -> dict[str, list[tuple]] | None:
    """The stored groups of ``source``'s rows owned by ``key`` (kind -> rows of its
    ``columns``, in a stable order), or None when there is no summary: none was written, or
    the table does not exist (then, on PostgreSQL, the read is rolled back)."""
    if not set(key) <= set(OWNER_COLUMNS):  # rows of no stored table (XCom's, in memory)
        return None
    match = _matching(key)
    conditions = " AND ".join(f"{c} = {placeholder}" for c in (*match, "source"))
    columns = sorted({column for names in STORED_COLUMNS.values() for column in names})
    sql = (
        f"SELECT kind, {', '.join(columns)} FROM {SUMMARY_TABLE} WHERE {conditions} "
        f"ORDER BY kind, {', '.join(columns)}"
    )
    try:
        with closing(conn.cursor()) as cur:
            cur.execute(sql, (*match.values(), source))
            found = cur.fetchall()
    except Exception:  # no summary table on this connection (yet)
        if dialect(conn) != "sqlite":  # PostgreSQL refuses all else until the read ends
            conn.rollback()
        return None
    stored: dict[str, list[tuple]] = {kind: [] for kind in STORED_COLUMNS}
    for kind, *values in found:
        row = dict(zip(columns, values, strict=True))
        stored[kind].append(tuple(row[column] for column in STORED_COLUMNS[kind]))
    return stored if stored["rows"] else None
