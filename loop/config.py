"""Every setting of the loop in one place: defaults here, a JSON config file over them, env vars over that.

Env overrides: `KOTONE_<FIELD>` for top-level fields (e.g. `KOTONE_DATA=real`, `KOTONE_STUDENT=regression`),
`KOTONE_GATE__<FIELD>` for the gate (e.g. `KOTONE_GATE__MIN_MAE_IMPROVEMENT=0.02`). Any other `KOTONE_*`
name that is not a process variable (`tools.core.env_vars`) is refused as a likely typo, and every bad
value is reported in one line naming where it came from (`ConfigError`).
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from loop.gate_config import GateConfig
from tools.core.contracts import HParams
from tools.core.env_vars import PROCESS_ENV_VARS, is_process_env_var

# Where a planner starts when no cycle has finished yet, per student type (measured: docs/RESULTS.md).
DEFAULT_HPARAMS: dict[str, HParams] = {
    "regression": HParams(learning_rate=5e-4, lora_r=16, lora_alpha=32, epochs=3.0, batch_size=16),
    "generative": HParams(),
}


class SettingError(ValueError):
    """A setting outside its range; `field` is its dotted name (e.g. student_options)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}" if not message.startswith(field) else message)
        self.field = field


class ConfigError(ValueError):
    """Settings that cannot run: one line, naming each bad setting where it was given."""


class LoopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str = Field(
        "shipped", description="'shipped', 'real' (../shared/kotone-ft), 'hub[:id]' or a folder"
    )
    base_model: str = Field("bundled", description="'bundled' SmolLM2-135M-Instruct, a folder, or a Hub id")
    student: Literal["regression", "generative"] = Field(
        "regression",
        description="regression head on the LM's hidden states (JSON formatted from its outputs) or "
        "generative LoRA decoding the JSON",
    )
    student_options: dict[str, Any] = Field(
        default_factory=dict,
        description="extra knobs of the student's own config (RegressionConfig / TrainConfig), e.g. "
        '{"layers_kept": 8, "lora_layers": 4}. A hyperparameter named here (learning_rate, lora_r, ...: the '
        "fields of HParams) sets the planner's starting value and must lie within the guardrails' bounds; "
        "from then on the planner's hyperparameters decide",
    )
    decoder: Literal["skeleton", "skeleton_ev", "free"] = Field(
        "skeleton_ev", description="decoder of generative students (regression students have one)"
    )
    planner: Literal["auto", "offline", "mistral", "openai"] = Field(
        "auto",
        description="'auto' = mistral when MISTRAL_API_KEY is set, else the offline planner; 'openai' = any "
        "OpenAI-compatible server (openai_base_url)",
    )
    teacher: Literal["auto", "offline", "mistral", "openai", "none"] = Field(
        "auto",
        description="'auto' = mistral when MISTRAL_API_KEY is set, else the offline generator on the shipped "
        "data and none (hard-case replay only) on other data, whose mapping the generator does not know",
    )
    mistral_model: str = "mistral-large-latest"
    mistral_server_url: str | None = Field(
        None, description="any Mistral-compatible server; None = api.mistral.ai"
    )
    mistral_timeout_s: float = Field(
        60.0, gt=0, description="one Mistral request's timeout (planner and teacher)"
    )
    mistral_max_attempts: int = Field(
        3, ge=1, description="tries per Mistral request on 429 / 5xx / transport errors / timeouts"
    )
    planner_max_total_s: float = Field(
        120.0,
        gt=0,
        description="cap on the Mistral planner's whole turn; past it the offline planner decides",
    )
    openai_base_url: str = Field(
        "http://127.0.0.1:11434/v1",
        description="OpenAI-compatible server of planner/teacher 'openai', with /v1 (default: Ollama's)",
    )
    openai_model: str = Field(
        "qwen2.5:7b-instruct", description="model name the OpenAI-compatible server knows"
    )
    openai_auth_env: str = Field(
        "OPENAI_API_KEY", description="variable holding its API key (unset: no Authorization header)"
    )
    openai_json_schema: bool = Field(
        True, description="ask for JSON-schema structured output (false for servers without response_format)"
    )
    openai_tools: bool = Field(
        True,
        description="offer the planner the MCP tools as functions (false: the evidence goes in the prompt)",
    )
    openai_timeout_s: float = Field(120.0, gt=0, description="one request's timeout (planner and teacher)")
    openai_max_attempts: int = Field(
        3, ge=1, description="tries per request on 429 / 5xx / transport errors / timeouts"
    )
    openai_max_tokens: int = Field(2000, ge=64, description="completion tokens per request at most")
    approve: bool = Field(
        False, description="a winner that passed the gate waits for kotone-steer --approve / --reject"
    )
    approve_timeout_s: float | None = Field(
        None, gt=0, description="approve mode: unanswered this long, the winner is rejected (None = wait)"
    )
    eval_batch_size: int = Field(16, ge=1)
    max_eval_rows: int | None = Field(
        None, ge=1, description="score only the first N validation rows (smoke runs)"
    )
    max_train_rows: int | None = Field(
        None, ge=1, description="cap on the cycle's training rows (smoke runs)"
    )
    train_time_budget_s: float | None = Field(None, gt=0, description="stop training after this many seconds")
    checkpoint_every_steps: int = Field(25, ge=1, description="training steps between resumable checkpoints")
    plateau_patience: int = Field(
        3, ge=1, description="stop after this many cycles in a row without a promotion"
    )
    candidates: int = Field(
        2, ge=1, le=8, description="candidates per cycle, trained in parallel as Ray tasks (2 suit 2 cores)"
    )
    cv_folds: int = Field(
        3, ge=2, le=5, description="CV folds of the training split = members of each LM fold ensemble"
    )
    ray_address: str | None = Field(
        None, description="an existing Ray cluster (ray://... or host:port); None starts a local instance"
    )
    cpus_per_candidate: int = Field(
        1, ge=1, description="CPUs (and torch threads) of each candidate's Ray task"
    )
    confirm_cpus: int = Field(
        2, ge=1, description="CPUs of the winner's second-seed training (capped by the cluster)"
    )
    bootstrap_decoders: list[Literal["skeleton", "skeleton_ev", "free"]] = Field(
        default_factory=lambda: ["skeleton", "skeleton_ev", "free"],
        description="decoders the zero-shot base model is scored with at cycle 0",
    )
    latency_requests: int = Field(20, ge=0, description="validation requests timed one by one (p50 / p95)")
    latency_repeats: int = Field(3, ge=1, description="timings per request; its median counts")
    seed: int = 0
    gate: GateConfig = Field(default_factory=GateConfig)

    def default_hparams(self) -> HParams:
        """Where a planner starts: the student type's defaults, with any hyperparameter of student_options."""
        from agent.guardrails import split_hparam_options

        starting = split_hparam_options(self.student_options)[0]
        return HParams.model_validate({**DEFAULT_HPARAMS[self.student].model_dump(), **starting})

    def student_knobs(self) -> dict[str, Any]:
        """student_options without the hyperparameters (those have one door: the plan's HParams)."""
        from agent.guardrails import split_hparam_options

        return split_hparam_options(self.student_options)[1]

    @field_validator("student_options")
    @classmethod
    def _options_fit_the_student(cls, options: dict[str, Any], info: Any) -> dict[str, Any]:
        from agent.guardrails import clip_hparams, split_hparam_options

        student = info.data.get("student")
        if not options or student is None:
            return options
        hparams, options = split_hparam_options(options)
        if hparams:
            try:
                starting = HParams.model_validate({**DEFAULT_HPARAMS[student].model_dump(), **hparams})
            except ValidationError as error:
                first = error.errors()[0]
                raise SettingError(
                    "student_options", f"{first['loc'][0]}: {first['msg']} (got {first.get('input')!r})"
                ) from None
            clips: list[str] = []
            clip_hparams(starting, clips)
            if clips:
                raise SettingError("student_options", f"outside the guardrails' bounds: {'; '.join(clips)}")
        if student == "regression":
            from tools.student.regression import RegressionConfig as options_model
        else:
            from tools.student.generative_training import TrainConfig as options_model
        try:
            options_model.model_validate(options)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SettingError(
                "student_options", f"{where}: {first['msg']} (got {first.get('input')!r})"
            ) from None
        return {**hparams, **options}


