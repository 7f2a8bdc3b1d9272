"""A project-owned Weave trace server on SQLite: the only offline tracing path in weave 0.54.

Weave's `WeaveClient` talks to any object with the trace-server methods; this class implements the
ones that tracing ops and `weave.EvaluationLogger` use.  Weave probes optional capabilities with
`hasattr`, so every method it does not implement must raise AttributeError (a plain class does).
Request params arrive as the generated TypedDicts (plain dicts); responses are the generated models.
Pinned to weave==0.54.0 and covered by tests/test_tracking_weave.py.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from weave.trace.serialization.digest import (
    compute_file_digest,
    compute_object_digest_result,
    compute_row_digest,
    compute_table_digest,
)
from weave.trace_server_bindings.models import FileContentReadRes
from weave.vendor.weave_server_sdk.types import (
    CallQueryStatsResponse,
    CallStartResponse,
    FeedbackCreateResponse,
    FileCreateResponse,
    ObjectCreateResponse,
    ObjectReadResponse,
    RefReadBatchResponse,
    TableCreateResponse,
    TableQueryResponse,
    TableQueryStatsResponse,
)
from weave.vendor.weave_server_sdk.types.call_read_response import Call

from tools.core.redaction import redact_text
from tools.tracking.trace_db import call_from_row, connect, dumps

_REF_PREFIX = "weave:///"


def _iso(value: Any) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat()
    return str(value)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class SqliteTraceServer:
    """Stores calls, objects, tables and files of one or more Weave projects in one SQLite file."""

    def __init__(self, db_path: Path):
        self.db_path = db_path
        self._conn = connect(db_path)
        self._lock = threading.Lock()

    def _execute(self, sql: str, params: tuple = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- calls ---------------------------------------------------------------------------------
    # Weave sends call_start and call_end from different worker threads, so an end can arrive
    # before its start: both are upserts that only touch their own columns.
    def call_start(self, req: dict) -> CallStartResponse:
        start = req["start"]
        call_id = start.get("id") or uuid.uuid4().hex
        trace_id = start.get("trace_id") or call_id
        self._execute(
            "INSERT INTO calls (id, project_id, trace_id, parent_id, op_name, display_name, started_at,"
            " attributes, inputs, wb_run_id, wb_user_id, thread_id, turn_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(id) DO UPDATE SET project_id=excluded.project_id, trace_id=excluded.trace_id,"
            " parent_id=excluded.parent_id, op_name=excluded.op_name, display_name=excluded.display_name,"
            " started_at=excluded.started_at, attributes=excluded.attributes, inputs=excluded.inputs,"
            " wb_run_id=excluded.wb_run_id, wb_user_id=excluded.wb_user_id,"
            " thread_id=excluded.thread_id, turn_id=excluded.turn_id",
            (
                call_id,
                start["project_id"],
                trace_id,
                start.get("parent_id"),
                start["op_name"],
                start.get("display_name"),
                _iso(start["started_at"]),
                dumps(start.get("attributes") or {}),
                dumps(start.get("inputs") or {}),
                start.get("wb_run_id"),
                start.get("wb_user_id"),
                start.get("thread_id"),
                start.get("turn_id"),
            ),
        )
        return CallStartResponse(id=call_id, trace_id=trace_id)

    def call_end(self, req: dict) -> dict:
        end = req["end"]
        ended_at = _iso(end["ended_at"])
        self._execute(
            "INSERT INTO calls (id, project_id, trace_id, op_name, started_at, ended_at, output, summary,"
            " exception) VALUES (?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(id) DO UPDATE SET ended_at=excluded.ended_at, output=excluded.output,"
            " summary=excluded.summary, exception=excluded.exception",
            (
                end["id"],
                end["project_id"],
                end.get("trace_id") or end["id"],
                "",
                _iso(end.get("started_at") or end["ended_at"]),
                ended_at,
                dumps(end.get("output")),
                dumps(end.get("summary") or {}),
                redact_text(end["exception"]) if end.get("exception") else None,
            ),
        )
        return {}

    def call_update(self, req: dict) -> dict:
        if req.get("display_name") is not None:
            self._execute(
                "UPDATE calls SET display_name=? WHERE id=? AND project_id=?",
                (req["display_name"], req["call_id"], req["project_id"]),
            )
        return {}

    def calls_query_stream(self, req: dict) -> Iterator[Call]:
        calls = self._matching_calls(req)
        for sort in reversed(req.get("sort_by") or [{"field": "started_at", "direction": "asc"}]):
            calls.sort(
                key=lambda c, f=sort["field"]: _sort_key(_get_field(c, f)),
                reverse=sort["direction"] == "desc",
            )
        offset = req.get("offset") or 0
        limit = req.get("limit")
        selected = calls[offset : None if limit is None else offset + limit]
        return iter([Call.model_validate(c) for c in selected])

    def calls_query_stats(self, req: dict) -> CallQueryStatsResponse:
        count = len(self._matching_calls(req))
        limit = req.get("limit")
        return CallQueryStatsResponse(count=count if limit is None else min(count, limit))

    def _matching_calls(self, req: dict) -> list[dict[str, Any]]:
        rows = self._execute(
            "SELECT * FROM calls WHERE project_id=? AND deleted_at IS NULL ORDER BY started_at",
            (req["project_id"],),
        )
        flt = req.get("filter") or {}
        query = (req.get("query") or {}).get("$expr")
        calls = [call_from_row(r) for r in rows]
        return [c for c in calls if _filter_matches(c, flt) and (query is None or bool(_eval(query, c)))]

    # -- objects, tables, files ----------------------------------------------------------------
    def obj_create(self, req: dict) -> ObjectCreateResponse:
        obj = req["obj"]
        result = compute_object_digest_result(obj["val"], obj.get("builtin_object_class"))
        val = result.processed_val
        kind = (
            "op"
            if isinstance(val, dict) and val.get("_type") == "CustomWeaveType" and _is_op(val)
            else "object"
        )
        project_id, object_id = obj["project_id"], obj["object_id"]
        with self._lock:
            existing = self._conn.execute(
                "SELECT 1 FROM objects WHERE project_id=? AND object_id=? AND digest=?",
                (project_id, object_id, result.digest),
            ).fetchone()
            if existing is None:
                (version_index,) = self._conn.execute(
                    "SELECT COUNT(*) FROM objects WHERE project_id=? AND object_id=?", (project_id, object_id)
                ).fetchone()
                self._conn.execute(
                    "INSERT INTO objects VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        project_id,
                        object_id,
                        result.digest,
                        kind,
                        result.base_object_class,
                        result.leaf_object_class,
                        redact_text(result.json_val),
                        _now(),
                        version_index,
                    ),
                )
        return ObjectCreateResponse(digest=result.digest, object_id=object_id)

    def obj_read(self, req: dict) -> ObjectReadResponse:
        row = self._object_row(req["project_id"], req["object_id"], req["digest"])
        if row is None:
            raise KeyError(f"object not found: {req['object_id']}:{req['digest']}")
        (count,) = self._execute(
            "SELECT COUNT(*) FROM objects WHERE project_id=? AND object_id=?",
            (row["project_id"], row["object_id"]),
        )[0]
        return ObjectReadResponse.model_validate(
            {
                "obj": {
                    "project_id": row["project_id"],
                    "object_id": row["object_id"],
                    "digest": row["digest"],
                    "kind": row["kind"],
                    "base_object_class": row["base_object_class"],
                    "leaf_object_class": row["leaf_object_class"],
                    "val": json.loads(row["val"]),
                    "created_at": row["created_at"],
                    "version_index": row["version_index"],
                    "is_latest": int(row["version_index"] == count - 1),
                }
            }
        )

    def _object_row(self, project_id: str, object_id: str, digest: str) -> Any:
        if digest == "latest":
            rows = self._execute(
                "SELECT * FROM objects WHERE project_id=? AND object_id=? ORDER BY version_index DESC LIMIT 1",
                (project_id, object_id),
            )
        elif digest.startswith("v") and digest[1:].isdigit():
            rows = self._execute(
                "SELECT * FROM objects WHERE project_id=? AND object_id=? AND version_index=?",
                (project_id, object_id, int(digest[1:])),
            )
        else:
            rows = self._execute(
                "SELECT * FROM objects WHERE project_id=? AND object_id=? AND digest=?",
                (project_id, object_id, digest),
            )
        return rows[0] if rows else None

    def table_create(self, req: dict) -> TableCreateResponse:
        table = req["table"]
        project_id, rows = table["project_id"], list(table["rows"])
        row_digests = [compute_row_digest(row) for row in rows]
        digest = compute_table_digest(row_digests)
        with self._lock:
            self._conn.executemany(
                "INSERT OR IGNORE INTO table_rows VALUES (?,?,?)",
                [(project_id, d, dumps(row)) for d, row in zip(row_digests, rows, strict=True)],
            )
            self._conn.execute(
                "INSERT OR IGNORE INTO tables VALUES (?,?,?)", (project_id, digest, json.dumps(row_digests))
            )
        return TableCreateResponse(digest=digest, row_digests=row_digests)

    def table_query(self, req: dict) -> TableQueryResponse:
        return TableQueryResponse(rows=list(self.table_query_stream(req)))

    def table_query_stream(self, req: dict) -> Iterator[dict]:
        project_id = req["project_id"]
        digests = self._table_row_digests(project_id, req["digest"])
        wanted = set((req.get("filter") or {}).get("row_digests") or [])
        indexed = [(i, d) for i, d in enumerate(digests) if not wanted or d in wanted]
        offset = req.get("offset") or 0
        limit = req.get("limit")
        for index, digest in indexed[offset : None if limit is None else offset + limit]:
            yield {"digest": digest, "val": self._table_row(project_id, digest), "original_index": index}

    def table_query_stats(self, req: dict) -> TableQueryStatsResponse:
        return TableQueryStatsResponse(count=len(self._table_row_digests(req["project_id"], req["digest"])))

    def _table_row_digests(self, project_id: str, digest: str) -> list[str]:
        rows = self._execute(
            "SELECT row_digests FROM tables WHERE project_id=? AND digest=?", (project_id, digest)
        )
        if not rows:
            raise KeyError(f"table not found: {digest}")
        return json.loads(rows[0]["row_digests"])

    def _table_row(self, project_id: str, digest: str) -> Any:
        rows = self._execute(
            "SELECT val FROM table_rows WHERE project_id=? AND digest=?", (project_id, digest)
        )
        if not rows:
            raise KeyError(f"table row not found: {digest}")
        return json.loads(rows[0]["val"])

    def file_create(self, req: dict) -> FileCreateResponse:
        content = req["file"]
        if isinstance(content, tuple):  # httpx-style (name, bytes[, mime])
            content = content[1]
        if hasattr(content, "read"):
            content = content.read()
        digest = compute_file_digest(content)
        self._execute("INSERT OR IGNORE INTO files VALUES (?,?,?)", (req["project_id"], digest, content))
        return FileCreateResponse(digest=digest)

    def file_content_read(self, req: dict) -> FileContentReadRes:
        rows = self._execute(
            "SELECT content FROM files WHERE project_id=? AND digest=?", (req["project_id"], req["digest"])
        )
        if not rows:
            raise KeyError(f"file not found: {req['digest']}")
        return FileContentReadRes(content=bytes(rows[0]["content"]))

    def feedback_create(self, req: dict) -> FeedbackCreateResponse:
        feedback_id, created_at = uuid.uuid4().hex, _now()
        self._execute(
            "INSERT INTO feedback VALUES (?,?,?,?,?,?)",
            (
                feedback_id,
                req["project_id"],
                req["weave_ref"],
                req["feedback_type"],
                dumps(req.get("payload") or {}),
                created_at,
            ),
        )
        return FeedbackCreateResponse(id=feedback_id, created_at=created_at, wb_user_id="local", payload={})

    def refs_read_batch(self, req: dict) -> RefReadBatchResponse:
        return RefReadBatchResponse(vals=[self._resolve_ref(uri) for uri in req["refs"]])

    def _resolve_ref(self, uri: str) -> Any:
        entity, project, kind, *rest = uri[len(_REF_PREFIX) :].split("/")
        project_id = f"{entity}/{project}"
        if kind == "table":
            return [self._table_row(project_id, d) for d in self._table_row_digests(project_id, rest[0])]
        name, _, digest = rest[0].partition(":")
        row = self._object_row(project_id, name, digest)
        if row is None:
            raise KeyError(f"object not found: {uri}")
        value: Any = json.loads(row["val"])
        for edge, key in zip(rest[1::2], rest[2::2], strict=True):
            if isinstance(value, str) and value.startswith(_REF_PREFIX) and edge != "id":
                value = self._resolve_ref(value)
            if edge == "id":
                value = self._table_row(project_id, key)
            elif edge == "index":
                value = value[int(key)]
            else:
                value = value[key]
        return value


def _is_op(val: dict) -> bool:
    return (val.get("weave_type") or {}).get("type") == "Op"


def _filter_matches(call: dict[str, Any], flt: dict[str, Any]) -> bool:
    if flt.get("trace_roots_only") and call["parent_id"] is not None:
        return False
    for key, column in (
        ("call_ids", "id"),
        ("trace_ids", "trace_id"),
        ("parent_ids", "parent_id"),
        ("wb_run_ids", "wb_run_id"),
        ("thread_ids", "thread_id"),
    ):
        if flt.get(key) and call[column] not in flt[key]:
            return False
    if flt.get("op_names"):
        names = set(flt["op_names"])
        if call["op_name"] not in names and not any(
            n.endswith(":*") and call["op_name"].startswith(n[:-1]) for n in names
        ):
            return False
    return True


def _get_field(call: dict[str, Any], path: str) -> Any:
    value: Any = call
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _sort_key(value: Any) -> tuple:
    return (value is None, value if isinstance(value, int | float) else str(value))


_COMPARISONS = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def _eval(expr: Any, call: dict[str, Any]) -> Any:
    """Evaluate Weave's Mongo-like query expression ($and, $eq, $getField, ...) against one call."""
    if not isinstance(expr, dict) or len(expr) != 1:
        return expr
    ((op, arg),) = expr.items()
    if op == "$literal":
        return arg
    if op == "$getField":
        return _get_field(call, arg)
    if op == "$convert":
        value = _eval(arg["input"], call)
        return float(value) if arg["to"] in ("double", "int") and value is not None else str(value)
    if op == "$and":
        return all(_eval(e, call) for e in arg)
    if op == "$or":
        return any(_eval(e, call) for e in arg)
    if op == "$not":
        return not _eval(arg[0], call)
    if op == "$in":
        return _eval(arg[0], call) in [_eval(e, call) for e in arg[1]]
    if op == "$contains":
        haystack, needle = _eval(arg["input"], call), _eval(arg["substr"], call)
        if haystack is None:
            return False
        if arg.get("case_insensitive"):
            return str(needle).lower() in str(haystack).lower()
        return str(needle) in str(haystack)
    left, right = (_eval(e, call) for e in arg)
    if op == "$eq":
        return left == right
    if left is None or right is None:
        return False
    if op not in _COMPARISONS:
        raise ValueError(f"unsupported query operator {op}")
    return _COMPARISONS[op](left, right)
