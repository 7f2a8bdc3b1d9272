"""`predict_tool`: the current champion answers requests; `get_novelty_profile_tool`: how unlike its training
requests the validation split (and any batch) is. Read-only: nothing is written."""

from __future__ import annotations

import threading
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools.data.novelty import NoveltyProfile
from tools.mcp.safety import add_tools
from tools.serving.champion import (
    MAX_REQUEST_CHARS,
    ChampionPredictor,
    ChampionUnavailable,
    PredictionLine,
    batch_novelty,
    read_champion,
)
from tools.serving.drift import DriftReport, drift_report

MAX_REQUESTS = 256

_lock = threading.Lock()
_loaded: dict[str, ChampionPredictor] = {}


class Predictions(BaseModel):
    champion_cycle: int
    champion_candidate: str
    decoder: str
    lines: list[PredictionLine]
    novelty: NoveltyProfile | None = Field(
        None, description="the batch's novelty against the champion's training rows (null: none served)"
    )


def _predictor() -> ChampionPredictor:
    """The champion's student, loaded once per champion record (a promotion or rollback loads the new one)."""
    try:
        champion = read_champion()
    except ChampionUnavailable as exc:
        raise ToolError(str(exc)) from None
    key = champion.model_dump_json()
    with _lock:
        if key not in _loaded:
            _loaded.clear()
            try:
                _loaded[key] = ChampionPredictor(champion)
            except ChampionUnavailable as exc:
                raise ToolError(str(exc)) from None
        return _loaded[key]


def predict_tool(
    request_texts: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_REQUEST_CHARS)]],
        Field(min_length=1, max_length=MAX_REQUESTS, description="the customers' requests, one per item"),
    ],
) -> Predictions:
    """The current champion's answer to each request: the six hidden parameters (energy, warmth,
    brightness, acousticness, complexity, nostalgia) as integers 0..10, the raw outputs, json_valid,
    served_by, latency and novelty (how unlike the champion's training requests it is, 0..1), with the
    batch's novelty profile. Errors when there is no champion yet."""
    predictor = _predictor()
    with _lock:
        lines = predictor.predict(request_texts)
    return Predictions(
        champion_cycle=predictor.champion.cycle,
        champion_candidate=predictor.champion.candidate,
        decoder=predictor.decoder,
        lines=lines,
        novelty=batch_novelty(lines),
    )


def get_novelty_profile_tool(
    request_texts: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=4000)]] | None,
        Field(max_length=MAX_REQUESTS, description="optional: a batch of requests to profile too"),
    ] = None,
) -> DriftReport:
    """Drift: the share of the validation split's requests (and of `request_texts`, if given) that are less
    familiar than 95% of the champion's training requests (about 5% for requests like the training rows;
    more means the evaluation, or the traffic, is unlike what the champion learned from). Errors when there
    is no champion yet."""
    try:
        return drift_report(request_texts)
    except ChampionUnavailable as exc:
        raise ToolError(str(exc)) from None


def register(server: MCPServer) -> None:
    add_tools(server, predict_tool, get_novelty_profile_tool)
