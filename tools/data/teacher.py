"""Teachers write new request -> params pairs aimed at the plan's focus dims.

- `OfflineTeacher` (default): the project's own generator, steered so each row's focus dims land on
  requested target values (the plan's `target_buckets`, else the full 0..10 range), noise-free targets
  consistent with the lexicon.
- `MistralTeacher`: `chat.parse` with a pydantic batch schema against any Mistral-compatible server,
  a jinja2 prompt with a few TRAIN examples, tenacity retries on 429/5xx/transport errors and a token budget.

Rows are returned unfiltered: run them through `tools.data.filters.filter_augmented` before training.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from tools.core.contracts import AugmentationSpec
from tools.core.prompting import render
from tools.core.schema import DIMS, SCALE_MAX, SCALE_MIN, ParamVector, SourceType, TrainingRow
from tools.data.dataset import normalise_text
from tools.data.generator import (
    Choice,
    load_lexicon,
    render_request,
    request_values,
    sample_request_choice,
    to_target,
)

FULL_RANGE: list[int] = list(range(SCALE_MIN, SCALE_MAX + 1))


class TeacherError(RuntimeError):
    """The teacher could not produce usable output (e.g. repeated malformed responses)."""


class TeacherStats(BaseModel):
    """What the last `generate` call did: counts a reviewer can check against the filter report."""

    backend: str
    requested: int = 0
    returned: int = 0
    calls: int = 0
    retries: int = 0
    malformed_responses: int = 0
    tokens_used: int = 0
    token_budget: int | None = None
    budget_exhausted: bool = False
    rejected: dict[str, int] = {}
    bucket_coverage: dict[str, float] = {}
    bucket_hit_rate: float | None = None  # offline only: rows whose focus dims all hit their planned value


class Teacher(Protocol):
    name: str
    stats: TeacherStats

    def generate(
        self, spec: AugmentationSpec, focus_dims: list[str], n: int, seed: int
    ) -> list[TrainingRow]: ...


def _check_focus_dims(focus_dims: Sequence[str]) -> None:
    unknown = [d for d in focus_dims if d not in DIMS]
    if unknown or not focus_dims:
        raise ValueError(f"focus dims must be a non-empty subset of {DIMS}, got {list(focus_dims)}")


def bucket_plan(
    spec: AugmentationSpec, focus_dims: Sequence[str], n: int, rng: random.Random
) -> list[dict[str, int]]:
    """Per row, the value each focus dim should take: every bucket equally often, paired at random."""
    _check_focus_dims(focus_dims)
    plan: list[dict[str, int]] = [{} for _ in range(n)]
    for dim in focus_dims:
        buckets = sorted(set(spec.target_buckets.get(dim) or FULL_RANGE))
        if any(not SCALE_MIN <= b <= SCALE_MAX for b in buckets):
            raise ValueError(f"target buckets for {dim} must lie in {SCALE_MIN}..{SCALE_MAX}, got {buckets}")
        values = (buckets * math.ceil(n / len(buckets)))[:n]
        rng.shuffle(values)
        for row, value in zip(plan, values, strict=True):
            row[dim] = value
    return plan


def _bucket_coverage(rows: Sequence[TrainingRow], plan: Sequence[dict[str, int]]) -> dict[str, float]:
    """Per focus dim, the share of requested bucket values that some row's target hits."""
    wanted = {d: {want[d] for want in plan} for d in (plan[0] if plan else {})}
    return {
        d: len(values & {getattr(r.target, d) for r in rows}) / len(values) for d, values in wanted.items()
    }


# --- offline ----------------------------------------------------------------------------------------


