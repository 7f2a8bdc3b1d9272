"""The on-disk layout of the local Weave trace store: one SQLite file, shared by writer and readers.

The writer is `weave_sqlite.SqliteTraceServer` (behind Weave's own client); readers (the tracking
store, the MCP server) query it directly so they never pay Weave's import cost.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tools.core.redaction import redact_text

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    parent_id TEXT,
    op_name TEXT NOT NULL,
    display_name TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    inputs TEXT NOT NULL DEFAULT '{}',
    output TEXT,
    summary TEXT,
    exception TEXT,
    wb_run_id TEXT,
    wb_user_id TEXT,
    thread_id TEXT,
    turn_id TEXT,
    deleted_at TEXT
);
CREATE INDEX IF NOT EXISTS calls_project ON calls (project_id, started_at);
CREATE INDEX IF NOT EXISTS calls_parent ON calls (parent_id);
CREATE TABLE IF NOT EXISTS objects (
    project_id TEXT NOT NULL,
    object_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    kind TEXT NOT NULL,
    base_object_class TEXT,
    leaf_object_class TEXT,
    val TEXT NOT NULL,
    created_at TEXT NOT NULL,
    version_index INTEGER NOT NULL,
    PRIMARY KEY (project_id, object_id, digest)
);
CREATE TABLE IF NOT EXISTS tables (
    project_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    row_digests TEXT NOT NULL,
    PRIMARY KEY (project_id, digest)
);
CREATE TABLE IF NOT EXISTS table_rows (
    project_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    val TEXT NOT NULL,
    PRIMARY KEY (project_id, digest)
);
CREATE TABLE IF NOT EXISTS files (
    project_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (project_id, digest)
);
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    weave_ref TEXT NOT NULL,
    feedback_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""

CALL_COLUMNS = (
    "id",
    "project_id",
    "trace_id",
    "parent_id",
    "op_name",
    "display_name",
    "started_at",
    "ended_at",
    "attributes",
    "inputs",
    "output",
    "summary",
    "exception",
    "wb_run_id",
    "wb_user_id",
    "thread_id",
    "turn_id",
    "deleted_at",
)
JSON_CALL_COLUMNS = frozenset({"attributes", "inputs", "output", "summary"})


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open the store; the writer creates it, readers open it read-only (WAL lets both work at once)."""
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
    conn.row_factory = sqlite3.Row
    return conn


def dumps(value: Any) -> str:
    """JSON for the store; known secrets and bearer tokens masked (a traced input may quote a key an
    upstream echoed back)."""
    return redact_text(json.dumps(value, default=str, ensure_ascii=False))


def call_from_row(row: sqlite3.Row) -> dict[str, Any]:
    """A stored call as the dict Weave's server returns, with the derived `summary.weave` block."""
    call = {col: row[col] for col in CALL_COLUMNS}
    for col in JSON_CALL_COLUMNS:
        call[col] = None if call[col] is None else json.loads(call[col])
    summary = dict(call["summary"] or {})
    weave_block = dict(summary.get("weave") or {})
    weave_block["status"] = (
        "error" if call["exception"] else ("running" if call["ended_at"] is None else "success")
    )
    if call["ended_at"] is not None:
        weave_block["latency_ms"] = _latency_ms(call["started_at"], call["ended_at"])
    weave_block.setdefault("trace_name", call["display_name"] or op_short_name(call["op_name"]))
    summary["weave"] = weave_block
    call["summary"] = summary
    return call


def op_short_name(op_name: str) -> str:
    """`weave:///e/p/op/Evaluation.evaluate:digest` -> `Evaluation.evaluate`."""
    tail = op_name.rsplit("/", 1)[-1]
    return tail.split(":", 1)[0]


def _latency_ms(started_at: str, ended_at: str) -> int:
    from datetime import datetime

    return int((datetime.fromisoformat(ended_at) - datetime.fromisoformat(started_at)).total_seconds() * 1000)
