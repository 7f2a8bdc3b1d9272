"""Opening the tracking store of the configured mode (offline files or W&B cloud), as the loop or the agent
sees it."""

from __future__ import annotations

from tools.tracking.agent_view import AgentVisibleStore
from tools.tracking.cloud_store import CloudTrackingStore
from tools.tracking.env import TrackingSettings, tracking_settings
from tools.tracking.local_store import LocalTrackingStore
from tools.tracking.store_models import TrackingStore


def store_settings(entity: str | None = None, project: str | None = None) -> TrackingSettings:
    """The configured settings with entity / project overridden. Naming the configured entity (or its
    "offline" label when none is configured) keeps W&B's default entity."""
    settings = tracking_settings()
    if entity and entity != settings.entity:
        settings = settings.model_copy(update={"entity": entity, "wandb_entity": entity})
    if project:
        settings = settings.model_copy(update={"project": project})
    return settings


def open_store(
    entity: str | None = None, project: str | None = None, *, agent_view: bool = False
) -> TrackingStore:
    """The store for the configured mode (see `store_settings` for entity / project).

    `agent_view=True` (what the MCP tools use) hides held-out runs and traces.
    """
    settings = store_settings(entity, project)
    store: TrackingStore = (
        CloudTrackingStore(settings) if settings.mode == "online" else LocalTrackingStore(settings)
    )
    return AgentVisibleStore(store) if agent_view else store