class OfflineTeacher:
    """Steers the generator: random restarts + greedy per-category phrase swaps towards the wanted values."""

    name = "offline"

    def __init__(self, restarts: int = 6, passes: int = 2, attempts_per_row: int = 25) -> None:
        self.restarts = restarts
        self.passes = passes
        self.attempts_per_row = attempts_per_row
        self.stats = TeacherStats(backend=self.name)

    def generate(self, spec: AugmentationSpec, focus_dims: list[str], n: int, seed: int) -> list[TrainingRow]:
        rng = random.Random(seed)
        plan = bucket_plan(spec, focus_dims, n, rng)
        rows: list[TrainingRow] = []
        seen: set[str] = set()
        for want in plan:
            for _ in range(self.attempts_per_row):
                choice = self._steer(want, rng)
                text = render_request(choice, rng)
                if normalise_text(text) not in seen:
                    break
            else:
                raise TeacherError(f"offline teacher: no new wording after {self.attempts_per_row} attempts")
            seen.add(normalise_text(text))
            rows.append(
                TrainingRow(
                    request_text=text,
                    source_type=SourceType.request_text,
                    target=to_target(request_values(choice)),
                    origin=f"teacher:{self.name}",
                )
            )
        hits = sum(
            all(getattr(r.target, d) == want[d] for d in want) for r, want in zip(rows, plan, strict=True)
        )
        self.stats = TeacherStats(
            backend=self.name,
            requested=n,
            returned=len(rows),
            bucket_coverage=_bucket_coverage(rows, plan),
            bucket_hit_rate=hits / n if n else None,
        )
        return rows

    def _steer(self, want: dict[str, int], rng: random.Random) -> Choice:
        lexicon = load_lexicon()
        index = {d: DIMS.index(d) for d in want}

        def loss(choice: Choice) -> float:
            target = to_target(request_values(choice)).as_list()
            return sum(abs(target[i] - want[d]) for d, i in index.items())

        best: Choice | None = None
        best_loss = math.inf
        for _ in range(self.restarts):
            choice = sample_request_choice(rng)
            for _ in range(self.passes):
                for category in list(choice):
                    options = list(lexicon.categories[category].phrases)
                    rng.shuffle(options)
                    scored = [(loss({**choice, category: option}), k) for k, option in enumerate(options)]
                    choice[category] = options[min(scored)[1]]
            current = loss(choice)
            if current < best_loss:
                best, best_loss = choice, current
            if best_loss == 0:
                break
        assert best is not None
        return best


# --- Mistral ------------------------------------------------------------------------------------------


class TeacherPair(BaseModel):
    """One pair as the model writes it. Ranges are checked per row later: one bad row never sinks a batch."""

    request_text: str
    energy: int
    warmth: int
    brightness: int
    acousticness: int
    complexity: int
    nostalgia: int


class TeacherBatch(BaseModel):
    pairs: list[TeacherPair]


def is_retryable(exc: BaseException) -> bool:
    """429 and 5xx responses, transport errors and missing responses are worth another try."""
    import httpx2
    from mistralai.client.errors import MistralError, NoResponseError

    if isinstance(exc, MistralError):
        return exc.status_code == 429 or exc.status_code >= 500
    return isinstance(exc, httpx2.TransportError | NoResponseError)


class MistralTeacher:
    """`chat.parse` over the real SDK; the prompt shows a few rows sampled from TRAIN only."""

    name = "mistral"

    def __init__(
        self,
        *,
        train: Sequence[TrainingRow],
        model: str = "mistral-large-latest",
        api_key: str | None = None,
        server_url: str | None = None,
        temperature: float = 0.8,
        batch_size: int = 20,
        n_examples: int = 6,
        token_budget: int = 60_000,
        max_calls: int = 20,
        max_malformed: int = 2,
        max_attempts: int = 3,
        retry_wait_s: tuple[float, float] = (1.0, 20.0),
        timeout_ms: int = 60_000,
    ) -> None:
        if not train:
            raise ValueError("the Mistral teacher needs training rows for its examples")
        key = api_key or os.environ.get("MISTRAL_API_KEY")
        if not key:
            raise TeacherError("the Mistral teacher needs an api_key or MISTRAL_API_KEY")
        from mistralai.client import Mistral

        self.client = Mistral(api_key=key, server_url=server_url, timeout_ms=timeout_ms)
        self._keep_settings(locals())

    def _keep_settings(self, given: dict) -> None:
        """The generation settings and caps every model-backed teacher keeps (its client aside)."""
        for name in ("timeout_ms", "model", "temperature", "batch_size", "n_examples", "token_budget"):
            setattr(self, name, given[name])
        for name in ("max_calls", "max_malformed", "max_attempts", "retry_wait_s"):
            setattr(self, name, given[name])
        self.train = list(given["train"])
        self.stats = TeacherStats(backend=self.name, token_budget=given["token_budget"])

    def generate(self, spec: AugmentationSpec, focus_dims: list[str], n: int, seed: int) -> list[TrainingRow]:
        rng = random.Random(seed)
        plan = bucket_plan(spec, focus_dims, n, rng)
        buckets = {d: sorted({want[d] for want in plan}) for d in focus_dims}
        stats = TeacherStats(backend=self.name, requested=n, token_budget=self.token_budget)
        self.stats = stats
        rejected: Counter[str] = Counter()
        rows: list[TrainingRow] = []
        seen: set[str] = set()
        malformed_in_a_row = 0
        while len(rows) < n and stats.calls < self.max_calls:
            if stats.tokens_used >= self.token_budget:
                stats.budget_exhausted = True
                break
            messages = self._messages(focus_dims, buckets, min(self.batch_size, n - len(rows)), rng)
            stats.calls += 1
            try:
                response = self._parse_with_retries(messages, seed + stats.calls, stats)
            except (json.JSONDecodeError, ValidationError) as exc:
                stats.malformed_responses += 1
                malformed_in_a_row += 1
                if malformed_in_a_row >= self.max_malformed:
                    raise TeacherError(
                        f"mistral teacher: {malformed_in_a_row} malformed responses in a row "
                        f"(last: {type(exc).__name__}: {str(exc)[:200]})"
                    ) from exc
                continue
            malformed_in_a_row = 0
            usage = response.usage
            stats.tokens_used += (usage.total_tokens or 0) if usage else 0
            parsed = response.choices[0].message.parsed if response.choices else None
            for pair in parsed.pairs if parsed else []:
                row, reason = self._to_row(pair, seen)
                if row is None:
                    rejected[reason] += 1
                elif len(rows) < n:
                    rows.append(row)
        stats.returned, stats.rejected = len(rows), dict(rejected)
        stats.bucket_coverage = _bucket_coverage(rows, plan)
        return rows

    def _messages(
        self, focus_dims: Sequence[str], buckets: dict[str, list[int]], count: int, rng: random.Random
    ):
        examples = rng.sample(self.train, min(self.n_examples, len(self.train)))
        context: dict[str, Any] = {
            "focus_dims": list(focus_dims),
            "buckets": buckets,
            "count": count,
            "examples": [{"text": r.request_text, "target": r.target.to_json()} for r in examples],
        }
        return [
            {"role": "system", "content": render("teacher_system.j2", **context).strip()},
            {"role": "user", "content": render("teacher_request.j2", **context).strip()},
        ]

    def _parse_with_retries(self, messages: list[dict[str, str]], random_seed: int, stats: TeacherStats):
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        def count_retry(_state: object) -> None:
            stats.retries += 1

        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(multiplier=self.retry_wait_s[0], max=self.retry_wait_s[1]),
            before_sleep=count_retry,
            reraise=True,
        )
        try:
            return retrying(
                self.client.chat.parse,
                response_format=TeacherBatch,
                model=self.model,
                messages=messages,
                temperature=self.temperature,
                random_seed=random_seed,
            )
        except Exception as exc:
            if not is_retryable(exc):
                raise
            raise TeacherError(
                f"mistral teacher: no usable answer after {self.max_attempts} attempts "
                f"(timeout {self.timeout_ms / 1000:g} s each; last: {type(exc).__name__}: {exc})"
            ) from exc

    def _to_row(self, pair: TeacherPair, seen: set[str]) -> tuple[TrainingRow | None, str]:
        text = pair.request_text.strip()
        if not text:
            return None, "empty_text"
        key = normalise_text(text)
        if key in seen:
            return None, "duplicate_in_response"
        try:
            target = ParamVector(**{d: getattr(pair, d) for d in DIMS})
        except ValidationError:
            return None, "target_out_of_range"
        seen.add(key)
        row = TrainingRow(
            request_text=text,
            source_type=SourceType.request_text,
            target=target,
            origin=f"teacher:{self.name}",
        )
        return row, ""


