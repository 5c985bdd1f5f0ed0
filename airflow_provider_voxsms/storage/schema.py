"""Every table the provider writes, and the one place that writes their key columns.

A table names its owner first: a task instance (:data:`~.key.TASK_COLUMNS`) for failed
numbers and delivery statuses; a campaign (:data:`~.key.CAMPAIGN_COLUMNS`, with the
``run_id`` that wrote the row) for the results. The ledger's claims and outcomes carry a
digest of the campaign key (``ti_key``), and its leases table maps each digest to the key's
columns. DDL works on SQLite and PostgreSQL alike. Tables made by earlier versions get the
columns added since with ``ALTER TABLE ... ADD COLUMN``, each behind its own probe, so an
upgrade that stopped half-way finishes on the next open.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from itertools import islice, repeat
from typing import Any

from airflow_provider_voxsms.sms.delivery import UNDELIVERED_STATUSES
from airflow_provider_voxsms.storage.key import CAMPAIGN_COLUMNS, TASK_COLUMNS
from airflow_provider_voxsms.storage.sql import (
    check_table_name,
    db_api_hook,
    ensure_schema,
    index_probe,
    transactional,
    utc_now_text,
    where,
)

log = logging.getLogger(__name__)

KEY_COLUMN_TYPES = {
    "dag_id": "VARCHAR(250) NOT NULL",
    "run_id": "VARCHAR(250) NOT NULL",
    "task_id": "VARCHAR(250) NOT NULL",
    "map_index": "INTEGER NOT NULL",
    "campaign_id": "VARCHAR(250) NOT NULL",
}
_INSERT_BATCH_ROWS = 10_000


@dataclass(frozen=True)
class Added:
    """A column added after a table's first version, and the indexes that use it. Older
    tables get it nullable: their rows have no value for it."""

    column: str
    type: str
    indexes: tuple[str, ...] = ()  # names of the schema's indexes to create after it


@dataclass(frozen=True)
class TableSchema:
    """A table: its key columns first (types from :data:`KEY_COLUMN_TYPES`), then ``columns``
    (DDL fragments), indexes named ``ix_<table>_<name>``, and the columns ``added`` since."""

    key: tuple[str, ...]
    columns: tuple[str, ...]
    indexes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    added: tuple[Added, ...] = ()
    added_indexes: tuple[str, ...] = ()  # of ``indexes``, made after the table's first version
    partial: Mapping[str, str] = field(default_factory=dict)  # index name -> its WHERE

    def create(self, table: str) -> list[str]:
        """``CREATE TABLE`` and ``CREATE INDEX`` statements, all ``IF NOT EXISTS``."""
        lines = [f"{column} {KEY_COLUMN_TYPES[column]}" for column in self.key]
        lines += list(self.columns)
        body = ",\n    ".join(lines)
        statements = [f"CREATE TABLE IF NOT EXISTS {table} (\n    {body}\n)"]
        return statements + [self._index(table, name) for name in self.indexes]

    def probe(self, table: str) -> str:
        """A query that fails while the table does not exist."""
        first = self.key[0] if self.key else self.columns[0].split()[0]
        return f"SELECT {first} FROM {table} WHERE 1 = 0"

    def upgrade(self, conn: Any, table: str) -> None:
        """Add the columns older versions of the table lack (a probe each, then ALTER)."""
        for added in self.added:
            ensure_schema(
                conn,
                [f"ALTER TABLE {table} ADD COLUMN {added.column} {added.type}"]
                + [self._index(table, name) for name in added.indexes],
                probe=f"SELECT {added.column} FROM {table} WHERE 1 = 0",
            )
        for name in self.added_indexes:
            try:
                ensure_schema(
                    conn,
                    [self._index(table, name)],
                    probe=index_probe(conn, table, name, self.partial.get(name)),
                )
            except Exception as err:  # an index only speeds reads up: never fail a write for it
                log.warning("Could not add index %s to %s: %s", name, table, err)

    def ensure(self, conn: Any, table: str) -> None:
        """Create the table where absent, and bring an older one up to date."""
        ensure_schema(conn, self.create(table), probe=self.probe(table))
        self.upgrade(conn, table)

    def replace(
        self,
        conn_id: str,
        table: str,
        key: Mapping[str, Any],
        columns: Sequence[str],
        values: Sequence[Sequence[Any]],
    ) -> int:
        """Replace the rows of ``table`` whose key columns hold ``key`` in one transaction
        (the table made first where needed); return the rows written.

        ``key`` maps this schema's key columns to their values; ``values`` holds one sequence
        per name in ``columns`` (Python values, None for NULL), and the last of ``columns``
        gets the UTC time of the call.
        """
        check_table_name(table)
        if tuple(key) != self.key:
            raise ValueError(f"the key must give {self.key}, got {tuple(key)}")
        hook = db_api_hook(conn_id)
        n_rows = len(values[0]) if values else 0
        now = utc_now_text(timespec="auto")
        owner = tuple(key.values())
        rows = zip(*(repeat(v, n_rows) for v in owner), *values, repeat(now, n_rows), strict=True)
        names = [*self.key, *columns]
        insert_sql = hook.dialect.generate_insert_sql(table, names, names)
        with transactional(hook) as conn:
            self.ensure(conn, table)
            with closing(conn.cursor()) as cur:
                cur.execute(f"DELETE FROM {table} WHERE {where(hook, self.key)}", owner)
                for batch in _batches(rows, _INSERT_BATCH_ROWS):
                    cur.executemany(insert_sql, batch)
            conn.commit()
        hook.log.info("Wrote %d rows to %s for %s", n_rows, table, owner)
        return n_rows

    def _index(self, table: str, name: str) -> str:
        columns = ", ".join(self.indexes[name])
        only = f" WHERE {self.partial[name]}" if name in self.partial else ""
        return f"CREATE INDEX IF NOT EXISTS ix_{table}_{name} ON {table} ({columns}){only}"


def ensure_tables(conn: Any, tables: Sequence[tuple[TableSchema, str]]) -> None:
    """Create several tables as one step (probing the last), then upgrade each."""
    statements = [statement for schema, table in tables for statement in schema.create(table)]
    last, last_table = tables[-1]
    ensure_schema(conn, statements, probe=last.probe(last_table))
    for schema, table in tables:
        schema.upgrade(conn, table)


def _batches(rows: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    while batch := list(islice(rows, size)):
        yield batch


# -- the send ledger (storage.ledger, .caps): claims and outcomes under the campaign's digest --

LEDGER_CLAIMS = TableSchema(
    key=(),
    columns=(
        "claim_id CHAR(32) NOT NULL PRIMARY KEY",
        "ti_key CHAR(32) NOT NULL",
        "text_hash CHAR(16) NOT NULL",
        "numbers TEXT NOT NULL",
        "claimed_at TIMESTAMP NOT NULL",
    ),
    indexes={"key": ("ti_key",)},
)
LEDGER_OUTCOMES = TableSchema(
    key=(),
    columns=(
        "ti_key CHAR(32) NOT NULL",
        "text_hash CHAR(16) NOT NULL",
        "outcome TEXT NOT NULL",
        "recorded_at TIMESTAMP NOT NULL",
    ),
    indexes={"key": ("ti_key",)},
)
# One row per campaign digest; ``run_id`` is the run of the try holding it. Rows written
# before campaigns existed hold a task instance's digest and no campaign_id.
LEDGER_LEASES = TableSchema(
    key=("dag_id", "run_id", "task_id", "map_index", "campaign_id"),
    columns=(
        "ti_key CHAR(32) NOT NULL PRIMARY KEY",
        "holder CHAR(32) NOT NULL",
        "taken_at TIMESTAMP NOT NULL",
        "started_at TIMESTAMP",
        "last_claim_at TIMESTAMP",
    ),
    added=(Added("campaign_id", "VARCHAR(250)"), Added("started_at", "TIMESTAMP")),
)
# One row per message every campaign of the ledger claimed and that was (or may have been)
# accepted, for the frequency caps (storage.caps); ``claimed_at`` to the microsecond.
LEDGER_CONTACTS = TableSchema(
    key=(),
    columns=(
        "number VARCHAR(32) NOT NULL",
        "ti_key CHAR(32) NOT NULL",
        "text_hash CHAR(16) NOT NULL",
        "claimed_at TIMESTAMP NOT NULL",
    ),
    indexes={"number": ("number", "claimed_at")},
)
# One row (id 1) that every capped claim updates first: capped claims take turns.
LEDGER_CAP_LOCK = TableSchema(
    key=(),
    columns=("id INTEGER NOT NULL PRIMARY KEY", "locked_at TIMESTAMP"),
)

# -- one row per input row of a campaign (storage.results) ------------------------------------

# The outcomes whose numbers the campaign page lists as failed (ui.failed_rows.FAILED_STAGES).
FAILED_OUTCOMES = ("capped", "expired", "failed", "invalid", "not_sent")

RESULTS = TableSchema(
    key=("dag_id", "run_id", "task_id", "map_index", "campaign_id"),
    columns=(
        "destination_number VARCHAR(16)",
        "input_number TEXT",
        "outcome VARCHAR(16) NOT NULL",
        "message_id BIGINT",
        "error_code BIGINT",
        "reason TEXT",
        "time_zone TEXT",
        "next_window_start VARCHAR(40)",
        "recorded_at TIMESTAMP NOT NULL",
        "variant VARCHAR(64)",
    ),
    # "failed": the campaign page's failed numbers, a page at a time in their order. Partial:
    # accepted rows (most of them) cost the send no index entry. A query uses it when it
    # repeats its WHERE word for word (SQLite proves no more).
    indexes={
        "campaign": CAMPAIGN_COLUMNS,
        "failed": (*CAMPAIGN_COLUMNS, "outcome", "destination_number"),
    },
    added=(
        Added("campaign_id", "VARCHAR(250)", indexes=("campaign",)),
        Added("variant", "VARCHAR(64)"),
    ),
    added_indexes=("failed",),
    partial={"failed": f"outcome IN ({', '.join(repr(o) for o in FAILED_OUTCOMES)})"},
)

# -- rows a user's DAG writes per task instance (storage.failed_numbers, .delivery_status) -----

FAILED_NUMBERS = TableSchema(
    key=TASK_COLUMNS,
    columns=(
        "destination_number TEXT",
        "input_number TEXT",
        "error_code BIGINT",
        "error_description TEXT",
        "stage VARCHAR(16) NOT NULL",
        "logged_at TIMESTAMP NOT NULL",
    ),
    indexes={"ti": ("dag_id", "run_id", "task_id")},
    added=(Added("input_number", "TEXT"),),
)
DELIVERY_STATUS = TableSchema(
    key=TASK_COLUMNS,
    columns=(
        "message_id BIGINT NOT NULL",
        "destination_number TEXT",
        "delivery_status VARCHAR(16) NOT NULL",
        "error_message TEXT",
        "fragments INTEGER",
        "cost DOUBLE PRECISION",
        "processing_date TEXT",
        "checked_at TIMESTAMP NOT NULL",
    ),
    # "undelivered": the campaign page's failed deliveries in their order (partial, as above)
    indexes={
        "ti": ("dag_id", "run_id", "task_id"),
        "undelivered": (*TASK_COLUMNS, "message_id"),
    },
    added_indexes=("undelivered",),
    partial={
        "undelivered": f"delivery_status IN ({', '.join(repr(s) for s in sorted(UNDELIVERED_STATUSES))})"
    },
)

# -- a campaign's counts, stored when its rows are complete (storage.summary) ------------------

# Owned as the rows it counts: a campaign's (campaign_id, and the run that wrote it) or a task
# instance's (campaign_id ''). ``source`` names the table counted, ``kind`` the grouping; the
# other columns are the grouping's, NULL where it has no such column.
SUMMARY = TableSchema(
    key=RESULTS.key,
    columns=(
        "source VARCHAR(64) NOT NULL",
        "kind VARCHAR(16) NOT NULL",
        "head VARCHAR(8)",
        "label VARCHAR(16)",
        "variant VARCHAR(64)",
        "error_code BIGINT",
        "reason TEXT",
        "minute INTEGER",
        "n BIGINT NOT NULL",
        "fragments BIGINT",
        "cost DOUBLE PRECISION",
        "costed BIGINT",
        "written_at TIMESTAMP NOT NULL",
        "joined TEXT",
    ),
    indexes={"owner": ("dag_id", "task_id", "map_index", "campaign_id", "source")},
    added=(Added("joined", "TEXT"),),  # the results rows a report's count joined
)
