"""A small client of the OpenAI-compatible chat API (`POST {base_url}/chat/completions`), the one Ollama,
vLLM, llama.cpp's server, LM Studio and OpenAI itself speak. Planner and teacher share it.

What it keeps from the Mistral backend: tenacity retries with exponential backoff on 429, 5xx and transport
errors (timeouts included), a per-request timeout, and a hook that records every retry. Replies are parsed
into pydantic models shaped like the Mistral SDK's (`choices[0].message.content / tool_calls`,
`usage.total_tokens`), so the planner's tool loop runs on either. The API key is read from an environment
variable by the caller and registered as a secret: it never lands in a file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, field_validator
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from tools.core.redaction import redact_text, register_secret

RetryHook = Callable[[int, str, float], None]  # (attempt, error, wait seconds)


class OpenAIStatusError(RuntimeError):
    """The server answered with an HTTP error status."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    arguments: str = "{}"

    @field_validator("arguments", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value or {})


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = ""
    type: str = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class Choice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    index: int = 0
    message: ChatMessage
    finish_reason: str | None = None


class Usage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletion(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = ""
    model: str = ""
    choices: list[Choice]
    usage: Usage = Usage()


def is_retryable(error: BaseException) -> bool:
    """429 and 5xx answers, and transport-level failures (refused connections, timeouts)."""
    if isinstance(error, OpenAIStatusError):
        return error.status_code == 429 or error.status_code >= 500
    return isinstance(error, httpx.TransportError)


def describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    text = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    return redact_text(f"{type(error).__name__}: {text}")


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """`response_format` asking for output that follows `schema` (structured output)."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}


class OpenAIChatClient:
    """`complete` / `complete_async`: one chat completion, retried on 429 / 5xx / transport errors."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_attempts: int = 3,
        retry_wait_s: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            register_secret(api_key)
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = httpx.Timeout(timeout_s)
        self.max_attempts = max_attempts
        self.retry_wait_s = retry_wait_s

    def _retry_settings(self, on_retry: RetryHook | None) -> dict[str, Any]:
        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            if on_retry is not None:
                on_retry(state.attempt_number, describe(error), wait)

        return {
            "stop": stop_after_attempt(self.max_attempts),
            "wait": wait_exponential(multiplier=self.retry_wait_s[0], max=self.retry_wait_s[1]),
            "retry": retry_if_exception(is_retryable),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    @staticmethod
    def _parse(response: httpx.Response) -> ChatCompletion:
        if response.status_code >= 400:
            try:
                body = response.json()
                error = body.get("error", body) if isinstance(body, dict) else body
                message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            except ValueError:
                message = response.text[:300]
            raise OpenAIStatusError(response.status_code, str(message)[:300])
        return ChatCompletion.model_validate_json(response.content)

    def complete(self, payload: dict[str, Any], on_retry: RetryHook | None = None) -> ChatCompletion:
        with httpx.Client(timeout=self.timeout) as client:
            for attempt in Retrying(**self._retry_settings(on_retry)):
                with attempt:
                    return self._parse(client.post(self.url, json=payload, headers=self.headers))
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def complete_async(
        self, payload: dict[str, Any], on_retry: RetryHook | None = None
    ) -> ChatCompletion:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            async for attempt in AsyncRetrying(**self._retry_settings(on_retry)):
                with attempt:
                    return self._parse(await client.post(self.url, json=payload, headers=self.headers))
        raise AssertionError("unreachable: tenacity re-raises the last error")
