"""The part of W&B's GraphQL API that reads projects and runs, served from a tracking store.

What the official W&B MCP server's `query_wandb_tool` documents for runs works here unchanged:
`project(name:, entityName:)` with `id name entityName runCount`; `runs(first:, after:, filters:, order:)`
as a connection (`edges { node { ... } cursor } pageInfo { endCursor hasNextPage }`); `run(name: <run id>)`;
on a run `id name displayName state group jobType tags createdAt heartbeatAt config summaryMetrics
historyKeys historyLineCount history(samples:) sampledHistory(specs:) user files artifacts`; and `viewer`.
What the store does not hold is said in the schema's descriptions (introspection shows them): a run's
`user` is the entity that reads it (offline runs record none), `files` are the table files its summary
references (no download URL offline), `artifacts` is empty (the loop logs model artifacts only when
publishing). As in W&B, `name` is the run id, `config` and
`summaryMetrics` are JSON strings (config as `{key: {"value": v}}`), `filters` is a JSON string. Queries
only: there is no mutation type. Results are the standard `{"data": ..., "errors": [...]}`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    build_schema,
    graphql_sync,
    value_from_ast_untyped,
)

from tools.tracking.run_filters import RunFilterError, order_runs
from tools.tracking.store_models import RunInfo, RunNotFoundError, TrackingStore

DEFAULT_PAGE_SIZE = 50
DEFAULT_HISTORY_SAMPLES = 500

SDL = """
scalar JSONString
scalar JSON

type Query {
  project(name: String!, entityName: String): Project
  viewer: User
}

type User {
  id: ID!
  username: String
  entity: String
}

type Project {
  id: ID!
  name: String!
  entityName: String!
  description: String
  runCount(filters: JSONString): Int!
  runs(first: Int, after: String, filters: JSONString, order: String): RunConnection!
  run(name: String!): Run
}

type RunConnection {
  totalCount: Int!
  edges: [RunEdge!]!
  pageInfo: PageInfo!
}

type RunEdge {
  node: Run!
  cursor: String!
}

type PageInfo {
  startCursor: String
  endCursor: String
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
}

type Run {
  id: ID!
  name: String!
  displayName: String
  state: String
  group: String
  jobType: String
  tags: [String!]!
  createdAt: String
  "When the run last logged (its summary's _timestamp); null when it never logged."
  heartbeatAt: String
  config: JSONString
  summaryMetrics: JSONString
  historyKeys: [String!]!
  historyLineCount: Int!
  "Every history row as a JSON string, evenly sampled to at most `samples` rows."
  history(samples: Int): [JSONString!]!
  sampledHistory(specs: [JSONString!]!): [JSON]
  "The entity that reads the run: offline runs record no user of their own."
  user: User
  "The table files the run's summary references (read their rows with get_run_table_tool); url is null offline."
  files(first: Int, after: String): FileConnection!
  "Always empty here: the local store reads no artifacts (the loop logs models when publishing, kotone-publish)."
  artifacts(first: Int, after: String): ArtifactConnection!
  project: Project
}

type FileConnection {
  totalCount: Int!
  edges: [FileEdge!]!
  pageInfo: PageInfo!
}

type FileEdge {
  node: File!
  cursor: String!
}

type File {
  id: ID!
  name: String!
  sizeBytes: Int
  mimetype: String
  digest: String
  "null: the local store serves no downloads"
  url: String
}

type ArtifactConnection {
  totalCount: Int!
  edges: [ArtifactEdge!]!
  pageInfo: PageInfo!
}

type ArtifactEdge {
  node: Artifact!
  cursor: String!
}

