"""`python -m tools.server` (`kotone-serve`): the full server (`loop.server.assemble`) on the plumbing of
`tools.mcp.server`. A command: it may import any package."""

import sys

from tools.tracking.env import set_tracking_environment

# Before anything imports wandb or weave: both read these settings at import time (weave's error
# reporting, for one, would otherwise reach out to its host when the server exits).
set_tracking_environment()

from loop.server.assemble import build_server  # noqa: E402
from tools.mcp.server import main as serve  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    serve(argv, build_server)


if __name__ == "__main__":
    sys.exit(main())
