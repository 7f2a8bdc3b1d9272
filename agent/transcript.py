"""The cycle's record of what the agent saw and said.

Two files land in the cycle folder, both written atomically:
- `mcp_eval_snapshot.json`: every MCP tools/call of the cycle with its arguments and full result;
- `agent_transcript.jsonl`: one event per line, in order: model messages, tool calls (with a result
  digest, the full result lives in the snapshot file), retries, re-asks and fallbacks.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tools.core.atomic import atomic_write_json, atomic_write_text

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
        return snapshot_path, transcript_path

    def _add(self, kind: EventKind, data: dict[str, Any]) -> None:
        self.events.append(TranscriptEvent(kind=kind, data=data))