type Artifact {
  id: ID!
  name: String!
}
"""

StoreOpener = Callable[[str | None, str], TrackingStore]


def _parse_json_string(value: Any) -> Any:
    if isinstance(value, dict | list):
        return value  # lenient: a client that passed the object itself, not its JSON text
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        raise GraphQLError(f"expected a JSON string, got {value!r}") from None


def _schema() -> GraphQLSchema:
    schema = build_schema(SDL)
    json_string = schema.type_map["JSONString"]
    assert isinstance(json_string, GraphQLScalarType)
    json_string.coerce_output_value = lambda value: json.dumps(value, default=str)
    json_string.coerce_input_value = _parse_json_string
    json_string.coerce_input_literal = lambda node, *_: _parse_json_string(value_from_ast_untyped(node))
    return schema


SCHEMA = _schema()


def _cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.b64decode(cursor).decode().removeprefix("offset:")) + 1
    except ValueError:
        raise GraphQLError(f"invalid cursor {cursor!r}") from None


def _sampled(rows: list[dict[str, Any]], samples: int) -> list[dict[str, Any]]:
    if len(rows) <= samples:
        return rows
    stride = len(rows) / samples
    return [rows[int(i * stride)] for i in range(samples)]


def _connection(nodes: list[Any], first: int | None, after: str | None, max_items: int) -> dict[str, Any]:
    """One page of a W&B-style connection (edges, cursors, pageInfo)."""
    start = _offset(after)
    size = max(0, min(first if first is not None else DEFAULT_PAGE_SIZE, max_items))
    page = nodes[start : start + size]
    edges = [{"node": node, "cursor": _cursor(start + i)} for i, node in enumerate(page)]
    return {
        "totalCount": len(nodes),
        "edges": edges,
        "pageInfo": {
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
            "hasNextPage": start + len(page) < len(nodes),
            "hasPreviousPage": start > 0,
        },
    }


def _user(entity: str) -> dict[str, Any]:
    return {"id": base64.b64encode(f"User:{entity}".encode()).decode(), "username": entity, "entity": entity}


def _public(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "_wandb"}


class RunNode:
    """A run as W&B's GraphQL `Run` type resolves it."""

    def __init__(self, run: RunInfo, project: ProjectNode) -> None:
        self._run = run
        self._project = project
        self.name = run.id
        self.displayName = run.name
        self.state = run.state
        self.group = run.group
        self.jobType = run.job_type
        self.tags = run.tags
        self.createdAt = run.created_at
        self.config = {key: {"value": value, "desc": None} for key, value in run.config.items()}
        self.summaryMetrics = _public(run.summary)
        self.project = project

    @property
    def id(self) -> str:
        return base64.b64encode(
            f"Run:v1:{self.name}:{self._project.name}:{self._project.entityName}".encode()
        ).decode()

    def _rows(self) -> list[dict[str, Any]]:
        return self._project.store.get_history(self._run.id).rows

    def historyKeys(self, _info: GraphQLResolveInfo) -> list[str]:
        return self._project.store.get_history(self._run.id).keys

    def historyLineCount(self, _info: GraphQLResolveInfo) -> int:
        return len(self._rows())

    def heartbeatAt(self, _info: GraphQLResolveInfo) -> str | None:
        stamp = self._run.summary.get("_timestamp")
        if not isinstance(stamp, int | float):
            return None
        return datetime.fromtimestamp(stamp, UTC).isoformat().replace("+00:00", "Z")

    def history(self, _info: GraphQLResolveInfo, samples: int | None = None) -> list[dict[str, Any]]:
        return _sampled(self._rows(), samples or DEFAULT_HISTORY_SAMPLES)

    def user(self, _info: GraphQLResolveInfo) -> dict[str, Any]:
        return _user(self._project.entityName)

    def files(
        self, _info: GraphQLResolveInfo, first: int | None = None, after: str | None = None
    ) -> dict[str, Any]:
        tables = [
            {
                "id": base64.b64encode(f"File:{self.name}:{ref['path']}".encode()).decode(),
                "name": ref["path"],
                "sizeBytes": ref.get("size"),
                "mimetype": "application/json",
                "digest": ref.get("sha256"),
                "url": None,
            }
            for ref in self._run.summary.values()
            if isinstance(ref, dict) and ref.get("_type") in ("table-file", "table") and "path" in ref
        ]
        return _connection(tables, first, after, self._project.max_items)

    def artifacts(
        self, _info: GraphQLResolveInfo, first: int | None = None, after: str | None = None
    ) -> dict[str, Any]:
        return _connection([], first, after, self._project.max_items)

    def sampledHistory(self, _info: GraphQLResolveInfo, specs: list[Any]) -> list[list[dict[str, Any]]]:
        """One list per spec (`{"keys": [...], "samples": n}`): rows with `_step` and the spec's keys."""
        store = self._project.store
        sampled = []
        for spec in specs:
            keys = [str(k) for k in spec.get("keys", [])]
            rows = store.get_history(self._run.id, [k for k in keys if k != "_step"] or None).rows
            sampled.append(_sampled(rows, int(spec.get("samples") or DEFAULT_HISTORY_SAMPLES)))
        return sampled


class ProjectNode:
    """A project as W&B's GraphQL `Project` type resolves it (runs read from the store)."""

    def __init__(self, store: TrackingStore, max_items: int) -> None:
        self.store = store
        self.name = store.project
        self.entityName = store.entity
        self.description = None
        self.max_items = max_items

    @property
    def id(self) -> str:
        return base64.b64encode(f"Project:v1:{self.name}:{self.entityName}".encode()).decode()

    def _runs(self, filters: dict[str, Any] | None, order: str | None = None) -> list[RunInfo]:
        try:
            runs = self.store.list_runs(filters)
            return order_runs(runs, order)
        except RunFilterError as exc:
            raise GraphQLError(str(exc)) from None

    def runCount(self, _info: GraphQLResolveInfo, filters: dict[str, Any] | None = None) -> int:
        return len(self._runs(filters))

    def runs(
        self,
        _info: GraphQLResolveInfo,
        first: int | None = None,
        after: str | None = None,
        filters: dict[str, Any] | None = None,
        order: str | None = None,
    ) -> dict[str, Any]:
        matching = self._runs(filters, order)
        return _connection([RunNode(run, self) for run in matching], first, after, self.max_items)

    def run(self, _info: GraphQLResolveInfo, name: str) -> RunNode | None:
        try:
            return RunNode(self.store.get_run(name), self)
        except RunNotFoundError:
            return None


class QueryRoot:
    def __init__(self, open_store: StoreOpener, known_project: str, max_items: int) -> None:
        self._open_store = open_store
        self._known_project = known_project
        self._max_items = max_items

    def project(
        self, _info: GraphQLResolveInfo, name: str, entityName: str | None = None
    ) -> ProjectNode | None:
        store = self._open_store(entityName, name)
        if name != self._known_project and not store.list_runs():
            return None  # as in W&B: an unknown project is null, not an error
        return ProjectNode(store, self._max_items)

    def viewer(self, _info: GraphQLResolveInfo) -> dict[str, Any]:
        return _user(self._open_store(None, self._known_project).entity)


def execute_query(
    query: str,
    variables: dict[str, Any] | None,
    *,
    open_store: StoreOpener,
    known_project: str,
    max_items: int = 100,
) -> dict[str, Any]:
    """Run a GraphQL query; returns `{"data": ...}` plus `"errors"` when any field failed."""
    result = graphql_sync(
        SCHEMA,
        query,
        root_value=QueryRoot(open_store, known_project, max_items),
        variable_values=variables or {},
    )
    return result.formatted
