"""The Mistral planner: the model reads the evidence through our MCP tools (function calling) and answers
with a `CyclePlan` as JSON.

Flow per cycle: list the MCP tools → keep the read-only ones → convert their JSON input schemas to
Mistral function tools → `chat.complete` with `tool_choice="auto"`, executing every tool call through the
`ToolSession`, until the model answers without tool calls (at most `max_tool_calls` calls; past that the
model is told to answer). The answer is validated (pydantic, at most K candidates, required reasons, no
recipe the history already judged, not the champion's own recipe) and clipped by the guardrails to the
ranges and the augmentation capacity. An invalid answer is re-asked ONCE with the
validation error; a second invalid answer, an exhausted token budget, or an API failure after the
retries, or no answer within `max_total_s`, fall back to the offline planner with `fallback_reason` set
and a `fallback` transcript event.
429 / 5xx / transport errors are retried with exponential backoff (tenacity).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

import httpx2
from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

from agent.evidence_check import check_plan, failed
from agent.guardrails import apply_guardrails, describe_ranges
from agent.mcp_client import ToolSession, ToolSpec
from agent.memory import outcome_table
from agent.offline_planner import plan_from_evidence
from agent.operator_notes import complete_replies, read_notes
from agent.planner import (
    READ_ONLY_TOOLS,
    Evidence,
    MistralPlannerConfig,
    PlanningContext,
    read_evidence,
)
from agent.search import tried_recipes
from agent.transcript import ToolCallRecord, Transcript
from tools.core.contracts import CandidateSpec, CycleHistoryEntry, CyclePlan, ModelRecord
from tools.core.prompting import render

if TYPE_CHECKING:
    from mistralai.client.models import ChatCompletionResponse

REQUIRED_REASONS = ("search",)
# Fields the loop owns; whatever the model writes there is replaced.
LOOP_OWNED_FIELDS = ("cycle", "planner", "clipped", "fallback_reason")


class PlanningFailed(RuntimeError):
    """The model could not produce a usable plan; the message becomes the plan's fallback_reason."""


def is_retryable(error: BaseException) -> bool:
    """429 and 5xx answers, and transport-level failures (the SDK raises raw httpx2 errors for those)."""
    from mistralai.client.errors import MistralError, NoResponseError

    if isinstance(error, MistralError):
        return error.status_code == 429 or error.status_code >= 500
    return isinstance(error, httpx2.TransportError | NoResponseError)


def is_planner_tool(spec: ToolSpec) -> bool:
    """Read-only evidence tools: the known names, or any tool the server annotates as read-only."""
    return spec.name in READ_ONLY_TOOLS or spec.read_only_hint is True


def to_mistral_tool(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": spec.input_schema},
    }


def message_text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(getattr(chunk, "text", "") or "" for chunk in content)


def extract_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model answer (code fences and prose around it are tolerated)."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    if start == -1 or end < start:
        raise ValueError("the answer contains no JSON object")
    value = json.loads(body[start : end + 1])
    if not isinstance(value, dict):
        raise ValueError("the answer's JSON is not an object")
    return value


def repeats_baseline_champion(spec: CandidateSpec, champion: ModelRecord | None) -> bool:
    """A cycle-0 baseline champion again. A champion the loop trained is in the history with its exact
    recipe key (promoted), so the judged check refuses it; a move of its augmentation alone is a new recipe
    (the offline planner's `no-teacher` / `more-data` levers), not the champion's own."""
    recipe = champion.recipe if champion else None
    return (
        recipe is not None
        and recipe.family == "baseline"
        and spec.student.family == "baseline"
        and spec.student.baseline == recipe.baseline
    )


def validate_answer(
    text: str, cycle: int, planner_name: str, evidence: Evidence, k: int
) -> tuple[CyclePlan | None, str | None]:
    """(plan, None) when the answer is usable, else (None, the error to show the model)."""
    try:
        raw = extract_json_object(text)
    except ValueError as error:
        return None, f"not a JSON object: {error}"
    raw = {key: value for key, value in raw.items() if key not in LOOP_OWNED_FIELDS}
    candidates = raw.get("candidates")
    if isinstance(candidates, list):
        for index, candidate in enumerate(candidates):
            if isinstance(candidate, dict):
                candidate["seed"] = cycle * 10 + index  # seeds are the loop's
    try:
        plan = CyclePlan.model_validate({**raw, "cycle": cycle, "planner": planner_name})
    except ValidationError as error:
        return None, str(error)
    if len(plan.candidates) > k:
        return None, f"propose at most {k} candidates, got {len(plan.candidates)}"
    missing = [key for key in REQUIRED_REASONS if not plan.reasons.get(key)]
    if missing:
        return None, f"reasons must explain every decision; missing: {', '.join(missing)}"
    plan = apply_guardrails(plan, evidence.capacity)
    judged = tried_recipes(evidence.history)
    champion = evidence.champion
    for spec in plan.candidates:
        if spec.recipe_key() in judged:
            return (
                None,
                f"candidate {spec.name} repeats a recipe the history already judged ({spec.recipe_key()})",
            )
        if repeats_baseline_champion(spec, champion):
            return (
                None,
                f"candidate {spec.name} is the champion's own recipe ({spec.student.label()}): "
                "propose something that could beat it",
            )
    keys = [spec.recipe_key() for spec in plan.candidates]
    if len(set(keys)) != len(keys):
        return None, "two candidates have the same recipe: make them differ"
    return plan, None


