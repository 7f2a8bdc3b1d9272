"""Secrets never land on disk or in a tool reply: every known secret value, and any bearer token, is masked.

Known secrets are the values of the API-key variables the project reads (`MISTRAL_API_KEY`,
`WANDB_API_KEY`, Hugging Face tokens), of any `KOTONE_*` variable whose name says it holds a secret
(`KOTONE_MCP_TOKEN`, ...), and whatever a process registers at run time (`register_secret`, e.g. a
bearer token it generated). They are read when text is redacted, so a key set later is covered too.
A `Bearer ...` credential is masked whatever its value: an upstream may echo one it was sent.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from pydantic import BaseModel

REDACTED = "[redacted]"
SECRET_ENV_VARS = ("MISTRAL_API_KEY", "OPENAI_API_KEY", "WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
SECRET_NAME_MARKERS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
# Shorter values would mask ordinary words; real keys are far longer.
MIN_SECRET_CHARS = 6
# A credential is long; "bearer of good news" is prose.
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]{16,}=*")
_registered: set[str] = set()


def register_secret(value: str) -> None:
    """Mask `value` in everything this process writes or replies from now on."""
    if len(value) >= MIN_SECRET_CHARS:
        _registered.add(value)


def is_secret_name(name: str) -> bool:
    return name in SECRET_ENV_VARS or (
        name.startswith("KOTONE_") and any(marker in name for marker in SECRET_NAME_MARKERS)
    )


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Every secret this process knows, longest first (so a key that contains another is masked whole)."""
    environ = os.environ if environ is None else environ  # type: ignore[assignment]
    found = {
        value for name, value in environ.items() if is_secret_name(name) and len(value) >= MIN_SECRET_CHARS
    }
    return sorted(found | _registered, key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    for secret in secret_values() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """`redact_text` inside strings, dict keys and values, lists, tuples and pydantic models."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, BaseModel):
        dumped = value.model_dump_json()
        cleaned = redact_text(dumped, secrets)
        return value if cleaned == dumped else type(value).model_validate(json.loads(cleaned))
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v, secrets) for v in value)
    return value
