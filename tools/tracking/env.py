"""Tracking settings in one place: offline by default, online only when asked for and keyed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from tools.core import paths

# Names the local store's project (and the Weave project id) when no entity is configured. It is never sent
# to W&B: offline runs carry no entity, so `wandb sync` files them under the uploader's default entity.
OFFLINE_ENTITY = "offline"
DEFAULT_PROJECT = "kotone-loop"


class TrackingSettings(BaseModel):
    mode: Literal["offline", "online"]
    entity: str = Field(description="entity of the local store and the Weave project id")
    wandb_entity: str | None = Field(
        description="the configured W&B entity, passed to wandb.init; None lets W&B pick the default"
    )
    project: str
    wandb_dir: Path
    weave_db: Path

    @property
    def project_id(self) -> str:
        return f"{self.entity}/{self.project}"


def tracking_settings() -> TrackingSettings:
    """Read the settings from the environment without changing it.

    Online needs `KOTONE_TRACKING=online` (or, when KOTONE_TRACKING is unset, `WANDB_MODE=online`,
    which is what the MCP client forwards to our stdio server) and a `WANDB_API_KEY`; anything else
    is offline.
    Entity and project come from `KOTONE_WANDB_ENTITY` / `KOTONE_WANDB_PROJECT` (then `WANDB_ENTITY` /
    `WANDB_PROJECT`); the project defaults to kotone-loop, the entity to none (W&B's default entity;
    the local store calls it "offline").
    """
    choice = os.environ.get("KOTONE_TRACKING") or os.environ.get("WANDB_MODE") or "offline"
    online = choice.lower() == "online" and bool(os.environ.get("WANDB_API_KEY"))
    entity = os.environ.get("KOTONE_WANDB_ENTITY") or os.environ.get("WANDB_ENTITY") or None
    return TrackingSettings(
        mode="online" if online else "offline",
        entity=entity or OFFLINE_ENTITY,
        wandb_entity=entity,
        project=os.environ.get("KOTONE_WANDB_PROJECT") or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
        wandb_dir=paths.wandb_dir(),
        weave_db=paths.weave_db_path(),
    )


class TrackingWriteError(RuntimeError):
    """A tracking folder cannot be written: runs and traces would be lost without a word."""


def ensure_writable(folder: Path) -> None:
    """Create `folder` and prove a file can be written there; else `TrackingWriteError` naming it.

    (wandb itself only logs "failed to get logger path" and hands back a run id whose record never lands.)
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise TrackingWriteError(
            f"tracking cannot write to {folder}: {error.strerror or error}; "
            "fix its permissions or point KOTONE_ARTIFACTS at a writable folder"
        ) from None


def configure_tracking() -> TrackingSettings:
    """Set the tracking environment (`set_tracking_environment`) and check that the W&B and Weave folders
    can be written (`TrackingWriteError` otherwise)."""
    settings = set_tracking_environment()
    ensure_writable(settings.wandb_dir)
    ensure_writable(settings.weave_db.parent)
    return settings


def set_tracking_environment() -> TrackingSettings:
    """Set the wandb / weave environment for this process; writes nothing. Every entry point calls it
    before wandb or weave can be imported: both read these variables at import time.

    Offline: no network, no prompts, no error reporting, no weave auto-init inside wandb.init, and
    wandb's own data, cache and config folders under the artifacts tree so nothing is written to the
    home directory.
    """
    settings = tracking_settings()
    os.environ.update(
        WANDB_MODE=settings.mode,
        WANDB_DIR=str(settings.wandb_dir),
        WANDB_DISABLE_WEAVE="true",
        WANDB_ERROR_REPORTING="false",
        WANDB_SILENT="true",
        WANDB_CONSOLE="off",
        WANDB_DISABLE_GIT="true",
        WEAVE_PRINT_CALL_LINK="false",
    )
    if settings.mode == "offline":
        os.environ.update(
            WANDB_DATA_DIR=str(settings.wandb_dir / "data"),
            WANDB_CACHE_DIR=str(settings.wandb_dir / "cache"),
            WANDB_CONFIG_DIR=str(settings.wandb_dir / "config"),
            WANDB_ARTIFACT_DIR=str(settings.wandb_dir / "artifacts"),
        )
    return settings