def judged_lines(history: list[CycleHistoryEntry]) -> list[str]:
    return [
        f"{o.recipe_key}: {o.description} -> {o.status}"
        + (f" (CV MAE {o.cv_mae:.3f})" if o.cv_mae is not None else "")
        for entry in history
        for o in entry.candidates
        if entry.cycle > 0
    ]


class _Usage:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0

    def add(self, response: ChatCompletionResponse) -> None:
        self.total += response.usage.total_tokens or 0

    @property
    def exhausted(self) -> bool:
        return self.total > self.limit


class MistralPlanner:
    def __init__(self, config: MistralPlannerConfig, api_key: str) -> None:
        from mistralai.client import Mistral

        self.config = config
        self.name = f"mistral:{config.model}"
        self._client = Mistral(api_key=api_key, server_url=config.server_url, timeout_ms=config.timeout_ms)

    async def plan(self, session: ToolSession, cycle: int, context: PlanningContext) -> CyclePlan:
        """The model's plan when it is usable and passes the evidence check; else the rule planner's, with
        the reason (and the failed checks) recorded."""
        evidence = await read_evidence(session, context)
        try:
            plan = await self._plan_in_time(session, cycle, context, evidence)
        except PlanningFailed as failure:
            return self._fallback(session, evidence, cycle, context, f"{self.name}: {failure}")
        asks = read_notes(context.operator_notes)
        checks = check_plan(plan, evidence, context, asks)
        plan = plan.model_copy(
            update={"note_replies": complete_replies(plan, asks), "evidence_checks": checks}
        )
        if bad := failed(checks):
            session.transcript.record_note(
                what="plan rejected by the evidence check", plan=plan.model_dump(mode="json")
            )
            reason = f"{self.name}: evidence check failed: " + "; ".join(
                f"{c.name} ({c.detail})" for c in bad
            )
            fallback = self._fallback(session, evidence, cycle, context, reason)
            return fallback.model_copy(update={"evidence_checks": checks})
        return plan

    def _fallback(
        self, session: ToolSession, evidence: Evidence, cycle: int, context: PlanningContext, reason: str
    ) -> CyclePlan:
        session.transcript.record_fallback(reason)
        plan = plan_from_evidence(evidence, cycle, context)
        return plan.model_copy(update={"fallback_reason": reason})

    async def _plan_in_time(self, *args: Any) -> CyclePlan:
        """`_plan_with_model` within `max_total_s`: a server that never answers must not hold the loop."""
        try:
            async with asyncio.timeout(self.config.max_total_s):
                return await self._plan_with_model(*args)
        except TimeoutError:
            raise PlanningFailed(
                f"no usable answer within max_total_s={self.config.max_total_s:g} s (planner time cap)"
            ) from None

    async def _plan_with_model(
        self, session: ToolSession, cycle: int, context: PlanningContext, evidence: Evidence
    ) -> CyclePlan:
        """The model reads what it wants through the tools and answers; `evidence` (read first, through the
        same tools) is what its answer is validated against."""
        specs = [spec for spec in await session.list_tools() if is_planner_tool(spec)]
        messages = self._opening_messages(cycle, context, specs, evidence)
        for message in messages:
            session.transcript.record_model_message(message["role"], message["content"])
        usage = _Usage(self.config.max_total_tokens)
        tools = [to_mistral_tool(spec) for spec in specs]
        answer = await self._tool_loop(session, messages, tools, usage)
        plan, error = validate_answer(answer, cycle, self.name, evidence, context.candidates)
        if plan is not None:
            return plan
        if usage.exhausted:
            raise PlanningFailed(f"invalid plan and the token budget is spent ({usage.total}): {error}")
        session.transcript.record_reask(str(error))
        messages.append({"role": "assistant", "content": answer})
        messages.append({"role": "user", "content": render("planner_reask.j2", error=error).strip()})
        session.transcript.record_model_message("user", messages[-1]["content"])
        response = await self._complete(session.transcript, messages, tools, "none")
        usage.add(response)
        answer = message_text(response.choices[0].message.content)
        plan, error = validate_answer(answer, cycle, self.name, evidence, context.candidates)
        if plan is None:
            raise PlanningFailed(f"invalid plan after one re-ask: {error}")
        return plan

    def _opening_messages(
        self, cycle: int, context: PlanningContext, specs: list[ToolSpec], evidence: Evidence
    ) -> list[dict[str, Any]]:
        user = render(
            "planner_user.j2",
            cycle=cycle,
            k=context.candidates,
            context=context,
            tool_names=[spec.name for spec in specs],
            max_tool_calls=self.config.max_tool_calls,
            tried=judged_lines(evidence.history),
            memory=[row.line() for row in outcome_table(evidence.history)],
            evidence_summary=self._evidence_in_prompt(evidence, specs),
        )
        system = render("planner_system.j2", ranges=describe_ranges(evidence.capacity), k=context.candidates)
        return [{"role": "system", "content": system.strip()}, {"role": "user", "content": user.strip()}]

    def _evidence_in_prompt(self, evidence: Evidence, specs: list[ToolSpec]) -> str | None:
        """The evidence as text for a model that gets no tools (None: it reads the evidence through them)."""
        return None

    async def _tool_loop(
        self, session: ToolSession, messages: list[dict[str, Any]], tools: list[dict[str, Any]], usage: _Usage
    ) -> str:
        """Answer tool calls until the model replies without any; returns that reply's text."""
        allowed = {tool["function"]["name"] for tool in tools}
        calls_made = 0
        while True:
            budget_left = calls_made < self.config.max_tool_calls
            response = await self._complete(
                session.transcript, messages, tools, "auto" if budget_left else "none"
            )
            usage.add(response)
            assistant = response.choices[0].message
            tool_calls = assistant.tool_calls or []
            if not tool_calls:
                return message_text(assistant.content)
            if usage.exhausted:
                raise PlanningFailed(
                    f"token budget spent ({usage.total} > {usage.limit}) before a final plan"
                )
            if not budget_left:
                raise PlanningFailed(
                    f"kept calling tools after the budget of {self.config.max_tool_calls} calls"
                )
            messages.append(
                {
                    "role": "assistant",
                    "content": message_text(assistant.content),
                    "tool_calls": [call.model_dump(mode="json") for call in tool_calls],
                }
            )
            for call in tool_calls:
                content, executed = await self._run_tool_call(session, call, allowed, calls_made)
                calls_made += executed
                name = call.function.name
                messages.append({"role": "tool", "tool_call_id": call.id, "name": name, "content": content})
                session.transcript.record_model_message("tool", content, tool_call_id=call.id, name=name)

    async def _run_tool_call(
        self, session: ToolSession, call: Any, allowed: set[str], calls_made: int
    ) -> tuple[str, int]:
        """(tool message content, 1 if the tool ran else 0)."""
        name = call.function.name
        if calls_made >= self.config.max_tool_calls:
            return json.dumps({"error": "tool-call budget spent: answer now with the plan JSON"}), 0
        if name not in allowed:
            return json.dumps({"error": f"{name} is not available to the planner (read-only tools only)"}), 0
        arguments = call.function.arguments
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except ValueError as error:
                return json.dumps({"error": f"arguments are not valid JSON: {error}"}), 0
        record = await session.call_tool(name, arguments)
        return self._tool_message(record), 1

    def _tool_message(self, record: ToolCallRecord) -> str:
        payload = {"error": record.error} if record.is_error else record.result
        text = json.dumps(payload, ensure_ascii=False, default=str)
        limit = self.config.max_tool_result_chars
        if len(text) > limit:
            text = text[:limit] + f"... [cut: {len(text) - limit} more characters]"
        return text

    async def _complete(
        self,
        transcript: Transcript,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        tool_choice: str,
    ) -> ChatCompletionResponse:
        from mistralai.client.errors import MistralError, NoResponseError, ResponseValidationError

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            transcript.record_retry(state.attempt_number, _describe(error), wait)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_attempts),
            wait=wait_exponential(
                multiplier=self.config.retry_wait_initial_s, max=self.config.retry_wait_max_s
            ),
            retry=retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._client.chat.complete_async(
                        model=self.config.model,
                        messages=messages,  # type: ignore[arg-type]
                        tools=tools or None,  # type: ignore[arg-type]
                        tool_choice=tool_choice if tools else None,  # type: ignore[arg-type]
                        temperature=self.config.temperature,
                        random_seed=self.config.random_seed,
                    )
        except (MistralError, NoResponseError, ResponseValidationError, httpx2.HTTPError) as error:
            raise PlanningFailed(f"chat.complete failed: {_describe(error)}") from error
        if not response.choices:
            raise PlanningFailed("chat.complete returned no choices")
        message = response.choices[0].message
        transcript.record_model_message(
            "assistant",
            message_text(message.content),
            tool_calls=[call.model_dump(mode="json") for call in message.tool_calls or []],
            finish_reason=str(response.choices[0].finish_reason),
            usage=response.usage.model_dump(mode="json"),
            response_id=response.id,
        )
        return response


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    status = getattr(error, "status_code", None)
    text = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    return f"{type(error).__name__}{f' {status}' if status else ''}: {text}"
