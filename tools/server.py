"""`python -m tools.server`: the command's code lives in `tools.mcp.server`."""

import sys

from tools.tracking.env import set_tracking_environment

# Before anything imports wandb or weave: both read these settings at import time (weave's error
# reporting, for one, would otherwise reach out to its host when the server exits).
set_tracking_environment()

from tools.mcp.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
