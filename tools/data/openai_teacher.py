"""The teacher over any OpenAI-compatible chat server: the Mistral teacher's prompt, batching, budgets,
malformed-answer handling and per-row checks (`tools.data.teacher.MistralTeacher`), with the request sent
through `tools.core.openai_chat` (tenacity retries on 429 / 5xx / transport errors, a timeout per request)
and the batch asked for with the `TeacherBatch` JSON schema when the server supports structured output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from tools.core.openai_chat import (
    OpenAIChatClient,
    OpenAIStatusError,
    Usage,
    describe,
    is_retryable,
    json_schema_format,
)
from tools.core.schema import TrainingRow
from tools.data.teacher import MistralTeacher, TeacherBatch, TeacherError, TeacherStats


class _ParsedMessage(BaseModel):
    parsed: TeacherBatch


class _ParsedChoice(BaseModel):
    message: _ParsedMessage


class ParsedBatch(BaseModel):
    """The shape `MistralTeacher.generate` reads from a `chat.parse` answer."""

    usage: Usage
    choices: list[_ParsedChoice]


class OpenAITeacher(MistralTeacher):
    name = "openai"

    def __init__(
        self,
        *,
        train: Sequence[TrainingRow],
        base_url: str,
        model: str,
        api_key: str | None = None,
        json_schema: bool = True,
        temperature: float = 0.8,
        batch_size: int = 20,
        n_examples: int = 6,
        token_budget: int = 60_000,
        max_calls: int = 20,
        max_malformed: int = 2,
        max_attempts: int = 3,
        retry_wait_s: tuple[float, float] = (1.0, 20.0),
        timeout_s: float = 120.0,
        max_tokens: int = 2000,
    ) -> None:
        if not train:
            raise ValueError("the OpenAI-compatible teacher needs training rows for its examples")
        self.client = OpenAIChatClient(base_url, api_key, timeout_s, max_attempts, retry_wait_s)
        self.json_schema = json_schema
        self.max_tokens = max_tokens
        self._keep_settings({**locals(), "timeout_ms": round(timeout_s * 1000)})

    def _parse_with_retries(
        self, messages: list[dict[str, str]], random_seed: int, stats: TeacherStats
    ) -> Any:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "seed": random_seed,
            "max_tokens": self.max_tokens,
        }
        if self.json_schema:
            payload["response_format"] = json_schema_format("teacher_batch", TeacherBatch.model_json_schema())

        def count_retry(_attempt: int, _error: str, _wait: float) -> None:
            stats.retries += 1

        try:
            response = self.client.complete(payload, on_retry=count_retry)
        except Exception as exc:
            if not (is_retryable(exc) or isinstance(exc, OpenAIStatusError)):
                raise
            raise TeacherError(
                f"openai teacher: no usable answer after {self.max_attempts} attempts "
                f"(timeout {self.timeout_ms / 1000:g} s each; last: {describe(exc)})"
            ) from exc
        content = response.choices[0].message.content if response.choices else None
        batch = TeacherBatch.model_validate_json(
            content or ""
        )  # malformed: ValidationError, counted by generate
        return ParsedBatch(
            usage=response.usage, choices=[_ParsedChoice(message=_ParsedMessage(parsed=batch))]
        )