def _coerce(raw: str) -> object:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


# Process variables with a fixed set of values: a typo there must be refused like a bad setting, not read
# as the default (KOTONE_TRACKING=onlin would run offline without a word).
PROCESS_VAR_CHOICES: dict[str, tuple[str, ...]] = {"KOTONE_TRACKING": ("offline", "online")}


def _check_process_vars(environ: dict[str, str]) -> None:
    for name, choices in PROCESS_VAR_CHOICES.items():
        value = environ.get(name)
        if value is not None and value.lower() not in choices:
            raise ConfigError(f"invalid settings: {name}={value}: expected one of {', '.join(choices)}")


def config_env_names() -> dict[str, str]:
    """Every settings variable -> its dotted field (`KOTONE_SEED` -> seed, `KOTONE_GATE__SEED` -> gate.seed)."""
    names = {f"KOTONE_{field.upper()}": field for field in LoopConfig.model_fields if field != "gate"}
    names |= {f"KOTONE_GATE__{field.upper()}": f"gate.{field}" for field in GateConfig.model_fields}
    return names


def _read_file(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a JSON file ({error})") from None
    if not isinstance(values, dict) or not isinstance(values.get("gate", {}), dict):
        raise ConfigError(f"{path}: expected a JSON object of LoopConfig settings (gate as an object)")
    return values


def build_config(values: dict[str, Any], sources: dict[str, str] | None = None) -> LoopConfig:
    """Validate settings; on failure a `ConfigError` names each bad one by its source (`sources`:
    dotted field -> where it was given, e.g. "KOTONE_SEED" or "--max-eval-rows")."""
    sources = sources or {}
    try:
        return LoopConfig.model_validate(values)
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            cause = (problem.get("ctx") or {}).get("error")
            if isinstance(cause, SettingError):
                field, message = cause.field, str(cause).removeprefix(cause.field).strip()
            else:
                field = ".".join(str(p) for p in problem["loc"])
                message = f"{problem['msg']} (got {problem.get('input')!r})"
            given = sources.get(field, field)
            problems.append(f"{given}: {message}" if given == field else f"{given} ({field}): {message}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None


def load_config(path: Path | None = None, environ: dict[str, str] | None = None) -> LoopConfig:
    """Defaults <- JSON file (if given) <- env vars. Unknown keys are errors, not silently ignored."""
    environ = dict(os.environ if environ is None else environ)
    _check_process_vars(environ)
    values: dict[str, Any] = _read_file(path) if path else {}
    sources = {field: f"{path}" for field in values if field != "gate"}
    sources |= {f"gate.{field}": f"{path}" for field in values.get("gate", {})}
    known = config_env_names()
    for name in sorted(environ):
        if not name.startswith("KOTONE_") or is_process_env_var(name):
            continue
        field = known.get(name)
        if field is None:
            close = difflib.get_close_matches(name, [*known, *PROCESS_ENV_VARS], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"unknown setting {name}{hint}; settings are KOTONE_<field> and KOTONE_GATE__<field> "
                "of loop/config.py (python -m loop.run --help lists them)"
            )
        sources[field] = f"{name}={environ[name]}"
        if field.startswith("gate."):
            values.setdefault("gate", {})[field.removeprefix("gate.")] = _coerce(environ[name])
        else:
            values[field] = _coerce(environ[name])
    return build_config(values, sources)