def make_teacher(config: Any, train: Sequence[TrainingRow] | None = None) -> Teacher | None:
    """The teacher a loop config asks for: `teacher` = offline, mistral, openai, none or auto.

    auto: mistral when MISTRAL_API_KEY is set; else offline on the shipped data; else none, because the
    offline generator only knows the shipped catalogue: its rows would teach another mapping on any other
    dataset (measured on kotone-ft: docs/RESULTS.md). None means hard-case replay only.
    Reads `teacher`, `data`, `mistral_model`, `mistral_server_url`, `mistral_timeout_s` and
    `mistral_max_attempts` (or the `openai_*` settings) from the config.
    """
    choice = getattr(config, "teacher", "auto")
    if choice == "auto":
        if os.environ.get("MISTRAL_API_KEY"):
            choice = "mistral"
        else:
            choice = "offline" if getattr(config, "data", "shipped") == "shipped" else "none"
    if choice == "none":
        return None
    if choice == "offline":
        return OfflineTeacher()
    if choice not in ("mistral", "openai"):
        raise ValueError(f"unknown teacher {choice!r} (offline, mistral, openai, none or auto)")
    if train is None:
        from tools.data.dataset import load_dataset

        train = load_dataset(config.data).train
    if choice == "openai":
        from tools.data.openai_teacher import OpenAITeacher

        return OpenAITeacher(
            train=train,
            base_url=config.openai_base_url,
            model=config.openai_model,
            api_key=os.environ.get(config.openai_auth_env) or None,
            json_schema=config.openai_json_schema,
            timeout_s=config.openai_timeout_s,
            max_attempts=config.openai_max_attempts,
            max_tokens=config.openai_max_tokens,
        )
    return MistralTeacher(
        train=train,
        model=getattr(config, "mistral_model", "mistral-large-latest"),
        server_url=getattr(config, "mistral_server_url", None),
        timeout_ms=round(getattr(config, "mistral_timeout_s", 60.0) * 1000),
        max_attempts=getattr(config, "mistral_max_attempts", 3),
    )
