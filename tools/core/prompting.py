"""jinja2 templates from prompts/: every prompt and every rendered report comes from there."""

from __future__ import annotations

from functools import lru_cache

import jinja2

from tools.core.paths import PROJECT_ROOT
from tools.core.schema import DIMS

PROMPTS_DIR = PROJECT_ROOT / "prompts"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPTS_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=jinja2.select_autoescape(["html"]),
    )


def render(template: str, **context: object) -> str:
    return environment().get_template(template).render(dims=DIMS, **context)


def render_system_prompt() -> str:
    """The student's system prompt (always passed: SmolLM2 injects its own when none is given)."""
    return render("student_system.j2").strip()
