"""Which planner backend runs: `PlannerConfig` (every knob, peft-style) and `make_planner`.

Lives apart from `agent.planner` so that the backends (`offline_planner`, `mistral_planner`) can import the
shared planner pieces without this factory importing them back.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.openai_planner import OpenAIPlannerConfig
from agent.planner import MistralPlannerConfig, Planner


class PlannerConfigError(RuntimeError):
    """The planner backend cannot run as configured."""


class PlannerConfig(BaseModel):
    backend: Literal["auto", "offline", "mistral", "openai"] = Field(
        "auto", description="auto: mistral when the API key env var is set, else offline"
    )
    mistral: MistralPlannerConfig = Field(default_factory=MistralPlannerConfig)
    openai: OpenAIPlannerConfig = Field(default_factory=OpenAIPlannerConfig)

    @classmethod
    def from_env(cls) -> PlannerConfig:
        """`KOTONE_PLANNER` (auto|offline|mistral), `MISTRAL_MODEL`, `MISTRAL_SERVER_URL`."""
        mistral = MistralPlannerConfig()
        if model := os.environ.get("MISTRAL_MODEL"):
            mistral.model = model
        if server_url := os.environ.get("MISTRAL_SERVER_URL"):
            mistral.server_url = server_url
        return cls(backend=os.environ.get("KOTONE_PLANNER", "auto"), mistral=mistral)  # type: ignore[arg-type]

    @classmethod
    def from_loop(cls, config: Any) -> PlannerConfig:
        """The planner a `LoopConfig` asks for: backend, model, server, timeout, attempts and time cap."""
        mistral = MistralPlannerConfig(
            model=config.mistral_model,
            timeout_ms=round(config.mistral_timeout_s * 1000),
            max_attempts=config.mistral_max_attempts,
            max_total_s=config.planner_max_total_s,
        )
        if config.mistral_server_url:
            mistral.server_url = config.mistral_server_url
        openai = OpenAIPlannerConfig(
            base_url=config.openai_base_url,
            model=config.openai_model,
            api_key_env=config.openai_auth_env,
            json_schema=config.openai_json_schema,
            use_tools=config.openai_tools,
            max_tokens=config.openai_max_tokens,
            timeout_ms=round(config.openai_timeout_s * 1000),
            max_attempts=config.openai_max_attempts,
            max_total_s=config.planner_max_total_s,
        )
        return cls(backend=config.planner, mistral=mistral, openai=openai)


def make_planner(config: PlannerConfig | None = None) -> Planner:
    """The configured backend; `auto` picks Mistral only when its API key is in the environment."""
    from agent.offline_planner import OfflinePlanner

    config = config or PlannerConfig.from_env()
    backend = config.backend
    if backend == "auto":
        backend = "mistral" if os.environ.get(config.mistral.api_key_env) else "offline"
    if backend == "offline":
        return OfflinePlanner()
    if backend == "openai":
        from agent.openai_planner import OpenAIPlanner

        return OpenAIPlanner(config.openai, api_key=os.environ.get(config.openai.api_key_env) or None)
    from agent.mistral_planner import MistralPlanner

    api_key = os.environ.get(config.mistral.api_key_env)
    if not api_key:
        raise PlannerConfigError(f"planner backend 'mistral' needs ${config.mistral.api_key_env} to be set")
    return MistralPlanner(config.mistral, api_key=api_key)
