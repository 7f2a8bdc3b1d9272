"""The cycle's record of what the agent saw and said.

Two files land in the cycle folder, both written atomically:
- `mcp_eval_snapshot.json`: every MCP tools/call of the cycle with its arguments and full result;
- `agent_transcript.jsonl`: one event per line, in order: model messages, tool calls (with a result
  digest, the full result lives in the snapshot file), retries, re-asks and fallbacks.

Written into a cycle folder of the artifacts tree (`loop/cycle_N`), the events are also traced to Weave
(`agent.weave_trace`), in the same store as the evaluations, each stretch once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tools.core import paths
from tools.core.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger("kotone.agent")

SNAPSHOT_FILE = "mcp_eval_snapshot.json"
TRANSCRIPT_FILE = "agent_transcript.jsonl"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def digest(value: Any) -> str:
    """Short, stable fingerprint of a JSON-able value (key order does not matter)."""
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


class ToolCallRecord(BaseModel):
    """One MCP tools/call as the agent saw it."""

    name: str
    arguments: dict[str, Any]
    result: Any = Field(description="structured content, or the text content parsed as JSON when it is JSON")
    is_error: bool
    error: str | None = None
    latency_ms: float
    started_at: str
    endpoint: str


EventKind = Literal["model_message", "tool_call", "retry", "reask", "fallback", "note"]


class TranscriptEvent(BaseModel):
    kind: EventKind
    at: str = Field(default_factory=utc_now)
    data: dict[str, Any]


class Transcript:
    """Collects the events of one planning run; `write(folder)` puts them on disk."""

    def __init__(self) -> None:
        self.tool_calls: list[ToolCallRecord] = []
        self.events: list[TranscriptEvent] = []
        self.listed_tools: dict[str, list[str]] = {}
        self._traced = 0  # events already traced to Weave

    def record_tool_listing(self, endpoint: str, names: list[str]) -> None:
        self.listed_tools[endpoint] = names
        self._add("note", {"what": "tools/list", "endpoint": endpoint, "tools": names})

    def record_tool_call(self, record: ToolCallRecord) -> None:
        self.tool_calls.append(record)
        self._add(
            "tool_call",
            {
                "index": len(self.tool_calls) - 1,
                "name": record.name,
                "arguments": record.arguments,
                "is_error": record.is_error,
                "error": record.error,
                "result_digest": digest(record.result),
                "latency_ms": record.latency_ms,
                "endpoint": record.endpoint,
            },
        )

    def record_model_message(self, role: str, content: Any, **extra: Any) -> None:
        self._add("model_message", {"role": role, "content": content, **extra})

    def record_retry(self, attempt: int, error: str, wait_s: float) -> None:
        self._add("retry", {"attempt": attempt, "error": error, "wait_s": round(wait_s, 3)})

    def record_reask(self, validation_error: str) -> None:
        self._add("reask", {"validation_error": validation_error})

    def record_fallback(self, reason: str) -> None:
        self._add("fallback", {"reason": reason})

    def record_note(self, **data: Any) -> None:
        self._add("note", data)

    def events_of(self, kind: EventKind) -> list[TranscriptEvent]:
        return [event for event in self.events if event.kind == kind]

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Write both files atomically into `folder`; returns (snapshot path, transcript path)."""
        snapshot_path = folder / SNAPSHOT_FILE
        transcript_path = folder / TRANSCRIPT_FILE
        atomic_write_json(
            snapshot_path,
            {
                "listed_tools": self.listed_tools,
                "calls": [record.model_dump(mode="json") for record in self.tool_calls],
            },
        )
        lines = [event.model_dump_json() for event in self.events]
        atomic_write_text(transcript_path, "".join(line + "\n" for line in lines))
        self._trace_new_events(folder)
        return snapshot_path, transcript_path

    def _trace_new_events(self, folder: Path) -> None:
        """Trace the events not traced yet when `folder` is a cycle folder of the artifacts tree."""
        cycle = cycle_of_folder(folder)
        if cycle is None or self._traced == len(self.events):
            return
        from agent.weave_trace import trace_events
        from tools.tracking.weave_logger import weave_client

        try:
            trace_events(weave_client(), self.events[self._traced :], self.tool_calls, cycle=cycle)
        except Exception as exc:  # the files just written are the record; the trace is a view of them
            log.warning(
                "cycle %d: the agent's Weave trace was not written (%s: %s)", cycle, type(exc).__name__, exc
            )
            return
        self._traced = len(self.events)

    def _add(self, kind: EventKind, data: dict[str, Any]) -> None:
        self.events.append(TranscriptEvent(kind=kind, data=data))


def cycle_of_folder(folder: Path) -> int | None:
    """N for `<artifacts>/loop/cycle_N`, else None."""
    match = re.fullmatch(r"cycle_(\d+)", folder.name)
    return int(match.group(1)) if match and folder.resolve().parent == paths.loop_dir() else None
