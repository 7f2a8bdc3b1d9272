"""The planner over any OpenAI-compatible chat server (Ollama, vLLM, llama.cpp's server, LM Studio, OpenAI).

It is the Mistral planner with another transport: the same tool loop over the MCP read-only tools, the same
validation, one re-ask, time cap, token budget, transcript records and fallback to the rule planner
(`agent/mistral_planner.py`), then the same evidence check. What differs:
- requests go through `tools.core.openai_chat` (httpx, tenacity retries on 429 / 5xx / transport errors);
- the final answer is asked for with a JSON schema (`response_format`, structured output) when
  `json_schema` is on: the server then can only answer with a plan-shaped object;
- with `use_tools` off (servers or models without function calling) the evidence, already read through
  the MCP tools, goes into the prompt and the model answers in one request.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import Field, ValidationError

from agent.evidence_check import weak_dims
from agent.mcp_client import ToolSpec
from agent.mistral_planner import MistralPlanner, PlanningFailed
from agent.offline_planner import hard_failure_count, unlearnable_dims
from agent.planner import Evidence, MistralPlannerConfig, PlanningContext
from agent.transcript import Transcript
from tools.core.contracts import CyclePlan
from tools.core.openai_chat import (
    ChatCompletion,
    OpenAIChatClient,
    OpenAIStatusError,
    describe,
    json_schema_format,
)
from tools.core.prompting import render
from tools.core.schema import DIMS

STACK_COMPONENTS = ["train-median", "tfidf-ridge", "additive-ridge", "lm"]


class OpenAIPlannerConfig(MistralPlannerConfig):
    """The Mistral planner's knobs (time cap, attempts, budgets), plus the server's own."""

    base_url: str = Field("http://127.0.0.1:11434/v1", description="with /v1 (Ollama's default here)")
    model: str = "qwen2.5:7b-instruct"
    api_key_env: str = Field("OPENAI_API_KEY", description="unset or empty: no Authorization header")
    json_schema: bool = Field(True, description="structured output: the answer must follow the plan schema")
    use_tools: bool = Field(
        True, description="function calling over the MCP tools; off: evidence in the prompt"
    )
    max_tokens: int = Field(2000, ge=64, description="completion tokens per request")


def plan_answer_schema(k: int, note_ids: list[int]) -> dict[str, Any]:
    """The JSON schema of a planner's answer: K candidates, the reasons, one reply per open note."""
    integer, number = {"type": "integer"}, {"type": "number"}
    line = {"type": "string", "minLength": 1, "maxLength": 300}
    candidate = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "student", "hparams", "augmentation", "focus_dims", "reason"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$"},
            "student": {
                "type": "object",
                "additionalProperties": False,
                "required": ["family", "components", "options", "folds"],
                "properties": {
                    "family": {"enum": ["stack", "regression", "generative", "baseline"]},
                    "components": {"type": "array", "items": {"enum": STACK_COMPONENTS}, "maxItems": 4},
                    "options": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "layers_kept": integer,
                            "lora_layers": integer,
                            "head": {"enum": ["linear", "ordinal"]},
                        },
                    },
                    "folds": {"type": "integer", "minimum": 2, "maximum": 5},
                },
            },
            "hparams": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "learning_rate",
                    "lora_r",
                    "lora_alpha",
                    "lora_dropout",
                    "epochs",
                    "batch_size",
                    "grad_accum",
                ],
                "properties": {
                    "learning_rate": number,
                    "lora_r": integer,
                    "lora_alpha": integer,
                    "lora_dropout": number,
                    "epochs": number,
                    "batch_size": integer,
                    "grad_accum": integer,
                },
            },
            "augmentation": {
                "type": "object",
                "additionalProperties": False,
                "required": ["teacher_pairs", "replay_rows", "target_buckets"],
                "properties": {
                    "teacher_pairs": {"type": "integer", "minimum": 0},
                    "replay_rows": {"type": "integer", "minimum": 0},
                    "target_buckets": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            dim: {
                                "type": "array",
                                "items": {"type": "integer", "minimum": 0, "maximum": 10},
                                "maxItems": 11,
                            }
                            for dim in DIMS
                        },
                    },
                },
            },
            "focus_dims": {"type": "array", "items": {"enum": list(DIMS)}, "minItems": 1, "maxItems": 3},
            "reason": line,
        },
    }
    reply = {
        "type": "object",
        "additionalProperties": False,
        "required": ["note_id", "followed", "reason"],
        "properties": {"note_id": {"enum": note_ids or [0]}, "followed": {"type": "boolean"}, "reason": line},
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["candidates", "reasons", "note_replies"],
        "properties": {
            "candidates": {"type": "array", "items": candidate, "minItems": 1, "maxItems": k},
            "reasons": {
                "type": "object",
                "additionalProperties": False,
                "required": ["focus_dims", "augmentation", "search"],
                "properties": {"focus_dims": line, "augmentation": line, "search": line},
            },
            "note_replies": {
                "type": "array",
                "items": reply,
                "minItems": len(note_ids),
                "maxItems": len(note_ids),
            },
        },
    }


