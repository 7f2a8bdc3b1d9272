"""The W&B cloud tracking store (online mode): runs through `wandb.Api()`, traces through the Weave client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tools.tracking.call_filters import CallFilters, call_matches
from tools.tracking.env import TrackingSettings
from tools.tracking.run_filters import run_matches
from tools.tracking.store_models import (
    RunHistory,
    RunInfo,
    RunNotFoundError,
    RunTable,
    TableNotFoundError,
    TraceCall,
    select_history,
    trace_call_from_record,
)

# Top-level conditions W&B's server reads under the same names. Sending only these narrows what comes back
# (a filter's top-level conditions all hold), and the whole filter is applied again to the runs it returns.
_SERVER_FIELDS = ("group", "jobType", "state")


def _server_side(filters: dict[str, Any]) -> dict[str, Any] | None:
    return {k: v for k, v in filters.items() if k in _SERVER_FIELDS or k.startswith("config.")} or None


class CloudTrackingStore:
    """W&B cloud: runs through `wandb.Api()`, traces through the Weave client (online mode only)."""

    def __init__(self, settings: TrackingSettings):
        import wandb

        self._api = wandb.Api(timeout=30)
        self.entity = settings.wandb_entity or self._api.default_entity
        self.project = settings.project
        self._settings = settings

    def _path(self, run_id: str | None = None) -> str:
        base = f"{self.entity}/{self.project}"
        return base if run_id is None else f"{base}/{run_id}"

    @staticmethod
    def _info(run: Any) -> RunInfo:
        return RunInfo(
            id=run.id,
            name=run.name or "",
            entity=run.entity,
            project=run.project,
            group=run.group or "",
            job_type=run.job_type or "",
            state=run.state,
            tags=list(run.tags or []),
            created_at=str(run.created_at) if run.created_at else None,
            config={k: v for k, v in dict(run.config).items() if not k.startswith("_")},
            summary=dict(run.summary),
        )

    def _run(self, run_id: str) -> Any:
        import wandb

        try:
            return self._api.run(self._path(run_id))
        except wandb.errors.CommError as exc:
            raise RunNotFoundError(f"run {run_id!r} not found in {self._path()}: {exc}") from exc

    def list_runs(self, filters: dict[str, Any] | None = None) -> list[RunInfo]:
        filters = filters or {}
        runs = [self._info(r) for r in self._api.runs(self._path(), filters=_server_side(filters))]
        return [r for r in runs if run_matches(r, filters)]

    def get_run(self, run_id: str) -> RunInfo:
        return self._info(self._run(run_id))

    def get_history(self, run_id: str, keys: list[str] | None = None) -> RunHistory:
        run = self._run(run_id)
        rows = list(run.scan_history(keys=keys)) if keys else list(run.scan_history())
        return select_history(self._info(run), rows, keys)

    def get_table(self, run_id: str, key: str) -> RunTable:
        run = self._run(run_id)
        ref = run.summary.get(key)
        if not isinstance(ref, dict) or "path" not in ref:
            raise TableNotFoundError(f"run {run_id!r} has no table {key!r}")
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            local = run.file(ref["path"]).download(root=tmp, replace=True)
            table = json.loads(Path(local.name).read_text(encoding="utf-8"))
        columns = list(table["columns"])
        return RunTable(
            run_id=run_id,
            key=key,
            columns=columns,
            rows=[dict(zip(columns, r, strict=True)) for r in table["data"]],
        )

    def query_calls(
        self, filters: CallFilters | None = None, limit: int | None = None, sort_direction: str = "desc"
    ) -> list[TraceCall]:
        from tools.tracking.weave_logger import weave_client

        filters = filters or CallFilters()
        client = weave_client(self._settings)
        server_filter: dict[str, Any] = {}
        if filters.trace_roots_only:
            server_filter["trace_roots_only"] = True
        for key in ("call_ids", "parent_ids", "trace_ids"):
            if getattr(filters, key):
                server_filter[key] = getattr(filters, key)
        calls = []
        for call in client.get_calls(filter=server_filter or None):
            record = json.loads(json.dumps(call.to_dict(), default=str))
            record["summary"] = record.get("summary") or {}
            trace_call = trace_call_from_record({**record, "started_at": str(record.get("started_at"))})
            if call_matches(trace_call, filters):
                calls.append(trace_call)
        calls.sort(key=lambda c: c.started_at, reverse=sort_direction == "desc")
        return calls if limit is None else calls[:limit]

    def count_calls(self, filters: CallFilters | None = None) -> int:
        return len(self.query_calls(filters))