class OpenAIPlanner(MistralPlanner):
    def __init__(self, config: OpenAIPlannerConfig, api_key: str | None) -> None:
        self.config = config
        self.name = f"openai:{config.model}"
        self._client = OpenAIChatClient(
            config.base_url,
            api_key,
            timeout_s=config.timeout_ms / 1000,
            max_attempts=config.max_attempts,
            retry_wait_s=(config.retry_wait_initial_s, config.retry_wait_max_s),
        )
        self._answer_schema: dict[str, Any] | None = None

    async def plan(self, session: Any, cycle: int, context: PlanningContext) -> CyclePlan:
        self._answer_schema = plan_answer_schema(
            context.candidates, [note.id for note in context.operator_notes]
        )
        return await super().plan(session, cycle, context)

    async def _plan_with_model(
        self, session: Any, cycle: int, context: PlanningContext, evidence: Evidence
    ) -> CyclePlan:
        if self.config.use_tools:
            return await super()._plan_with_model(session, cycle, context, evidence)
        return await super()._plan_with_model(_NoTools(session), cycle, context, evidence)

    def _evidence_in_prompt(self, evidence: Evidence, specs: list[ToolSpec]) -> str | None:
        if specs:
            return None
        snapshot = evidence.snapshot
        return render(
            "planner_evidence.j2",
            champion=evidence.champion,
            champion_cv=snapshot.champion_cv,
            constant_cv=snapshot.baselines_cv.get("train-median"),
            weak=weak_dims(evidence),
            unlearnable=sorted(unlearnable_dims(evidence)),
            hard_failures=hard_failure_count(snapshot.top_failures),
            n_failures=len(snapshot.top_failures),
            capacity=evidence.capacity,
        ).strip()

    async def _complete(
        self,
        transcript: Transcript,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        tool_choice: str,
    ) -> ChatCompletion:
        payload: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if self.config.random_seed is not None:
            payload["seed"] = self.config.random_seed
        answering = not tools or tool_choice == "none"
        if tools and not answering:
            payload |= {"tools": tools, "tool_choice": tool_choice}
        if answering and self.config.json_schema and self._answer_schema is not None:
            payload["response_format"] = json_schema_format("cycle_plan", self._answer_schema)
        try:
            response = await self._client.complete_async(payload, on_retry=transcript.record_retry)
        except (OpenAIStatusError, ValidationError, ValueError, httpx.HTTPError) as error:
            raise PlanningFailed(f"chat completion failed: {describe(error)}") from error
        if not response.choices:
            raise PlanningFailed("the chat completion returned no choices")
        message = response.choices[0].message
        transcript.record_model_message(
            "assistant",
            message.content or "",
            tool_calls=[call.model_dump(mode="json") for call in message.tool_calls or []],
            finish_reason=str(response.choices[0].finish_reason),
            usage=response.usage.model_dump(mode="json"),
            response_id=response.id,
        )
        return response


class _NoTools:
    """A session that lists no tools to the model (the evidence was read through them already)."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    async def list_tools(self) -> list[ToolSpec]:
        return []
